"""The one training loop of every task (detectron2's trainer): it asks the task for the model,
data, parameter groups, optimizer, the loss of each batch and an evaluator, and does the rest
itself: Horovod ranks, the learning-rate schedule, mixed precision, hybridization, atomic
checkpoints, resume, the best epoch on validation, metrics.jsonl, curves.png and progress;
optional behaviour (moving average, DropBlock ramp, steady rate) comes as hooks."""
import math
import os
import time
from dataclasses import asdict

import mxnet as mx
from mxnet import autograd

from ..runtime import require_bfloat16_cpu
from .checkpoint import (OPTIMIZER_ORDER, check_writable, latest_checkpoint,
                         latest_readable_checkpoint, load_checkpoint, read_meta, remove_run,
                         repair_run, save_checkpoint, trainer_parameters, write_jsonl)
from .distributed import Comm, device
from .hooks import State, default_hooks
from .progress import plot_curves, progress_bar, validation_bar, with_progress
from .schedule import scaled_lr

__all__ = ['train', 'run_evaluator', 'iterations_per_epoch', 'check_run_identity',
           'start_run', 'resume_and_broadcast', 'check_finite', 'setup_amp']


def setup_amp(cfg, ctx):
    """Initialize MXNet's AMP for ``cfg.amp`` (before any network is built); returns the
    training dtype: float16 on GPU, bfloat16 on CPU (an error on a CPU without AVX-512)."""
    if not cfg.amp:
        return 'float32'
    from mxnet.contrib import amp
    target = 'float16' if ctx.device_type == 'gpu' else 'bfloat16'
    if target == 'bfloat16':
        require_bfloat16_cpu()  # --amp on a CPU without AVX-512: a clear error, not oneDNN's
    amp.init(target_dtype=target)
    return target


def run_evaluator(evaluator, net, loader, comm=None, progress=None):
    """``evaluator`` reset, fed every batch of ``loader`` (advancing ``progress``, a bar from
    :func:`validation_bar`) and evaluated across ranks."""
    evaluator.reset()
    for batch in with_progress(loader, progress):
        evaluator.process(net, batch)
    return evaluator.evaluate(comm)


def train(task, cfg, comm=None, log=print, hooks=None):
    """Train ``task`` with config ``cfg``; returns (net, summary). The same command resumes
    its run after a kill; ``cfg.resume`` continues it with other flags (see
    :func:`check_run_identity`). ``hooks`` (default: :func:`engine.hooks.default_hooks`)."""
    cfg.validate()
    comm = comm or Comm()
    ctx = device(comm.local_rank)
    say = log if comm.rank == 0 else (lambda *args: None)
    amp_dtype = setup_amp(cfg, ctx)
    ckpt = check_run_identity(cfg, comm.rank, log, task)  # mismatches named first
    hooks = default_hooks(cfg, task) if hooks is None else hooks
    # every layer knows its input channels, so building allocates all weights; no forward pass
    # before the broadcast below: an inference call would reorder weights into oneDNN layouts,
    # which Horovod cannot read
    mx.random.seed(cfg.seed)  # the same initial weights for the same seed (rank 0's win)
    net = task.build_model(cfg, ctx)
    state = State(cfg=cfg, task=task, comm=comm, ctx=ctx, net=net, ckpt=ckpt, log=say, epoch=0)
    for hook in hooks:
        hook.after_build(state)
    train_loader, sampler, val_loader = task.loaders(cfg, comm, net, log)
    comm.start()  # after the loaders have forked their workers
    iters = iterations_per_epoch(sampler, cfg.batch_size, cfg.max_iters)
    # the folder is made once the data and the network are found: a start-up error leaves none
    start_run(cfg, comm.rank)

    task.param_groups(cfg, net)
    recipe = task.optimizer(cfg)
    global_batch = cfg.batch_size * comm.size
    lr = scaled_lr(cfg.base_lr, global_batch, recipe.reference_batch)
    schedule = recipe.schedule(lr, cfg.epochs, iters, cfg.warmup_epochs)
    trainer = comm.trainer(trainer_parameters(net), recipe.name, dict(
        recipe.params, learning_rate=lr, momentum=cfg.momentum, wd=cfg.wd,
        lr_scheduler=schedule))
    if amp_dtype == 'float16':
        from mxnet.contrib import amp
        amp.init_trainer(trainer)
    state.trainer = trainer

    start_epoch, history, best = resume_and_broadcast(ckpt, comm, net, trainer, ctx,
                                                      task.best_key, log, schedule, iters,
                                                      global_batch)
    for hook in hooks:
        hook.before_train(state)
    if task.hybridize is not None:
        net.hybridize(**task.hybridize)

    evaluator = task.evaluator(cfg, ctx, net)

    def validate(what='validating'):
        scores = run_evaluator(evaluator, net, val_loader, comm,
                               validation_bar(cfg.progress, comm, val_loader, what))
        return task.record(scores)

    state.validate = validate
    metrics_path = os.path.join(cfg.save_dir, 'metrics.jsonl')
    for epoch in range(start_epoch, cfg.epochs):
        state.epoch = epoch
        sampler.set_epoch(epoch)
        mx.random.seed(cfg.seed * 1000 + epoch * 97 + comm.rank)  # DropBlock / dropout masks
        task.start_epoch(cfg, epoch, comm.rank)
        for hook in hooks:
            hook.before_epoch(state)
        bar = progress_bar(cfg, comm, iters, epoch)
        loss_sum, seen, tic = 0.0, 0, time.time()
        log_sums = {}  # on the device, read once at the end of the epoch
        for i, batch in enumerate(train_loader):
            if i >= iters:
                break
            with autograd.record():
                loss, count, logs = task.loss(net, batch, ctx)
            if amp_dtype == 'float16':
                from mxnet.contrib import amp
                with amp.scale_loss(loss, trainer) as scaled:
                    autograd.backward(scaled)
            else:
                loss.backward()
            # per-sample losses: their gradients summed, averaged over the samples here; a mean
            # loss is averaged already
            trainer.step(count if loss.size == count else 1)
            for hook in hooks:
                hook.after_step(state, i, seen + count)
            batch_loss = check_finite(float(loss.mean().asscalar()), epoch, i, cfg.save_dir)
            loss_sum += batch_loss * count
            seen += count
            for name, value in logs.items():
                value = value.astype('float64') * count
                log_sums[name] = value if name not in log_sums else log_sums[name] + value
            if bar is not None:
                bar.update(1)
                if i % cfg.log_interval == 0 or i == iters - 1:
                    rate = seen * comm.size / (time.time() - tic)
                    bar.set_postfix(loss='%.3f' % (loss_sum / seen),
                                    lr='%.4f' % trainer.learning_rate,
                                    img_s=('%.0f' if rate >= 100 else '%.1f') % rate)
        state.train_end = time.time()
        elapsed = state.train_end - tic
        state.seen = seen
        if bar is not None:
            bar.close()
        names = list(log_sums)  # the task's order (the same on every rank)
        totals = comm.sum([loss_sum, seen] + [float(log_sums[n].asscalar()) for n in names],
                          'train_loss')
        train_logs = {'train_' + n: total / max(totals[1], 1)
                      for n, total in zip(names, totals[2:])}
        task.check_epoch(cfg, epoch, train_logs)
        comm.average_running_stats(net)  # one model validated, checkpointed and resumed
        record = dict(epoch=epoch + 1, train_loss=totals[0] / max(totals[1], 1), **train_logs)
        record.update(world_size=comm.size, global_batch=global_batch)
        record.update(validate())
        record.update(lr=trainer.learning_rate, img_per_s=totals[1] / elapsed,
                      epoch_seconds=elapsed)
        for hook in hooks:
            hook.after_validation(state, record)
        history.append(record)
        best = max(best if best is not None else -math.inf, record[task.metric])
        if comm.rank == 0:
            log(task.describe(record))
            meta = dict(config=asdict(cfg), history=history, world_size=comm.size,
                        task=task.name, seed=cfg.seed, optimizer_order=OPTIMIZER_ORDER,
                        **{task.best_key: best, task.metric: record[task.metric]})
            meta.update(task.meta(cfg))
            average = None
            for hook in hooks:
                fields, hook_average = hook.checkpoint(state)
                meta.update(fields)
                average = hook_average or average
            save_checkpoint(cfg.save_dir, epoch, net, trainer, meta, keep=cfg.keep,
                            best_metric=task.metric, average=average)
            write_jsonl(metrics_path, history)
    if comm.rank == 0 and history:
        plot_curves(history, os.path.join(cfg.save_dir, 'curves.png'), metric=task.metric,
                    metric_label=task.metric_label, loss_label=task.loss_label)
    summary = dict(task.summary(cfg), task=task.name, epochs=cfg.epochs, history=history,
                   final=history[-1] if history else None, save_dir=cfg.save_dir,
                   world_size=comm.size, **{task.best_key: best})
    return net, summary


def iterations_per_epoch(sampler, batch_size, max_iters=0):
    """Full batches of this rank's shard per epoch (at most ``max_iters`` when set)."""
    iters = len(sampler) // batch_size
    if max_iters:
        iters = min(iters, max_iters)
    if iters < 1:
        raise ValueError('the training shard of %d records is smaller than one batch of %d'
                         % (len(sampler), batch_size))
    return iters


# flags that change how a run is watched or stored, not what it computes: a command that differs
# from a run's own only in these is the same run
RUN_INDEPENDENT = ('resume', 'fresh', 'progress', 'log_interval', 'workers', 'keep')


def check_run_identity(cfg, rank=0, log=print, task=None):
    """The newest checkpoint of ``cfg.save_dir`` to resume from, or None to start afresh;
    called on every rank before the data are read, so a mismatch is named first. Rank 0 first
    repairs what a kill inside a checkpoint update left behind; a newest checkpoint whose files
    cannot be read is named through ``log`` and the previous one used.

    - a checkpoint of another ``task`` (e.g. segmentation where classification trains):
      ValueError naming both;
    - ``cfg.fresh``: None (rank 0 deletes the old run, :func:`start_run`);
    - ``cfg.resume``: the newest checkpoint, after checking it holds a run with the same
      ``task.identity`` fields (model, classes, training data, ...; ValueError naming both
      values otherwise); other flags may change (e.g. more ``--epochs``);
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
    meta = read_meta(ckpt)
    saved_task = meta.get('task', 'classification')  # checkpoints before tasks were recorded
    if task is not None and saved_task != task.name:
        raise ValueError('%s holds a %s run, this command trains %s: pass another --save-dir '
                         '(or --fresh to delete that run)' % (cfg.save_dir, saved_task,
                                                             task.name))
    saved = meta.get('config', {})
    if cfg.resume:
        for key in (task.identity if task is not None else ()):
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


def resume_and_broadcast(ckpt, comm, net, trainer, ctx, best_key, log=print, lr_scheduler=None,
                         iters=None, global_batch=None):
    """Load checkpoint folder ``ckpt`` (from :func:`check_run_identity`; None: start afresh);
    then give every rank rank 0's parameters (and optimizer states after a resume).
    ``lr_scheduler`` (the new command's schedule, for ``iters`` steps an epoch at
    ``global_batch`` images a step) replaces the one saved with the optimizer, and the
    optimizer's step count becomes the new schedule's at the epoch resumed from: a longer
    ``--epochs`` trains its added epochs, and a run resumed on another number of processes (or
    with another batch size) continues its schedule, at the learning rate of its new global
    batch, saying so in one line. Returns (first epoch to run, history, best value of
    ``best_key``)."""
    start_epoch, history, best = 0, [], None
    if ckpt:
        meta = load_checkpoint(ckpt, net, trainer, ctx)
        start_epoch, history = meta['epoch'] + 1, meta.get('history', [])
        if lr_scheduler is not None:
            optimizers = [u.optimizer for u in trainer._updaters] + [trainer._optimizer]
            for optimizer in optimizers:  # load_states restored the pickled optimizer
                optimizer.lr_scheduler = lr_scheduler
                if iters is not None:  # every device's per-parameter counts, in place
                    optimizer.num_update = start_epoch * iters
                    for counts in optimizer._all_index_update_counts.values():
                        counts.update(dict.fromkeys(counts, start_epoch * iters))
        best = meta.get(best_key)
        if comm.rank == 0:
            log('resumed from %s (epoch %d done)' % (ckpt, meta['epoch'] + 1))
            before = (history[-1].get('global_batch') if history else None) or \
                meta['config'].get('batch_size', 0) * meta.get('world_size', 1)
            if global_batch is not None and before != global_batch:
                log('the run trained on %d process(es) with a global batch of %d images; it '
                    'continues on %d with %d: the learning rate is scaled to the new batch '
                    '(%.6g) and the schedule continues at epoch %d'
                    % (meta.get('world_size', 1), before, comm.size, global_batch,
                       lr_scheduler(start_epoch * iters) if lr_scheduler and iters
                       else float('nan'), start_epoch + 1))
    comm.broadcast_parameters(net)
    if start_epoch:
        comm.broadcast_trainer_states(trainer)
    # Horovod's broadcasts run asynchronously: wait for them, so that no rank of a resumed run
    # with no epochs left exits while another still broadcasts (Horovod shut down under it, a
    # traceback at exit)
    mx.nd.waitall()
    return start_epoch, history, best


def check_finite(batch_loss, epoch, iteration, save_dir):
    """``batch_loss``, or FloatingPointError naming where it stopped and what is kept."""
    if not math.isfinite(batch_loss):
        raise FloatingPointError(
            'training loss became %s at epoch %d, iteration %d; no checkpoint was written for '
            'this epoch (the last complete one is %s)'
            % (batch_loss, epoch + 1, iteration + 1, latest_checkpoint(save_dir)))
    return batch_loss


