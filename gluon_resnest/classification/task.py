"""Image classification as a task of the engine (engine.loop.train): a zoo model on RecordIO
data with the paper's recipe (label smoothing, mixup, DropBlock ramp, cosine schedule with
warm-up, Nesterov momentum), validated by top-1/top-5 accuracy."""
from dataclasses import dataclass

import mxnet as mx
import numpy as np

from ..argtypes import check_number, check_positive_ints, option
from ..engine import schedule
from ..engine.config import RunConfig
from ..engine.data import MAX_SIDE, ShardSampler, fits_in_memory, make_loader
from ..engine.loop import run_evaluator, train as train_task
from ..engine.hooks import DropBlockRamp
from ..engine.task import Evaluator, Optimizer, Task, register_task
from ..zoo.registry import get_model, get_model_info
from . import recipe
from .data import RecordDataset, train_transform
from .memory_data import BatchAugment, MemoryLoader, decode_all, evaluation_loader

__all__ = ['TrainConfig', 'ClassificationTask', 'AccuracyEvaluator', 'train', 'evaluate',
           'count_correct']


@dataclass
class TrainConfig(RunConfig):
    """Every field is a command-line flag of train/train.py; defaults are the paper's recipe."""
    DEFAULTS = dict(save_dir='runs/resnest', epochs=270, batch_size=64,
                    base_lr=(0.1, 'learning rate for a global batch of 256, scaled linearly'),
                    warmup_epochs=(5, 'linear warm-up epochs before the cosine decay'),
                    momentum=(0.9, 'Nesterov momentum'))
    model: str = option('resnest50', 'zoo model name (gluon_resnest.list_models() lists them)')
    rec_train: str = option('', 'training RecordIO file (.rec with its .idx), required')
    rec_val: str = option('', 'validation RecordIO file: picks the best epoch, required')
    classes: int = option(1000, 'number of classes')
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

    def validate(self):
        check_positive_ints(self, ('classes',))
        get_model_info(self.model)  # unknown model: ValueError with close matches
        for flag in ('rec_train', 'rec_val'):
            if not getattr(self, flag):
                raise ValueError('--%s is required' % flag.replace('_', '-'))
        for name, low, high, low_open, high_open in (
                ('dropblock_prob', 0, 1, False, True), ('label_smoothing', 0, 1, False, True),
                ('mixup_alpha', 0, None, False, False), ('min_scale', 0, 1, True, False),
                ('jitter', 0, None, False, False), ('lighting', 0, None, False, False),
                ('random_erasing', 0, 1, False, False)):
            check_number(name, getattr(self, name), low, high, low_open, high_open)
        if self.final_drop is not None:
            check_number('final_drop', self.final_drop, 0, 1, high_open=True)
        if self.input_size is not None:  # 0 is not "the default": leave the flag out for that
            check_positive_ints(self, ('input_size',))
        if self.crop_ratio is not None:
            check_number('crop_ratio', self.crop_ratio, 0, 1, low_open=True)
        if self.mixup_off_epochs < 0:
            raise ValueError('--mixup-off-epochs must be >= 0')
        if self.pipeline == 'memory' and self.autoaugment:
            raise ValueError('--autoaugment runs per image: use --pipeline workers or auto')
        if self.random_erasing and (self.pipeline == 'workers' or self.autoaugment):
            raise ValueError('--random-erasing runs in the in-memory batch pipeline (images of '
                             'at most %d px), not with --pipeline workers or --autoaugment'
                             % MAX_SIDE)
        RunConfig.validate(self)

    def train_size(self):
        """The training crop: ``input_size``, else the model's own training crop."""
        return self.input_size or get_model_info(self.model).input_size


def count_correct(logits, labels, k=5):
    """(top-1 correct, top-k correct) counts of a batch."""
    labels = labels.astype('int64').asnumpy()
    top = np.argsort(-logits.asnumpy(), axis=1)[:, :k]
    return int((top[:, 0] == labels).sum()), int((top == labels[:, None]).any(axis=1).sum())


class AccuracyEvaluator(Evaluator):
    """Top-1/top-5 accuracy (%) and the mean cross-entropy; under Horovod the counts are
    summed exactly over ranks."""

    def __init__(self, ctx):
        self.ctx = ctx
        self.loss_fn = mx.gluon.loss.SoftmaxCrossEntropyLoss()
        self.reset()

    def reset(self):
        self.correct1 = self.correct5 = self.seen = 0
        self.loss_sum = 0.0

    def process(self, net, batch):
        data, label = (x.as_in_context(self.ctx) for x in batch)
        logits = net(data).astype('float32', copy=False)
        c1, c5 = count_correct(logits, label)
        self.correct1, self.correct5 = self.correct1 + c1, self.correct5 + c5
        self.seen += data.shape[0]
        self.loss_sum += float(self.loss_fn(logits, label).sum().asscalar())

    def evaluate(self, comm=None):
        correct1, correct5, seen, loss_sum = self.correct1, self.correct5, self.seen, \
            self.loss_sum
        if comm is not None:
            correct1, correct5, seen, loss_sum = comm.sum([correct1, correct5, seen, loss_sum],
                                                          'eval_counts')
        seen = max(seen, 1)
        return dict(top1=100.0 * correct1 / seen, top5=100.0 * correct5 / seen,
                    loss=loss_sum / seen, correct=int(correct1), samples=int(seen))


def evaluate(net, loader, ctx, comm=None, progress=None):
    """Top-1/top-5 (%) and counts over a loader of (image, label) batches (AccuracyEvaluator);
    ``progress`` (e.g. from engine.progress.validation_bar) is advanced per batch and closed."""
    return run_evaluator(AccuracyEvaluator(ctx), net, loader, comm, progress)


@register_task
class ClassificationTask(Task):
    """The paper's ImageNet recipe on RecordIO data; selected on validation top-1."""
    name, config, summary_fields = 'classification', TrainConfig, ('model',)
    identity = ('model', 'classes')
    metric, best_key, metric_label = 'val_top1', 'best_top1', 'validation top-1 (%)'
    best_label, loss_label = 'val top-1', 'train (smoothed/mixed targets)'
    record_fields = dict(val_top1='top1', val_top5='top5', val_loss='loss')
    epoch_line = ('epoch %(epoch)d: train loss %(train_loss).4f, val top-1 %(val_top1).2f%%, '
                  'top-5 %(val_top5).2f%%, %(img_per_s).0f img/s')

    def __init__(self):
        # cross-entropy against the smoothed (and mixed) target distributions
        self.loss_fn = mx.gluon.loss.SoftmaxCrossEntropyLoss(sparse_label=False)

    def hooks(self, cfg):
        """DropBlock's rate ramped over the run (the paper's recipe)."""
        return [DropBlockRamp(cfg.dropblock_prob, cfg.model)] if cfg.dropblock_prob else []

    def build_model(self, cfg, ctx):
        kwargs = dict(last_gamma=cfg.last_gamma, dropblock_prob=0.0)  # ramped by a hook
        if cfg.final_drop is not None:
            kwargs['final_drop'] = cfg.final_drop
        net = get_model(cfg.model, classes=cfg.classes, **kwargs)
        net.initialize(mx.init.MSRAPrelu(), ctx=ctx)
        return net

    def loaders(self, cfg, comm, net, log=print):
        """In-memory batches for small images (``--pipeline memory``, or ``auto`` when they
        fit), else per-image DataLoader workers."""
        info = get_model_info(cfg.model)
        size = cfg.train_size()
        train_set = RecordDataset(cfg.rec_train, classes=cfg.classes)
        val_set = RecordDataset(cfg.rec_val, classes=cfg.classes)
        memory = cfg.pipeline == 'memory' or (
            cfg.pipeline == 'auto' and not cfg.autoaugment and fits_in_memory(train_set)
            and fits_in_memory(val_set))
        if cfg.random_erasing and not memory:
            raise ValueError('--random-erasing runs in the in-memory batch pipeline; %s has '
                             'images larger than %d px (or too many to hold), which take the '
                             'per-image path' % (cfg.rec_train, MAX_SIDE))
        if memory:
            sampler = ShardSampler(len(train_set), comm.rank, comm.size, shuffle=True,
                                   seed=cfg.seed, pad=True)
            augment = BatchAugment(size, cfg.min_scale, cfg.jitter, cfg.lighting,
                                   info.interpolation, erase_prob=cfg.random_erasing)
            train_loader = MemoryLoader(*decode_all(train_set), sampler, cfg.batch_size,
                                        info.mean, info.std, augment, cfg.seed)
        else:
            train_loader, sampler = make_loader(
                train_set, train_transform(size, info.mean, info.std, cfg.min_scale,
                                           cfg.jitter, cfg.lighting, cfg.autoaugment,
                                           info.interpolation),
                cfg.batch_size, comm.rank, comm.size, train=True, seed=cfg.seed,
                workers=cfg.workers)
        val_loader = evaluation_loader(val_set, cfg.batch_size, info.mean, info.std, size,
                                       cfg.crop_ratio or info.crop_ratio, comm.rank, comm.size,
                                       cfg.workers, memory)
        return train_loader, sampler, val_loader

    def optimizer(self, cfg):
        return Optimizer('nag', 256, schedule.lr_schedule)

    def start_epoch(self, cfg, epoch, rank):
        self.mix_rng = np.random.RandomState(cfg.seed * 1000 + epoch)
        self.use_mixup = cfg.mixup_alpha > 0 and epoch < cfg.epochs - cfg.mixup_off_epochs
        self.cfg = cfg

    def loss(self, net, batch, ctx):
        cfg = self.cfg
        data, label = (x.as_in_context(ctx) for x in batch)
        targets = recipe.smooth_labels(label, cfg.classes, cfg.label_smoothing)
        if self.use_mixup:
            data, targets = recipe.mixup(data, targets,
                                         recipe.mixup_lambda(self.mix_rng, cfg.mixup_alpha))
        out = net(data)  # under AMP the graph casts where it is safe
        loss = self.loss_fn(out.astype('float32', copy=False), targets)
        return loss, data.shape[0], {}

    def evaluator(self, cfg, ctx, net):
        return AccuracyEvaluator(ctx)



def train(cfg, comm=None, log=print):
    """Train ``cfg.model`` (a TrainConfig) on the engine; returns (net, summary)."""
    return train_task(ClassificationTask(), cfg, comm, log)
