"""Semantic segmentation as a task of the engine (engine.loop.train): DeepLabV3 (or FCN) on any
zoo trunk, GluonCV's ADE20K recipe (output stride 8, auxiliary loss 0.2, SGD 0.9, poly decay,
heads at 10x the learning rate), validated by mIoU on whole images."""
from dataclasses import dataclass

import mxnet as mx
import numpy as np
from mxnet.gluon import nn

from ..argtypes import check_number, check_positive_ints, option
from ..backbone.resnet import trunk_stride
from ..engine import schedule
from ..engine.config import RunConfig
from ..engine.data import DecodedPairs, fits_in_memory, make_loader
from ..engine.loop import run_evaluator, train as train_task
from ..engine.task import Evaluator, Optimizer, Task, register_task
from ..layers.sync_batchnorm import HorovodSyncBatchNorm
from ..zoo.registry import get_model_info
from .data import (BAD_LABELS, DATASETS, SegmentationEvalTransform,
                   SegmentationTrainTransform, check_labels, full_image_loader, open_dataset)
from .metrics import confusion_matrix, segmentation_scores
from .model import ASPP_RATES, SEGMENTATION_HEADS, get_segmentation_model
from .predict import predict_probabilities

__all__ = ['SegTrainConfig', 'SegmentationTask', 'ConfusionEvaluator', 'train_segmentation',
           'evaluate_segmentation', 'pixel_loss', 'build_model', 'NORMS']

NORMS = ('bn', 'sync', 'frozen')


@dataclass
class SegTrainConfig(RunConfig):
    """Every field is a flag of train/train_segmentation.py; defaults follow GluonCV's ADE20K
    recipe (DeepLabV3, output stride 8, aux 0.2, SGD 0.9, poly 0.9, head LR x10)."""
    DEFAULTS = dict(save_dir='runs/segmentation', epochs=120, batch_size=4, keep=2,
                    base_lr=(0.01, 'learning rate for a global batch of 16, scaled linearly'),
                    warmup_epochs=(0, 'linear warm-up epochs before the poly decay'),
                    momentum=(0.9, 'SGD momentum'))
    dataset: str = option('voc', 'on-disk layout: ' + ', '.join(DATASETS))
    data_root: str = option('', "the dataset's folder, required")
    train_split: str = option('train', 'training split')
    val_split: str = option('val', 'validation split: picks the best epoch')
    classes: int = option(21, 'number of classes (the dataset must have as many)')
    model: str = option('deeplabv3', 'segmentation head: ' + ', '.join(SEGMENTATION_HEADS))
    backbone: str = option('resnest50', 'zoo trunk (gluon_resnest.list_models() lists them)')
    pretrained_base: str = option('', "'imagenet' (the published weights) or a classification "
                                      "checkpoint folder / .params file; empty: random")
    output_stride: int = option(8, 'trunk output stride, 8 or 16 (dilated stages)')
    aspp_rates: str = option('', 'three ASPP rates like 2,4,6 (default: 12,24,36 at output '
                                 'stride 8, 6,12,18 at 16)')
    head_channels: int = option(256, 'channels of the ASPP and FCN heads')
    aux: bool = option(True, 'auxiliary FCN head on stage 3 (training loss only)')
    aux_weight: float = option(0.2, 'weight of the auxiliary loss')
    norm: str = option('bn', 'bn (per process), sync (statistics of the global batch across '
                             'processes) or frozen (trunk statistics kept)')
    ignore_label: int = option(255, 'label of pixels outside every class')
    base_size: int = option(520, 'long side before random scaling, px')
    crop_size: int = option(480, 'training crop, px')
    min_scale: float = option(0.5, 'smallest random scale of base-size')
    max_scale: float = option(2.0, 'largest random scale of base-size')
    head_lr_mult: float = option(10.0, "learning-rate multiplier of the heads")
    bad_labels: str = option('stop', 'a label map that does not fit its image or the dataset '
                                     '(checked before training): stop, naming it, or skip the '
                                     'image with a warning')

    def validate(self):
        RunConfig.validate(self)
        check_positive_ints(self, ('classes', 'crop_size', 'base_size', 'head_channels'))
        for name in ('aux_weight', 'head_lr_mult'):
            check_number(name, getattr(self, name), 0)
        check_number('min_scale', self.min_scale, 0, low_open=True)
        check_number('max_scale', self.max_scale, 0, low_open=True)
        if self.max_scale < self.min_scale:
            raise ValueError('--max-scale %g is below --min-scale %g' % (self.max_scale,
                                                                        self.min_scale))
        if self.dataset not in DATASETS:
            raise ValueError('--dataset %r: allowed %s' % (self.dataset, ', '.join(DATASETS)))
        if self.model not in SEGMENTATION_HEADS:
            raise ValueError('--model %r: allowed %s' % (self.model,
                                                         ', '.join(SEGMENTATION_HEADS)))
        if self.bad_labels not in BAD_LABELS:
            raise ValueError('--bad-labels %r: allowed %s' % (self.bad_labels,
                                                              ', '.join(BAD_LABELS)))
        if self.norm not in NORMS:
            raise ValueError('--norm %r: allowed %s' % (self.norm, ', '.join(NORMS)))
        if self.output_stride not in ASPP_RATES:
            raise ValueError('--output-stride must be 8 or 16, got %r' % self.output_stride)
        if not self.data_root:
            raise ValueError('--data-root is required')
        if not 0 <= self.ignore_label or self.ignore_label < self.classes:
            raise ValueError('--ignore-label %d must be >= --classes (%d): it marks pixels '
                             'outside every class' % (self.ignore_label, self.classes))
        self.rates()
        arch = get_model_info(self.backbone).arch  # unknown backbone: names close matches
        minimum = trunk_stride(self.output_stride, arch.get('stem_stride', 2),
                               arch.get('stem_pool', True))
        if self.crop_size < minimum:
            raise ValueError('--crop-size %d is too small for %s at output stride %d: at least '
                             '%d px' % (self.crop_size, self.backbone, self.output_stride,
                                        minimum))

    def rates(self):
        if not self.aspp_rates:
            return ASPP_RATES[self.output_stride]
        try:
            values = tuple(int(v) for v in self.aspp_rates.split(','))
        except ValueError:
            values = ()
        if len(values) != 3 or min(values) < 1:
            raise ValueError('--aspp-rates must be 3 positive integers like 12,24,36, got %r'
                             % self.aspp_rates)
        return values


def build_model(cfg, ctx):
    """The network of a config (uninitialized heads unless ``pretrained_base``)."""
    norm_layer, trunk_kwargs = nn.BatchNorm, {}
    if cfg.norm == 'sync':  # statistics of the global batch across Horovod processes
        norm_layer = HorovodSyncBatchNorm
    elif cfg.norm == 'frozen':
        trunk_kwargs['use_global_stats'] = True
    return get_segmentation_model(cfg.model, backbone=cfg.backbone, classes=cfg.classes,
                                  aux=cfg.aux, output_stride=cfg.output_stride,
                                  pretrained_base=True if cfg.pretrained_base == 'imagenet'
                                  else cfg.pretrained_base, norm_layer=norm_layer,
                                  rates=cfg.rates(),
                                  head_channels=cfg.head_channels, **trunk_kwargs)


def pixel_loss(F, logits, label, ignore_label=255):
    """Mean per-pixel softmax cross-entropy over the pixels whose label is not ignored."""
    valid = label != ignore_label
    target = F.where(valid, label, F.zeros_like(label))
    # classes last: MXNet's log_softmax and pick are slow over a middle axis, and the
    # transpose costs less than the difference
    log_probs = F.log_softmax(F.transpose(logits, axes=(0, 2, 3, 1)), axis=-1)
    picked = F.pick(log_probs, target, axis=-1)
    return -(picked * valid).sum() / F.maximum(valid.sum(), 1)


class ConfusionEvaluator(Evaluator):
    """Pixel accuracy and IoU per class from a confusion matrix; under Horovod the matrices
    are summed exactly across ranks. ``scales`` and ``flip``: multi-scale inference."""

    def __init__(self, classes, ctx, scales=(1.0,), flip=False, ignore_label=255, min_size=1):
        self.classes, self.ctx, self.scales, self.flip = classes, ctx, scales, flip
        self.ignore_label, self.min_size = ignore_label, min_size
        self.reset()

    def reset(self):
        self.conf = np.zeros((self.classes, self.classes), np.int64)

    def process(self, net, batch):
        data, label = batch
        probs = predict_probabilities(net, data.as_in_context(self.ctx), self.scales,
                                      self.flip, self.min_size)
        self.conf += confusion_matrix(probs.argmax(axis=1), label, self.classes,
                                      self.ignore_label)

    def evaluate(self, comm=None):
        conf = self.conf
        if comm is not None:
            conf = np.asarray(comm.sum(conf.ravel().tolist(), 'seg_confusion'),
                              np.int64).reshape(conf.shape)
        return segmentation_scores(conf)


def evaluate_segmentation(net, loader, classes, ctx, comm=None, scales=(1.0,), flip=False,
                          ignore_label=255, min_size=1, progress=None):
    """dict(pixel_acc, miou, iou, pixels) over a loader of (image, label map) batches
    (ConfusionEvaluator)."""
    return run_evaluator(ConfusionEvaluator(classes, ctx, scales, flip, ignore_label, min_size),
                         net, loader, comm, progress)


def _loaders(cfg, comm, info, log=print):
    """(training loader, sampler, whole-image validation loader), every label map checked."""
    if cfg.train_split == cfg.val_split and comm.rank == 0:
        log('warning: --val-split is the training split %s: the best epoch is chosen on '
            'images the model trains on' % cfg.train_split)
    sets = []
    for split in (cfg.train_split, cfg.val_split):
        data = open_dataset(cfg.dataset, cfg.data_root, split, cfg.classes, cfg.ignore_label)
        if data.classes != cfg.classes:
            raise ValueError('--classes %d, but %s split %s has %d classes'
                             % (cfg.classes, cfg.dataset, split, data.classes))
        # every label map before training: a bad one is named now, not after an epoch
        sets.append(check_labels(data, '%s split %s' % (cfg.dataset, split), cfg.bad_labels,
                                 log if comm.rank == 0 else (lambda *a: None)))
    train_set, val_set = sets
    workers = cfg.workers
    if cfg.pipeline == 'memory' or (cfg.pipeline == 'auto' and all(
            fits_in_memory(data, data[0][0]) for data in (train_set, val_set))):
        # read once; the per-image transform then costs less than a worker process's transfer
        train_set, val_set, workers = DecodedPairs(train_set), DecodedPairs(val_set), 0
    train_loader, sampler = make_loader(
        train_set, SegmentationTrainTransform(cfg.crop_size, cfg.base_size, info.mean, info.std,
                                              cfg.ignore_label, (cfg.min_scale, cfg.max_scale)),
        cfg.batch_size, comm.rank, comm.size, train=True, seed=cfg.seed, workers=workers,
        joint=True)
    val_loader = full_image_loader(val_set, SegmentationEvalTransform(info.mean, info.std),
                                   cfg.batch_size, comm.rank, comm.size, workers)
    return train_loader, sampler, val_loader


@register_task
class SegmentationTask(Task):
    """Per-pixel cross-entropy (plus the auxiliary head's); selected on validation mIoU."""
    name, config, summary_fields = 'segmentation', SegTrainConfig, ('backbone',)
    identity = ('model', 'backbone', 'classes', 'dataset', 'train_split')
    metric, best_key, metric_label = 'val_miou', 'best_miou', 'validation mIoU (%)'
    best_label, loss_label = 'val mIoU', 'train (per pixel, + weighted auxiliary)'
    record_fields = dict(val_miou='miou', val_pixel_acc='pixel_acc')
    epoch_line = ('epoch %(epoch)d: train loss %(train_loss).4f, val mIoU %(val_miou).2f%%, '
                  'pixel acc %(val_pixel_acc).2f%%, %(img_per_s).1f img/s')

    def build_model(self, cfg, ctx):
        # with --pretrained-base the trunk comes loaded and the heads initialized
        net = build_model(cfg, ctx)
        if not cfg.pretrained_base:
            net.initialize(mx.init.MSRAPrelu(), ctx=ctx)
        return net

    def loaders(self, cfg, comm, net, log=print):
        return _loaders(cfg, comm, get_model_info(cfg.backbone), log)

    def param_groups(self, cfg, net):
        Task.param_groups(self, cfg, net)
        for param in net.head_params().values():
            param.lr_mult = cfg.head_lr_mult

    def optimizer(self, cfg):
        return Optimizer('sgd', 16, schedule.poly_schedule)

    def start_epoch(self, cfg, epoch, rank):
        self.cfg = cfg

    def loss(self, net, batch, ctx):
        cfg = self.cfg
        data, label = (x.as_in_context(ctx) for x in batch)
        outputs = [out.astype('float32', copy=False) for out in net(data)]  # AMP: float32 loss
        main = pixel_loss(mx.nd, outputs[0], label, cfg.ignore_label)
        logs = dict(labelled=(label != cfg.ignore_label).mean())
        if not cfg.aux:
            return main, data.shape[0], logs
        aux = pixel_loss(mx.nd, outputs[1], label, cfg.ignore_label)
        logs.update(loss_main=main.detach(), loss_aux=aux.detach())
        return main + cfg.aux_weight * aux, data.shape[0], logs

    def check_epoch(self, cfg, epoch, logs):
        if not logs['train_labelled']:  # a loss of 0.0000 that teaches nothing
            raise ValueError('epoch %d: every training pixel was --ignore-label %d after the '
                             'crops, so nothing was learnt (no checkpoint written); are '
                             '--base-size %d and --crop-size %d right for these images?'
                             % (epoch + 1, cfg.ignore_label, cfg.base_size, cfg.crop_size))

    def evaluator(self, cfg, ctx, net):
        return ConfusionEvaluator(cfg.classes, ctx, ignore_label=cfg.ignore_label,
                                  min_size=net.trunk.output_stride)



def train_segmentation(cfg, comm=None, log=print):
    """Train a segmentation model (a SegTrainConfig) on the engine; returns (net, summary)."""
    return train_task(SegmentationTask(), cfg, comm, log)
