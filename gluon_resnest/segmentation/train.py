"""Training and evaluation of DeepLabV3 on a segmentation dataset, on one process or under
horovodrun. Reuses the classification trainer's pieces: Comm (ranks, exact sums, broadcast),
sharded seeded loaders, atomic checkpoints, weight-decay groups and the curves plot."""
import os
import time
from dataclasses import asdict, dataclass

import mxnet as mx
import numpy as np
from mxnet import autograd
from mxnet.gluon import nn

from ..argtypes import check_number, check_positive_ints, option
from ..backbone.resnet import trunk_stride
from ..layers.sync_batchnorm import HorovodSyncBatchNorm
from ..training import recipe
from ..training.checkpoint import save_checkpoint, write_jsonl
from ..training.data import make_loader
from ..training.distributed import Comm, device
from ..training.memory_data import DecodedPairs, fits_in_memory
from ..training.loop import (PIPELINES, check_finite, check_run_identity,
                             iterations_per_epoch, plot_curves, progress_bar,
                             resume_and_broadcast, start_run, validation_bar,
                             with_progress)
from ..zoo.registry import get_model_info
from .data import (BAD_LABELS, DATASETS, SegmentationEvalTransform,
                   SegmentationTrainTransform, check_labels, full_image_loader, open_dataset)
from .metrics import confusion_matrix, segmentation_scores
from .model import ASPP_RATES, SEGMENTATION_HEADS, get_segmentation_model
from .predict import predict_probabilities

__all__ = ['SegTrainConfig', 'train_segmentation', 'evaluate_segmentation', 'pixel_loss',
           'build_model', 'NORMS']

NORMS = ('bn', 'sync', 'frozen')


@dataclass
class SegTrainConfig:
    """Every field is a flag of train/train_segmentation.py; defaults follow GluonCV's ADE20K
    recipe (DeepLabV3, output stride 8, aux 0.2, SGD 0.9, poly 0.9, head LR x10)."""
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
    save_dir: str = option('runs/segmentation', 'checkpoints, metrics.jsonl, curves.png')
    epochs: int = option(120, 'training epochs')
    batch_size: int = option(4, 'images per device (process) and step')
    base_lr: float = option(0.01, 'learning rate for a global batch of 16, scaled linearly')
    warmup_epochs: int = option(0, 'linear warm-up epochs before the poly decay')
    momentum: float = option(0.9, 'SGD momentum')
    wd: float = option(1e-4, 'weight decay (not on BN parameters or biases)')
    head_lr_mult: float = option(10.0, "learning-rate multiplier of the heads")
    bad_labels: str = option('stop', 'a label map that does not fit its image or the dataset '
                                     '(checked before training): stop, naming it, or skip the '
                                     'image with a warning')
    pipeline: str = option('auto', 'memory (small images read once, no workers), workers or '
                                   'auto')
    workers: int = option(2, 'data worker processes per rank (workers pipeline)')
    seed: int = option(0, 'seed of initialization, data order and augmentation')
    keep: int = option(2, 'epoch checkpoints kept besides best/')
    resume: bool = option(False, 'continue from the newest checkpoint in --save-dir, even with '
                                 'other flags (the same command resumes without it)')
    fresh: bool = option(False, 'delete the run in --save-dir and start over')
    progress: bool = option(True, 'progress bar (off: one line per epoch)')
    max_iters: int = option(0, 'stop each epoch after this many iterations; 0: whole epoch '
                               '(tests)')

    def validate(self):
        check_positive_ints(self, ('epochs', 'batch_size', 'classes', 'crop_size', 'base_size',
                                   'head_channels'))
        check_number('base_lr', self.base_lr, 0, low_open=True)
        check_number('momentum', self.momentum, 0, 1, high_open=True)
        for name in ('wd', 'aux_weight', 'head_lr_mult'):
            check_number(name, getattr(self, name), 0)
        check_number('min_scale', self.min_scale, 0, low_open=True)
        check_number('max_scale', self.max_scale, 0, low_open=True)
        if self.max_scale < self.min_scale:
            raise ValueError('--max-scale %g is below --min-scale %g' % (self.max_scale,
                                                                        self.min_scale))
        if self.workers < 0 or self.warmup_epochs < 0 or self.max_iters < 0:
            raise ValueError('--workers, --warmup-epochs and --max-iters must be >= 0')
        if self.dataset not in DATASETS:
            raise ValueError('--dataset %r: allowed %s' % (self.dataset, ', '.join(DATASETS)))
        if self.model not in SEGMENTATION_HEADS:
            raise ValueError('--model %r: allowed %s' % (self.model,
                                                         ', '.join(SEGMENTATION_HEADS)))
        if self.pipeline not in PIPELINES:
            raise ValueError('--pipeline %r: allowed %s' % (self.pipeline, ', '.join(PIPELINES)))
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


def evaluate_segmentation(net, loader, classes, ctx, comm=None, scales=(1.0,), flip=False,
                          ignore_label=255, min_size=1, progress=None):
    """dict(pixel_acc, miou, iou, pixels) over a loader of (image, label map) batches; under
    Horovod the confusion matrices are summed exactly across ranks."""
    conf = np.zeros((classes, classes), np.int64)
    for data, label in with_progress(loader, progress):
        probs = predict_probabilities(net, data.as_in_context(ctx), scales, flip, min_size)
        conf += confusion_matrix(probs.argmax(axis=1), label, classes, ignore_label)
    if comm is not None:
        conf = np.asarray(comm.sum(conf.ravel().tolist(), 'seg_confusion'),
                          np.int64).reshape(conf.shape)
    return segmentation_scores(conf)


def _loaders(cfg, comm, info, log=print):
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


def train_segmentation(cfg, comm=None, log=print):
    """Train a segmentation model; returns (net, summary). Resumes from the newest checkpoint
    in ``cfg.save_dir`` when ``cfg.resume``."""
    cfg.validate()
    comm = comm or Comm()
    ctx = device(comm.local_rank)
    info = get_model_info(cfg.backbone)
    ckpt = check_run_identity(cfg, comm.rank, log)  # before the data: mismatches named first
    train_loader, sampler, val_loader = _loaders(cfg, comm, info, log)
    comm.start()  # after the loaders have forked their workers
    iters = iterations_per_epoch(sampler, cfg.batch_size, cfg.max_iters)

    mx.random.seed(cfg.seed)  # the same initial weights for the same seed (rank 0's win)
    net = build_model(cfg, ctx)
    # every layer knows its input channels: all weights exist now, before any forward pass
    # (with --pretrained-base the model came loaded and its heads initialized)
    if not cfg.pretrained_base:
        net.initialize(mx.init.MSRAPrelu(), ctx=ctx)
    # the folder is made once the data and the weights are found: a start-up error leaves none
    start_run(cfg, comm.rank)
    recipe.exclude_from_weight_decay(net)
    for param in net.head_params().values():
        param.lr_mult = cfg.head_lr_mult
    lr = recipe.scaled_lr(cfg.base_lr, cfg.batch_size * comm.size, reference_batch=16)
    schedule = recipe.poly_schedule(lr, cfg.epochs, iters, cfg.warmup_epochs)
    trainer = comm.trainer(net.collect_params(), 'sgd', {
        'learning_rate': lr, 'momentum': cfg.momentum, 'wd': cfg.wd, 'lr_scheduler': schedule})

    start_epoch, history, best = resume_and_broadcast(ckpt, comm, net, trainer, ctx, 'best_miou',
                                                      log, schedule)
    net.hybridize(static_alloc=True, static_shape=True)

    min_size = net.trunk.output_stride
    metrics_path = os.path.join(cfg.save_dir, 'metrics.jsonl')
    for epoch in range(start_epoch, cfg.epochs):
        sampler.set_epoch(epoch)
        mx.random.seed(cfg.seed * 1000 + epoch * 97 + comm.rank)  # dropout masks
        bar = progress_bar(cfg, comm, iters, epoch)
        loss_sum, seen, tic = 0.0, 0, time.time()
        labelled = mx.nd.zeros((1,), ctx=ctx)  # pixels with a class: read once, at the end
        for i, (data, label) in enumerate(train_loader):
            if i >= iters:
                break
            data, label = data.as_in_context(ctx), label.as_in_context(ctx)
            with autograd.record():
                outputs = net(data)
                loss = pixel_loss(mx.nd, outputs[0], label, cfg.ignore_label)
                if cfg.aux:
                    loss = loss + cfg.aux_weight * pixel_loss(mx.nd, outputs[1], label,
                                                              cfg.ignore_label)
            loss.backward()
            trainer.step(1)  # the loss is already a mean over this rank's pixels
            batch_loss = check_finite(float(loss.asscalar()), epoch, i, cfg.save_dir)
            loss_sum += batch_loss * data.shape[0]
            seen += data.shape[0]
            labelled += (label != cfg.ignore_label).sum()
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss='%.3f' % (loss_sum / seen), lr='%.4f' % trainer.learning_rate,
                                img_s='%.1f' % (seen * comm.size / (time.time() - tic)))
        elapsed = time.time() - tic
        if bar is not None:
            bar.close()
        train_loss = comm.sum([loss_sum, seen, float(labelled.asscalar())], 'train_loss')
        if not train_loss[2]:  # a loss of 0.0000 that teaches nothing
            raise ValueError('epoch %d: every training pixel was --ignore-label %d after the '
                             'crops, so nothing was learnt (no checkpoint written); are '
                             '--base-size %d and --crop-size %d right for these images?'
                             % (epoch + 1, cfg.ignore_label, cfg.base_size, cfg.crop_size))
        comm.average_running_stats(net)
        val = evaluate_segmentation(net, val_loader, cfg.classes, ctx, comm,
                                    ignore_label=cfg.ignore_label, min_size=min_size,
                                    progress=validation_bar(cfg.progress, comm, val_loader))
        record = dict(epoch=epoch + 1, train_loss=train_loss[0] / max(train_loss[1], 1),
                      val_miou=val['miou'], val_pixel_acc=val['pixel_acc'],
                      lr=trainer.learning_rate, img_per_s=train_loss[1] / elapsed,
                      epoch_seconds=elapsed)
        history.append(record)
        best = max(best or 0.0, val['miou'])
        if comm.rank == 0:
            log('epoch %d: train loss %.4f, val mIoU %.2f%%, pixel acc %.2f%%, %.1f img/s'
                % (epoch + 1, record['train_loss'], val['miou'], val['pixel_acc'],
                   record['img_per_s']))
            save_checkpoint(cfg.save_dir, epoch, net, trainer,
                            dict(config=asdict(cfg), history=history, best_miou=best,
                                 val_miou=val['miou'], world_size=comm.size, task='segmentation'),
                            keep=cfg.keep, best_metric='val_miou')
            write_jsonl(metrics_path, history)
    if comm.rank == 0 and history:
        plot_curves(history, os.path.join(cfg.save_dir, 'curves.png'), metric='val_miou',
                    metric_label='validation mIoU (%)',
                    loss_label='train (per pixel%s)' % (
                        ' + %g x auxiliary' % cfg.aux_weight if cfg.aux else ''))
    summary = dict(backbone=cfg.backbone, epochs=cfg.epochs, history=history, best_miou=best,
                   final=history[-1] if history else None, save_dir=cfg.save_dir,
                   world_size=comm.size)
    return net, summary

