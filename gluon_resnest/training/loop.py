"""Training and evaluation of a zoo model on RecordIO data, on one process or under horovodrun."""
import math
import os
import time
from dataclasses import asdict, dataclass

import mxnet as mx
import numpy as np
from mxnet import autograd

from ..argtypes import check_number, check_positive_ints, option
from ..layers.dropblock import set_drop_prob
from ..zoo.registry import get_model, get_model_info
from . import recipe
from .checkpoint import (AVERAGE, atomic_file, check_writable, latest_checkpoint,
                         latest_readable_checkpoint, load_checkpoint, read_meta, remove_run,
                         repair_run, save_checkpoint, write_jsonl)
from .data import RecordDataset, ShardSampler, make_loader, train_transform
from .ema import WeightAverage
from .memory_data import (MAX_SIDE, BatchAugment, MemoryLoader, decode_all, evaluation_loader,
                          fits_in_memory)
from .distributed import Comm, device

__all__ = ['TrainConfig', 'train', 'evaluate', 'count_correct', 'iterations_per_epoch',
           'check_run_identity', 'start_run', 'resume_and_broadcast', 'check_finite',
           'progress_bar', 'validation_bar', 'with_progress']


PIPELINES = ('auto', 'memory', 'workers')


@dataclass
class TrainConfig:
    """Every field is a command-line flag of train/train.py; defaults are the paper's recipe."""
    model: str = option('resnest50', 'zoo model name (gluon_resnest.list_models() lists them)')
    rec_train: str = option('', 'training RecordIO file (.rec with its .idx), required')
    rec_val: str = option('', 'validation RecordIO file: picks the best epoch, required')
    classes: int = option(1000, 'number of classes')
    save_dir: str = option('runs/resnest', 'checkpoints, metrics.jsonl, curves.png, summary')
    epochs: int = option(270, 'training epochs')
    batch_size: int = option(64, 'images per device (process) and step')
    base_lr: float = option(0.1, 'learning rate for a global batch of 256, scaled linearly')
    warmup_epochs: int = option(5, 'linear warm-up epochs before the cosine decay')
    momentum: float = option(0.9, 'Nesterov momentum')
    wd: float = option(1e-4, 'weight decay (not on BN parameters or biases)')
    label_smoothing: float = option(0.1, 'label smoothing, in [0, 1)')
    mixup_alpha: float = option(0.2, 'mixup Beta(alpha, alpha); 0: off')
    mixup_off_epochs: int = option(0, 'last N epochs without mixup')
    dropblock_prob: float = option(0.1, 'final DropBlock rate on stages 3-4, ramped up from 0')
    final_drop: float = option(None, "dropout before the classifier (default: the zoo model's)")
    last_gamma: bool = option(True, "zero-initialize each bottleneck's last BN gamma")
    input_size: int = option(None, "training crop in px (default: the model's input size)")
    crop_ratio: float = option(None, "evaluation crop / resize ratio (default: the model's)")
    min_scale: float = option(0.08, 'smallest area fraction of the random resized crop')
    jitter: float = option(0.4, 'brightness/contrast/saturation jitter; 0: off')
    lighting: float = option(0.1, 'PCA lighting noise; 0: off')
    autoaugment: bool = option(False, 'ImageNet AutoAugment policy')
    random_erasing: float = option(0.0, 'random erasing probability (Zhong et al. 2017; their '
                                        'value: 0.5); in-memory pipeline; 0: off')
    ema_decay: float = option(0.0, 'moving average of the weights (e.g. 0.999): validated, '
                                   'selected and saved to best/ instead of the weights; 0: off')
    amp: bool = option(False, 'mixed precision (float16 on GPU, bfloat16 on CPU)')
    pipeline: str = option('auto', 'memory (decoded once, batch augmentation: small images), '
                                   'workers (per-image, worker processes) or auto')
    workers: int = option(2, 'data worker processes per rank (workers pipeline)')
    seed: int = option(0, 'seed of initialization, data order and augmentation')
    keep: int = option(3, 'epoch checkpoints kept besides best/')
    resume: bool = option(False, 'continue from the newest checkpoint in --save-dir, even with '
                                 'other flags (the same command resumes without it)')
    fresh: bool = option(False, 'delete the run in --save-dir and start over')
    log_interval: int = option(20, 'iterations between progress updates')
    progress: bool = option(True, 'progress bar (off: one line per epoch)')
    max_iters: int = option(0, 'stop each epoch after this many iterations; 0: whole epoch '
                               '(tests)')

    def validate(self):
        check_positive_ints(self, ('epochs', 'batch_size', 'classes'), as_flags=False)
        if self.workers < 0:
            raise ValueError('workers must be >= 0, got %d' % self.workers)
        get_model_info(self.model)  # unknown model: ValueError with close matches
        for flag in ('rec_train', 'rec_val'):
            if not getattr(self, flag):
                raise ValueError('--%s is required' % flag.replace('_', '-'))
        for name, low, high, low_open, high_open in (
                ('dropblock_prob', 0, 1, False, True), ('base_lr', 0, None, True, False),
                ('momentum', 0, 1, False, True), ('wd', 0, None, False, False),
                ('label_smoothing', 0, 1, False, True), ('mixup_alpha', 0, None, False, False),
                ('min_scale', 0, 1, True, False), ('jitter', 0, None, False, False),
                ('lighting', 0, None, False, False), ('random_erasing', 0, 1, False, False),
                ('ema_decay', 0, 1, False, True)):
            check_number(name, getattr(self, name), low, high, low_open, high_open)
        if self.final_drop is not None:
            check_number('final_drop', self.final_drop, 0, 1, high_open=True)
        if self.input_size is not None:  # 0 is not "the default": leave the flag out for that
            check_positive_ints(self, ('input_size',))
        if self.crop_ratio is not None:
            check_number('crop_ratio', self.crop_ratio, 0, 1, low_open=True)
        if self.warmup_epochs < 0 or self.mixup_off_epochs < 0 or self.max_iters < 0:
            raise ValueError('--warmup-epochs, --mixup-off-epochs and --max-iters must be >= 0')
        if self.pipeline not in PIPELINES:
            raise ValueError('--pipeline %r: allowed %s' % (self.pipeline, ', '.join(PIPELINES)))
        if self.pipeline == 'memory' and self.autoaugment:
            raise ValueError('--autoaugment runs per image: use --pipeline workers or auto')
        if self.random_erasing and (self.pipeline == 'workers' or self.autoaugment):
            raise ValueError('--random-erasing runs in the in-memory batch pipeline (images of '
                             'at most %d px), not with --pipeline workers or --autoaugment'
                             % MAX_SIDE)


def count_correct(logits, labels, k=5):
    """(top-1 correct, top-k correct) counts of a batch."""
    labels = labels.astype('int64').asnumpy()
    top = np.argsort(-logits.asnumpy(), axis=1)[:, :k]
    return int((top[:, 0] == labels).sum()), int((top == labels[:, None]).any(axis=1).sum())


def evaluate(net, loader, ctx, comm=None, progress=None):
    """Top-1/top-5 (%) and counts over a loader; under Horovod the counts are summed exactly.
    ``progress`` (e.g. from :func:`validation_bar`) is advanced per batch and closed."""
    correct1 = correct5 = seen = 0
    loss_sum = 0.0
    loss_fn = mx.gluon.loss.SoftmaxCrossEntropyLoss()
    for data, label in with_progress(loader, progress):
        data = data.as_in_context(ctx)
        label = label.as_in_context(ctx)
        logits = net(data).astype('float32', copy=False)
        c1, c5 = count_correct(logits, label)
        correct1, correct5, seen = correct1 + c1, correct5 + c5, seen + data.shape[0]
        loss_sum += float(loss_fn(logits, label).sum().asscalar())
    if comm is not None:
        correct1, correct5, seen, loss_sum = comm.sum([correct1, correct5, seen, loss_sum],
                                                      'eval_counts')
    seen = max(seen, 1)
    return dict(top1=100.0 * correct1 / seen, top5=100.0 * correct5 / seen,
                loss=loss_sum / seen, correct=int(correct1), samples=int(seen))


def _setup_amp(cfg, ctx):
    if not cfg.amp:
        return 'float32'
    from mxnet.contrib import amp
    target = 'float16' if ctx.device_type == 'gpu' else 'bfloat16'
    if target == 'bfloat16':
        from ..deploy.optimize import require_bfloat16_cpu
        require_bfloat16_cpu()  # --amp on a CPU without AVX-512: a clear error, not oneDNN's
    amp.init(target_dtype=target)
    return target


def train(cfg, comm=None, log=print):
    """Train ``cfg.model`` and return a summary dict. Resumes from the latest checkpoint in
    ``cfg.save_dir`` when ``cfg.resume``."""
    cfg.validate()
    comm = comm or Comm()
    ctx = device(comm.local_rank)
    info = get_model_info(cfg.model)
    size = cfg.input_size or info.input_size
    crop_ratio = cfg.crop_ratio or info.crop_ratio
    amp_dtype = _setup_amp(cfg, ctx)
    ckpt = check_run_identity(cfg, comm.rank, log)  # before the data: mismatches named first
    train_loader, sampler, val_loader = _loaders(cfg, comm, info, size, crop_ratio)
    comm.start()  # after the loaders have forked their workers
    iters = iterations_per_epoch(sampler, cfg.batch_size, cfg.max_iters)

    kwargs = dict(last_gamma=cfg.last_gamma, dropblock_prob=0.0)
    if cfg.final_drop is not None:
        kwargs['final_drop'] = cfg.final_drop
    net = get_model(cfg.model, classes=cfg.classes, **kwargs)
    if cfg.dropblock_prob > 0 and not set_drop_prob(net, 0.0):
        raise ValueError('--dropblock-prob %g: %s has no DropBlock layers; pass '
                         '--dropblock-prob 0' % (cfg.dropblock_prob, cfg.model))
    # every layer knows its input channels, so this allocates all weights now; no forward pass
    # before the broadcast below: an inference call would reorder weights into oneDNN layouts,
    # which Horovod cannot read
    mx.random.seed(cfg.seed)  # the same initial weights for the same seed (rank 0's win)
    net.initialize(mx.init.MSRAPrelu(), ctx=ctx)
    # the folder is made once the data and the network are found: a start-up error leaves none
    start_run(cfg, comm.rank)
    recipe.exclude_from_weight_decay(net)
    lr = recipe.scaled_lr(cfg.base_lr, cfg.batch_size * comm.size)
    schedule = recipe.lr_schedule(lr, cfg.epochs, iters, cfg.warmup_epochs)
    trainer = comm.trainer(net.collect_params(), 'nag', {
        'learning_rate': lr, 'momentum': cfg.momentum, 'wd': cfg.wd, 'lr_scheduler': schedule})
    if amp_dtype == 'float16':
        from mxnet.contrib import amp
        amp.init_trainer(trainer)

    start_epoch, history, best = resume_and_broadcast(ckpt, comm, net, trainer, ctx, 'best_top1',
                                                      log, schedule)
    average = _weight_average(cfg, net, ckpt, log if comm.rank == 0 else None)
    net.hybridize(static_alloc=True, static_shape=True)

    loss_fn = mx.gluon.loss.SoftmaxCrossEntropyLoss(sparse_label=False)
    metrics_path = os.path.join(cfg.save_dir, 'metrics.jsonl')
    for epoch in range(start_epoch, cfg.epochs):
        sampler.set_epoch(epoch)
        mx.random.seed(cfg.seed * 1000 + epoch * 97 + comm.rank)  # DropBlock / dropout masks
        mix_rng = np.random.RandomState(cfg.seed * 1000 + epoch)
        set_drop_prob(net, recipe.dropblock_prob_at(epoch, cfg.epochs, cfg.dropblock_prob))
        use_mixup = cfg.mixup_alpha > 0 and epoch < cfg.epochs - cfg.mixup_off_epochs
        bar = progress_bar(cfg, comm, iters, epoch)
        loss_sum, seen, tic = 0.0, 0, time.time()
        first_seen = first_done = None
        for i, (data, label) in enumerate(train_loader):
            if i >= iters:
                break
            data = data.as_in_context(ctx)
            label = label.as_in_context(ctx)
            targets = recipe.smooth_labels(label, cfg.classes, cfg.label_smoothing)
            if use_mixup:
                data, targets = recipe.mixup(data, targets, recipe.mixup_lambda(mix_rng,
                                                                                 cfg.mixup_alpha))
            with autograd.record():
                out = net(data)  # under AMP the graph casts where it is safe
                loss = loss_fn(out.astype('float32', copy=False), targets)
            if amp_dtype == 'float16':
                from mxnet.contrib import amp
                with amp.scale_loss(loss, trainer) as scaled:
                    autograd.backward(scaled)
            else:
                loss.backward()
            trainer.step(data.shape[0])
            if average is not None:
                average.update()
            batch_loss = check_finite(float(loss.mean().asscalar()), epoch, i, cfg.save_dir)
            loss_sum += batch_loss * data.shape[0]
            seen += data.shape[0]
            if i == 0:  # the steady rate leaves out the first step (graph building, re-tracing)
                first_seen, first_done = seen, time.time()
            if bar is not None:
                bar.update(1)
                if i % cfg.log_interval == 0 or i == iters - 1:
                    bar.set_postfix(loss='%.3f' % (loss_sum / seen),
                                    lr='%.4f' % trainer.learning_rate,
                                    img_s='%.0f' % (seen * comm.size / (time.time() - tic)))
        elapsed = time.time() - tic
        steady = None
        if first_seen is not None and seen > first_seen:
            steady = (seen - first_seen) * comm.size / max(time.time() - first_done, 1e-9)
        if bar is not None:
            bar.close()
        train_loss = comm.sum([loss_sum, seen], 'train_loss')
        comm.average_running_stats(net)  # one model validated, checkpointed and resumed
        val = evaluate(net, val_loader, ctx, comm,
                       validation_bar(cfg.progress, comm, val_loader))
        extra = {}
        if average is not None:  # the average is what is selected; the weights for comparison
            extra = dict(val_top1_weights=val['top1'], val_loss_weights=val['loss'])
            with average.applied():
                comm.average_running_stats(net)
                val = evaluate(net, val_loader, ctx, comm,
                               validation_bar(cfg.progress, comm, val_loader,
                                              'validating the average'))
        record = dict(epoch=epoch + 1, train_loss=train_loss[0] / max(train_loss[1], 1),
                      val_top1=val['top1'], val_top5=val['top5'], val_loss=val['loss'],
                      lr=trainer.learning_rate, img_per_s=train_loss[1] / elapsed,
                      img_per_s_steady=steady, epoch_seconds=elapsed, **extra)
        history.append(record)
        best = max(best or 0.0, val['top1'])
        if comm.rank == 0:
            log('epoch %d: train loss %.4f, val top-1 %.2f%%, top-5 %.2f%%, %.0f img/s'
                % (epoch + 1, record['train_loss'], val['top1'], val['top5'],
                   record['img_per_s']))
            save_checkpoint(cfg.save_dir, epoch, net, trainer,
                            dict(config=asdict(cfg), history=history, best_top1=best,
                                 val_top1=val['top1'], world_size=comm.size,
                                 # every random stream is re-seeded from (seed, epoch) at the
                                 # start of an epoch, so this is all a resume needs
                                 seed=cfg.seed,
                                 ema_updates=average.updates if average else None),
                            keep=cfg.keep, best_metric='val_top1', average=average)
            write_jsonl(metrics_path, history)
    summary = dict(model=cfg.model, epochs=cfg.epochs, history=history, best_top1=best,
                   final=history[-1] if history else None, save_dir=cfg.save_dir,
                   world_size=comm.size)
    if comm.rank == 0 and history:
        plot_curves(history, os.path.join(cfg.save_dir, 'curves.png'))
    return net, summary


def _weight_average(cfg, net, ckpt, log=None):
    """The moving average of ``net``'s weights when ``cfg.ema_decay`` is set (None otherwise),
    restored from the checkpoint ``ckpt`` a run resumes from; started from the current weights
    when that checkpoint kept none (a run resumed with EMA newly switched on)."""
    if not cfg.ema_decay:
        return None
    average = WeightAverage(net, cfg.ema_decay)
    if ckpt:
        path = os.path.join(ckpt, AVERAGE)
        if os.path.isfile(path):
            average.load(path, read_meta(ckpt).get('ema_updates') or 0)
        elif log:
            log('%s kept no moving average of the weights: it starts from the resumed weights'
                % ckpt)
    return average


def _loaders(cfg, comm, info, size, crop_ratio):
    """(train loader, its sampler, validation loader): in-memory batches for small images
    (``--pipeline memory``, or ``auto`` when they fit), else per-image DataLoader workers."""
    train_set = RecordDataset(cfg.rec_train, classes=cfg.classes)
    val_set = RecordDataset(cfg.rec_val, classes=cfg.classes)
    memory = cfg.pipeline == 'memory' or (
        cfg.pipeline == 'auto' and not cfg.autoaugment and fits_in_memory(train_set)
        and fits_in_memory(val_set))
    if cfg.random_erasing and not memory:
        raise ValueError('--random-erasing runs in the in-memory batch pipeline; %s has images '
                         'larger than %d px (or too many to hold), which take the per-image path'
                         % (cfg.rec_train, MAX_SIDE))
    if memory:
        sampler = ShardSampler(len(train_set), comm.rank, comm.size, shuffle=True,
                               seed=cfg.seed, pad=True)
        augment = BatchAugment(size, cfg.min_scale, cfg.jitter, cfg.lighting, info.interpolation,
                               erase_prob=cfg.random_erasing)
        train_loader = MemoryLoader(*decode_all(train_set), sampler, cfg.batch_size, info.mean,
                                    info.std, augment, cfg.seed)
    else:
        train_loader, sampler = make_loader(
            train_set, train_transform(size, info.mean, info.std, cfg.min_scale, cfg.jitter,
                                       cfg.lighting, cfg.autoaugment, info.interpolation),
            cfg.batch_size, comm.rank, comm.size, train=True, seed=cfg.seed,
            workers=cfg.workers)
    val_loader = evaluation_loader(val_set, cfg.batch_size, info.mean, info.std, size,
                                   crop_ratio, comm.rank, comm.size, cfg.workers, memory)
    return train_loader, sampler, val_loader


def iterations_per_epoch(sampler, batch_size, max_iters=0):
    """Full batches of this rank's shard per epoch (at most ``max_iters`` when set)."""
    iters = len(sampler) // batch_size
    if max_iters:
        iters = min(iters, max_iters)
    if iters < 1:
        raise ValueError('the training shard of %d records is smaller than one batch of %d'
                         % (len(sampler), batch_size))
    return iters


# what a checkpoint's run and the resuming command must share; the rest (epochs, learning rate,
# ...) follows the new command
RUN_IDENTITY = ('model', 'backbone', 'classes', 'dataset')
# flags that change how a run is watched or stored, not what it computes: a command that differs
# from a run's own only in these is the same run
RUN_INDEPENDENT = ('resume', 'fresh', 'progress', 'log_interval', 'workers', 'keep')


def check_run_identity(cfg, rank=0, log=print):
    """The newest checkpoint of ``cfg.save_dir`` to resume from, or None to start afresh;
    called on every rank before the data are read, so a mismatch is named first. Rank 0 first
    repairs what a kill inside a checkpoint update left behind; a newest checkpoint whose files
    cannot be read is named through ``log`` and the previous one used.

    - ``cfg.fresh``: None (rank 0 deletes the old run, :func:`start_run`);
    - ``cfg.resume``: the newest checkpoint, after checking it holds the same model and classes
      (ValueError naming both otherwise); other flags may change (e.g. more ``--epochs``);
    - neither: the newest checkpoint when the folder holds the run of this very command (the
      same command after a kill resumes), ValueError when it holds another run: two runs are
      never mixed in one folder."""
    if cfg.fresh:
        if cfg.resume:
            raise ValueError('--fresh deletes the run that --resume continues: pass one of them')
        return None
    if rank == 0:
        repair_run(cfg.save_dir)
    # a damaged newest checkpoint is named and the one before it used
    ckpt = latest_readable_checkpoint(cfg.save_dir, log if rank == 0 else None)
    if not ckpt:
        return None
    saved = read_meta(ckpt).get('config', {})
    if cfg.resume:
        for key in RUN_IDENTITY:
            if key in saved and hasattr(cfg, key) and saved[key] != getattr(cfg, key):
                raise ValueError(
                    '--resume: %s holds a run with --%s %s, this command has --%s %s; pass '
                    'the same value or another --save-dir'
                    % (cfg.save_dir, key, saved[key], key, getattr(cfg, key)))
        return ckpt
    differing = ['--%s %s there, %s here' % (key.replace('_', '-'), saved.get(key, '(none)'),
                                              value)
                 for key, value in sorted(asdict(cfg).items())
                 if key not in RUN_INDEPENDENT and saved.get(key, value) != value]
    if differing:
        raise ValueError('%s holds another run (%s): pass --resume to continue it with this '
                         "command's flags, --fresh to delete it and start over, or another "
                         '--save-dir' % (cfg.save_dir, '; '.join(differing[:3]) +
                                         ('; ...' if len(differing) > 3 else '')))
    return ckpt


def start_run(cfg, rank):
    """Rank 0's preparation of ``cfg.save_dir`` before anything is written: with ``cfg.fresh``
    the old run is deleted (only a folder the project wrote), then the folder is made and must
    be writable."""
    if rank != 0:
        return
    if cfg.fresh:
        remove_run(cfg.save_dir)
    check_writable(cfg.save_dir)


def resume_and_broadcast(ckpt, comm, net, trainer, ctx, best_key, log=print, lr_scheduler=None):
    """Load checkpoint folder ``ckpt`` (from :func:`check_run_identity`; None: start afresh);
    then give every rank rank 0's parameters (and optimizer states after a resume).
    ``lr_scheduler`` (the new command's schedule) replaces the one saved with the optimizer, so
    a longer ``--epochs`` trains its added epochs. Returns (first epoch to run, history, best
    value of ``best_key``)."""
    start_epoch, history, best = 0, [], None
    if ckpt:
        meta = load_checkpoint(ckpt, net, trainer, ctx)
        if lr_scheduler is not None:
            for updater in trainer._updaters:  # load_states restored the pickled optimizer
                updater.optimizer.lr_scheduler = lr_scheduler
            trainer._optimizer.lr_scheduler = lr_scheduler
        start_epoch, history = meta['epoch'] + 1, meta.get('history', [])
        best = meta.get(best_key)
        if comm.rank == 0:
            log('resumed from %s (epoch %d done)' % (ckpt, meta['epoch'] + 1))
    comm.broadcast_parameters(net)
    if start_epoch:
        comm.broadcast_trainer_states(trainer)
    return start_epoch, history, best


def check_finite(batch_loss, epoch, iteration, save_dir):
    """``batch_loss``, or FloatingPointError naming where it stopped and what is kept."""
    if not math.isfinite(batch_loss):
        raise FloatingPointError(
            'training loss became %s at epoch %d, iteration %d; no checkpoint was written for '
            'this epoch (the last complete one is %s)'
            % (batch_loss, epoch + 1, iteration + 1, latest_checkpoint(save_dir)))
    return batch_loss


def progress_bar(cfg, comm, iters, epoch):
    """A tqdm bar for the epoch on rank 0 when ``cfg.progress``, else None."""
    if comm.rank != 0 or not cfg.progress:
        return None
    from tqdm import tqdm
    return tqdm(total=iters, desc='epoch %d/%d' % (epoch + 1, cfg.epochs), leave=True)


def validation_bar(show, comm, loader, what='validating'):
    """A transient tqdm bar over ``loader``'s batches on rank 0 when ``show``, else None."""
    if comm is not None and comm.rank != 0 or not show:
        return None
    from tqdm import tqdm
    return tqdm(total=len(loader) if hasattr(loader, '__len__') else None, desc=what,
                leave=False)


def with_progress(loader, progress):
    """``loader``'s batches, advancing ``progress`` (a tqdm bar, or None) after each and closing
    it at the end."""
    try:
        for batch in loader:
            yield batch
            if progress is not None:
                progress.update(1)
    finally:
        if progress is not None:
            progress.close()


def plot_curves(history, path, metric='val_top1', metric_label='validation top-1 (%)',
                loss_label='train (smoothed/mixed targets)'):
    """Training loss (and validation loss, where recorded) and a validation ``metric`` by
    epoch, as a PNG."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    epochs = [h['epoch'] for h in history]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(epochs, [h['train_loss'] for h in history], 'o-', label=loss_label)
    if all('val_loss' in h for h in history):
        ax1.plot(epochs, [h['val_loss'] for h in history], 's-', label='validation')
    ax1.set_xlabel('epoch')
    ax1.set_ylabel('loss')
    ax1.legend()
    ax2.plot(epochs, [h[metric] for h in history], 'o-', color='C2')
    if all(metric + '_weights' in h for h in history):  # --ema-decay: the average was validated
        ax2.lines[-1].set_label('moving average (selected on)')
        ax2.plot(epochs, [h[metric + '_weights'] for h in history], 's--', color='C1',
                 label='weights')
        ax2.legend()
    ax2.set_xlabel('epoch')
    ax2.set_ylabel(metric_label)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    save_figure(fig, path)


def save_figure(fig, path):
    """Write a matplotlib figure as a PNG atomically (:func:`atomic_file`), then close it."""
    import matplotlib.pyplot as plt
    fig.tight_layout()
    try:
        with atomic_file(path) as tmp:
            fig.savefig(tmp, dpi=100)
    finally:
        plt.close(fig)
