"""Object detection and instance segmentation as a task of the engine (engine.loop.train):
Faster, Mask or Cascade R-CNN with FPN on any zoo trunk, the paper's recipe (synchronized BN, a
random short side of 640-800 px with the long side at most 1333, flips, SGD 0.9, weight decay 1e-4,
0.02 per 16 images after a linear warm-up, x0.1 at epochs 8 and 11 of 12), validated by COCO
box AP (or VOC mAP) on the dataset's own image ids.

The losses are GluonCV's R-CNN losses, logged separately: the RPN's objectness (sigmoid
cross-entropy) and box regression (smooth L1, beta 1/9) over 256 sampled anchors, the box
head's classification (softmax cross-entropy) and class-specific regression (smooth L1) over
the sampled RoIs, and Mask R-CNN's per-pixel sigmoid cross-entropy on the positive RoIs;
Cascade R-CNN has each stage's classification and class-agnostic box loss instead. The RPN's
anchor targets are made from the anchors the network itself returns."""
import dataclasses
import functools
import os
import warnings
from dataclasses import dataclass

import mxnet as mx
import numpy as np
from mxnet import autograd
from mxnet.gluon import nn

from ..argtypes import check_positive_ints, option
from ..backbone.resnet import trunk_stride
from ..engine import schedule
from ..engine.config import RunConfig
from ..engine.data import MAX_BYTES, DecodedPairs, make_loader
from ..engine.loop import run_evaluator, train as train_task
from ..engine.task import Optimizer, Task
from ..layers.sync_batchnorm import HorovodSyncBatchNorm
from ..zoo.registry import get_model_info
from .data import (EMPTY, LAYOUTS, DetectionEvalTransform, DetectionTrainTransform,
                   open_detection_data)
from .evaluate import METRICS, COCODetectionEvaluator
from .model import (DETECTION_MODELS, LIGHT_HEAD, MASK_MODELS, allocate_parameters,
                    get_detection_model)

__all__ = ['DetTrainConfig', 'DetectionTask', 'train_detection', 'evaluate_detection',
           'load_detector',
           'build_model', 'rcnn_losses', 'NORMS']

NORMS = ('sync', 'bn', 'frozen')
HEADS = ('gluoncv', 'light')
LOSSES = ('rpn_cls', 'rpn_box', 'rcnn_cls', 'rcnn_box', 'mask') + tuple(
    'stage%d_%s' % (k, kind) for k in (1, 2, 3) for kind in ('cls', 'box'))


def _ints(text, name, count=None):
    try:
        values = tuple(int(v) for v in str(text).split(','))
    except ValueError:
        values = ()
    if not values or (count and len(values) != count) or min(values) < 0:
        raise ValueError('--%s must be %s non-negative integers separated by commas, got %r'
                         % (name, count or 'one or more', text))
    return values


@dataclass
class DetTrainConfig(RunConfig):
    """Every field is a flag of train/train_detection.py; defaults are the paper's 1x recipe
    (Detectron's, as GluonCV's FPN models were trained)."""
    DEFAULTS = dict(save_dir='runs/detection', epochs=12, batch_size=2, keep=2,
                    base_lr=(0.02, 'learning rate for a global batch of 16 images, scaled '
                                   'linearly'),
                    warmup_epochs=(0, 'warm-up epochs, added to --warmup-iters'),
                    momentum=(0.9, 'SGD momentum'))
    layout: str = option('coco', 'on-disk layout: coco (annotations/instances_<split>.json and '
                                 '<split>/), voc, or coco-json (--train-annotations and '
                                 '--val-annotations, images in --data-root)')
    data_root: str = option('', "the dataset's folder (coco-json: the image folder), required")
    train_split: str = option('train2017', 'training split (voc: e.g. trainval or '
                                           '2007/trainval)')
    val_split: str = option('val2017', 'validation split: picks the best epoch')
    train_annotations: str = option('', 'coco-json: the training annotation file')
    val_annotations: str = option('', 'coco-json: the validation annotation file')
    model: str = option('faster_rcnn_fpn', 'detector: ' + ', '.join(DETECTION_MODELS))
    backbone: str = option('resnest50', 'zoo trunk (gluon_resnest.list_models() lists them)')
    pretrained_base: str = option('', "'imagenet' (the published weights) or a classification "
                                      "checkpoint folder / .params file; empty: random")
    pretrained: str = option('', "start from GluonCV's COCO weights of --backbone: 'coco' "
                                 '(verified store), a sha1 prefix, or a GluonCV-format file; '
                                 'another class count loads all but the predictors')
    classes: int = option(0, 'number of classes; 0: the training data\'s')
    norm: str = option('sync', 'sync (statistics of the global batch across processes), bn '
                               '(per process) or frozen (trunk statistics kept)')
    short: str = option('640,800', 'training short side, a random integer in this range, px')
    test_short: int = option(800, 'validation short side, px')
    max_size: int = option(1333, 'long side at most, px')
    lr_decay_epochs: str = option('8,11', 'epochs after which the rate is multiplied by 0.1')
    warmup_iters: int = option(500, 'linear warm-up iterations from a third of the rate')
    empty: str = option('skip', 'training images without annotations: skip, or keep as '
                                'background')
    metric: str = option('coco', 'validation metric: coco (box AP 0.5:0.95), voc07 or voc12 '
                                 '(mAP at IoU 0.5)')
    head: str = option('gluoncv', "R-CNN heads: gluoncv (GluonCV's, which its COCO weights "
                                  'fit: 256-channel pyramid, 4conv1fc box head) or light (64 '
                                  'channels, 2fc of 256 units, for small images)')
    num_sample: int = option(512, 'RoIs sampled per image for the box head')
    rpn_train_post_nms: int = option(2000, 'proposals per image in training')
    rpn_test_post_nms: int = option(1000, 'proposals per image in validation')

    def validate(self):
        RunConfig.validate(self)
        check_positive_ints(self, ('test_short', 'max_size', 'num_sample',
                                   'rpn_train_post_nms', 'rpn_test_post_nms'))
        if self.classes < 0 or self.warmup_iters < 0:
            raise ValueError('--classes and --warmup-iters must be >= 0')
        for name, allowed in (('layout', LAYOUTS), ('model', DETECTION_MODELS), ('head', HEADS),
                              ('norm', NORMS), ('empty', EMPTY), ('metric', METRICS)):
            if getattr(self, name) not in allowed:
                raise ValueError('--%s %r: allowed %s' % (name, getattr(self, name),
                                                          ', '.join(allowed)))
        if self.model in MASK_MODELS and self.metric != 'coco':
            raise ValueError('--metric %s has no mask AP: Mask R-CNN is validated by COCO AP'
                             % self.metric)
        if self.pretrained and self.head != 'gluoncv':
            raise ValueError("--pretrained loads GluonCV's weights, which fit --head gluoncv "
                             'only, not --head %s' % self.head)
        if not self.data_root:
            raise ValueError('--data-root is required')
        if self.layout == 'coco-json' and not (self.train_annotations and self.val_annotations):
            raise ValueError('--layout coco-json needs --train-annotations and '
                             '--val-annotations')
        arch = get_model_info(self.backbone).arch  # unknown backbone: names close matches
        # P6 is twice C5's stride: 64 px for ImageNet trunks
        coarsest = 2 * trunk_stride(32, arch.get('stem_stride', 2), arch.get('stem_pool', True))
        low, high = self.short_range()
        for name, value in (('--short', low), ('--test-short', self.test_short)):
            if value < coarsest:
                raise ValueError('%s %d is too small for the FPN of %s: its coarsest level (P6) '
                                 'has a stride of %d px, so images need at least %d px a side'
                                 % (name, value, self.backbone, coarsest, coarsest))
        if self.max_size < max(high, self.test_short):
            raise ValueError('--max-size %d is below the short side %d'
                             % (self.max_size, max(high, self.test_short)))
        steps = self.decay_epochs()
        if list(steps) != sorted(set(steps)):
            raise ValueError('--lr-decay-epochs must increase, got %s' % self.lr_decay_epochs)

    def short_range(self):
        values = _ints(self.short, 'short')
        if len(values) > 2 or values[0] > values[-1]:
            raise ValueError('--short is one size or a range low,high, got %r' % self.short)
        return values[0], values[-1]

    def decay_epochs(self):
        return _ints(self.lr_decay_epochs, 'lr-decay-epochs')

    def model_settings(self):
        """The R-CNN settings the flags override (get_detection_model's kwargs)."""
        settings = dict(LIGHT_HEAD if self.head == 'light' else {})
        if self.model not in MASK_MODELS:
            settings.pop('mask_channels', None)
        return dict(settings, short=self.short_range(), max_size=self.max_size,
                    num_sample=self.num_sample, rpn_train_post_nms=self.rpn_train_post_nms,
                    rpn_test_post_nms=self.rpn_test_post_nms)


def build_model(cfg, classes, ctx):
    """The detector of a config with ``classes`` classes, its weights allocated on ``ctx``:
    loaded from ``--pretrained`` (GluonCV's COCO weights; other class counts keep all but the
    predictors) or ``--pretrained-base`` (the trunk), the rest initialized."""
    norm_layer = HorovodSyncBatchNorm if cfg.norm == 'sync' else nn.BatchNorm
    pretrained = {'': False, 'coco': True}.get(cfg.pretrained, cfg.pretrained)
    base = {'': False, 'imagenet': True}.get(cfg.pretrained_base, cfg.pretrained_base)
    net = get_detection_model(cfg.model, backbone=cfg.backbone, classes=classes,
                              per_device_batch_size=cfg.batch_size,
                              pretrained=pretrained, ctx=ctx, norm_layer=norm_layer,
                              pretrained_base=base, use_global_stats=cfg.norm == 'frozen',
                              **cfg.model_settings())
    # GluonCV builds its box-target generator (two constant parameters) at its first training
    # call; built now, checkpoints and resumes hold the same parameters from the start
    if getattr(net, 'uses_target_generator', True):
        net.target_generator.collect_params().reset_ctx(ctx)
    # what no file filled (everything, the heads, or another class count's predictors);
    # layers with their own initializer (GluonCV's predictors, the FPN) keep it
    missing = [p for p in net.collect_params().values() if p._data is None]
    for param in missing:
        param.initialize(default_init=mx.init.MSRAPrelu(), ctx=ctx)
    return allocate_parameters(net)


def _batch_list(samples):
    """Training items stay a list (images differ in size): :func:`pad_batch` makes the batch."""
    return samples


def _eval_batch(samples):
    """(1 x 3 x H x W images, image ids, resize factors) of a batch of one image."""
    images, image_ids, scales = zip(*samples)
    return mx.nd.array(np.stack(images)), np.array(image_ids), np.array(scales, np.float32)


def _pipeline(cfg, datasets):
    """(datasets to load from, workers): decoded in memory when every image fits in a quarter
    of MAX_BYTES (judged from the first), else read per image by worker processes."""
    if cfg.pipeline == 'workers':
        return datasets, cfg.workers
    if cfg.pipeline == 'auto':
        first = datasets[0][0][0]
        if first.nbytes * sum(len(d) for d in datasets) > MAX_BYTES // 4:
            return datasets, cfg.workers
    return [DecodedPairs(d) for d in datasets], 0


def _smooth_l1(pred, target, mask, beta):
    """Smooth L1 (Huber with ``beta``) of the masked elements."""
    diff = mx.nd.abs(pred - target) * mask
    return mx.nd.where(diff < beta, 0.5 * diff * diff / beta, diff - 0.5 * beta)


def pad_batch(items, ctx):
    """(images B x 3 x H x W, gt boxes B x M x 4, gt labels B x M x 1, masks B x M x H x W or
    None, each image's (height, width)) of training items: images padded at the bottom and
    right with zeros (the normalized mean), boxes and labels with -1 rows, which GluonCV's
    samplers skip; an image without objects is all -1 rows."""
    sizes = [item[0].shape[1:] for item in items]
    height, width = (max(s[k] for s in sizes) for k in (0, 1))
    count = max(1, max(len(item[1]) for item in items))
    images = np.zeros((len(items), 3, height, width), np.float32)
    boxes = -np.ones((len(items), count, 4), np.float32)
    labels = -np.ones((len(items), count, 1), np.float32)
    masks = None if items[0][3] is None else np.zeros((len(items), count, height, width),
                                                      np.float32)
    for i, (image, box, label, mask) in enumerate(items):
        images[i, :, :image.shape[1], :image.shape[2]] = image
        boxes[i, :len(box)] = box
        labels[i, :len(label), 0] = label
        if masks is not None:
            masks[i, :len(mask), :mask.shape[1], :mask.shape[2]] = mask
    return (mx.nd.array(images, ctx=ctx), mx.nd.array(boxes, ctx=ctx),
            mx.nd.array(labels, ctx=ctx),
            None if masks is None else mx.nd.array(masks, ctx=ctx), sizes)


def _anchor_targets(rpn_targets, boxes, anchors, size, ctx):
    """GluonCV's RPN targets of one image against the network's anchors; anchors crossing the
    image's own border (not the batch's padding) are ignored; an image without objects gets
    sampled negatives only."""
    real = boxes[boxes[:, 0] >= 0] if len(boxes) else boxes
    empty = len(real) == 0
    stand_in = -np.ones((1, 4), np.float32)
    with np.errstate(divide='ignore', invalid='ignore'):  # the stand-in box has no size
        cls_t, box_t, box_m = (mx.nd.array(np.asarray(t), ctx=ctx) for t in rpn_targets(
            mx.nd.array(stand_in if empty else real), anchors, size[1], size[0]))
    if empty:  # the stand-in box's best anchor became a positive: make it a negative
        cls_t = mx.nd.where(cls_t > 0, mx.nd.zeros_like(cls_t), cls_t)
        box_t, box_m = mx.nd.zeros_like(box_t), mx.nd.zeros_like(box_m)
    return cls_t, box_t, box_m


def _sigmoid_cross_entropy(logits, targets):
    """Element-wise sigmoid cross-entropy from logits, stable for large ones:
    max(x, 0) - x z + log(1 + exp(-|x|))."""
    return mx.nd.relu(logits) - logits * targets + mx.nd.Activation(-mx.nd.abs(logits),
                                                                     act_type='softrelu')


def _per_image_mean(values, valid):
    """Each image's sum of ``values`` (B x ...) over its ``valid`` entries, divided by their
    number (GluonCV's normalization: by the sampled anchors or RoIs)."""
    axes = tuple(range(1, values.ndim))
    count = mx.nd.maximum(valid.sum(axis=tuple(range(1, valid.ndim))), 1)
    return values.sum(axis=axes) / count


def _rpn_losses(rpn_score, rpn_box, anchors, items, sizes, rpn_targets, ctx):
    """The RPN's objectness (sigmoid cross-entropy) and box (smooth L1, beta 1/9) losses of each
    image, against GluonCV's anchor targets made from the network's own anchors."""
    anchors = mx.nd.concat(*[a.reshape((-1, 4)) for a in anchors], dim=0).as_in_context(
        mx.cpu())
    targets = [_anchor_targets(rpn_targets, box, anchors, size, ctx)
               for (_, box, _, _), size in zip(items, sizes)]
    rpn_cls_t, rpn_box_t, rpn_box_m = (mx.nd.stack(*parts) for parts in zip(*targets))
    valid = rpn_cls_t >= 0
    rpn_cls = _sigmoid_cross_entropy(rpn_score.reshape((0, -1)), rpn_cls_t) * valid
    return dict(rpn_cls=_per_image_mean(rpn_cls, valid),
                rpn_box=_per_image_mean(_smooth_l1(rpn_box, rpn_box_t, rpn_box_m, 1.0 / 9),
                                        valid))


def _classification_loss(logits, targets):
    """Each image's softmax cross-entropy over its RoIs whose target is not -1."""
    valid = targets >= 0
    picked = mx.nd.pick(mx.nd.log_softmax(logits, axis=-1), mx.nd.maximum(targets, 0), axis=-1)
    return _per_image_mean(-picked * valid, valid), valid


def _cascade_losses(outputs, gt_box, gt_label):
    """Each stage's classification and class-agnostic box losses (Detectron2's weights: the
    stages count alike), labels by :func:`cascade.stage_targets` at the stage's IoU."""
    from .cascade import CASCADE_STAGES, stage_targets
    losses = {}
    for stage, (iou, stds) in enumerate(CASCADE_STAGES):
        boxes, logits, deltas = outputs[3 * stage:3 * stage + 3]
        with autograd.pause():
            labels, targets, masks = (mx.nd.stack(*parts) for parts in zip(*[
                stage_targets(boxes[i], gt_box[i], gt_label[i].reshape((-1,)), iou, stds)
                for i in range(boxes.shape[0])]))
        cls, valid = _classification_loss(logits, labels)
        losses['stage%d_cls' % (stage + 1)] = cls
        losses['stage%d_box' % (stage + 1)] = _per_image_mean(
            _smooth_l1(deltas, targets, masks, 1.0), valid)
    return losses


def _mask_loss(mask_pred, mask_targets, mask_weights):
    """Each image's per-pixel sigmoid cross-entropy over its weighted mask pixels."""
    return _per_image_mean(_sigmoid_cross_entropy(mask_pred, mask_targets) * mask_weights,
                           mask_weights)


def _cascade_mask_loss(net, boxes, pooled, gt_box, gt_label, gt_masks, positive_ratio=0.25):
    """Cascade Mask R-CNN's mask loss on the first stage's positives (IoU >= 0.5, Detectron2's
    choice): a quarter of each image's RoIs, positives first (GluonCV's count), their pooled
    features through the mask head."""
    from .cascade import CASCADE_STAGES, best_matches
    images, count = boxes.shape[:2]
    keep = max(1, int(count * positive_ratio))
    with autograd.pause():
        rows, labels, matches = [], [], []
        for i in range(images):
            gt_labels = gt_label[i].reshape((-1,))
            best, overlap = best_matches(boxes[i], gt_box[i], gt_labels)
            foreground = overlap >= CASCADE_STAGES[0][0]
            order = mx.nd.argsort(foreground, is_ascend=False)[:keep]
            rows.append(order + i * count)
            labels.append(((gt_labels.take(best) + 1) * foreground).take(order))
            matches.append(best.take(order))
        rows = mx.nd.concat(*rows, dim=0)
        chosen = boxes.reshape((-1, 4)).take(rows).reshape((images, keep, 4))
        mask_t, mask_m = net.mask_target(chosen, gt_masks, mx.nd.stack(*matches),
                                         mx.nd.stack(*labels))
    return _mask_loss(net.mask(pooled.take(rows)), mask_t, mask_m)


def rcnn_losses(net, items, rpn_targets, ctx):
    """{name: B losses} of a batch of training items ``(image 3 x H x W, boxes N x 4 corners,
    labels N, masks N x H x W or None)`` in one forward pass (``net`` built for B images),
    inside ``autograd.record``; an image without objects trains the background only. Each
    image's losses are normalized by its own sampled anchors and RoIs, as GluonCV's."""
    images, gt_box, gt_label, gt_masks, sizes = pad_batch(items, ctx)
    outputs = net(images, gt_box, gt_label)
    if not getattr(net, 'uses_target_generator', True):  # Cascade (Mask) R-CNN
        losses = _rpn_losses(*outputs[9:12], items, sizes, rpn_targets, ctx)
        losses.update(_cascade_losses(outputs[:9], gt_box, gt_label))
        if gt_masks is not None:
            losses['mask'] = _cascade_mask_loss(net, outputs[0], outputs[12], gt_box, gt_label,
                                                gt_masks)
        return losses
    mask_pred = None
    if gt_masks is not None:
        mask_pred, outputs = outputs[2], outputs[:2] + outputs[3:]
    cls_pred, box_pred, roi, _, matches, rpn_score, rpn_box, anchors, cls_targets, \
        box_targets, box_masks, indices = outputs
    losses = _rpn_losses(rpn_score, rpn_box, anchors, items, sizes, rpn_targets, ctx)
    losses['rcnn_cls'], valid = _classification_loss(cls_pred, cls_targets)
    losses['rcnn_box'] = _per_image_mean(_smooth_l1(box_pred, box_targets, box_masks, 1.0),
                                         valid)
    if mask_pred is not None:
        def positives(x):  # the rows of the RoIs the mask head saw
            return mx.nd.stack(*[mx.nd.take(x[i], indices[i]) for i in range(len(items))])
        with autograd.pause():  # targets, not a function of the weights
            mask_t, mask_m = net.mask_target(positives(roi), gt_masks, positives(matches),
                                             positives(cls_targets))
        losses['mask'] = _mask_loss(mask_pred, mask_t, mask_m)
    return losses


def _open(cfg, split, annotations, masks, empty):
    return open_detection_data(cfg.layout, cfg.data_root, split, masks, empty, annotations)


class DetectionTask(Task):
    """The R-CNN losses summed per image; selected on validation box AP (VOC: mAP)."""
    name, config, summary_fields = 'detection', DetTrainConfig, ('model', 'backbone')
    metric, best_key, metric_label = 'val_ap', 'best_ap', 'validation box AP (%)'
    best_label, loss_label = 'val box AP', 'train (RPN + box head + masks, per image)'
    epoch_line = 'epoch %(epoch)d: train loss %(train_loss).4f, val AP %(val_ap).2f%%'
    # imperative: hybridized, a step took as long (3.08 against 3.09 s for two 128 px images
    # with Mask R-CNN) and every image size would build its own graph
    hybridize = None

    def __init__(self):
        self.sets = None

    def datasets(self, cfg):
        """(training, validation) datasets, opened and checked once."""
        if self.sets is None:
            masks = cfg.model in MASK_MODELS
            self.sets = (_open(cfg, cfg.train_split, cfg.train_annotations, masks, cfg.empty),
                         _open(cfg, cfg.val_split, cfg.val_annotations, False, 'keep'))
            train_set, val_set = self.sets
            if list(train_set.classes) != list(val_set.classes):
                raise ValueError('the training classes (%s) are not the validation ones (%s)'
                                 % (', '.join(train_set.classes[:5]),
                                    ', '.join(val_set.classes[:5])))
            if cfg.classes and cfg.classes != len(train_set.classes):
                raise ValueError('--classes %d, but the training data have %d classes'
                                 % (cfg.classes, len(train_set.classes)))
        return self.sets

    def build_model(self, cfg, ctx):
        from gluoncv.model_zoo.rcnn.rpn.rpn_target import RPNTargetGenerator
        # GluonCV's RPN targets (its FasterRCNNDefaultTrainTransform's defaults)
        self.rpn_targets = RPNTargetGenerator(num_sample=256, pos_iou_thresh=0.7,
                                              neg_iou_thresh=0.3, pos_ratio=0.5)
        return build_model(cfg, len(self.datasets(cfg)[0].classes), ctx)

    def loaders(self, cfg, comm, net, log=print):
        train_set, val_set = self.datasets(cfg)
        if cfg.train_split == cfg.val_split and cfg.train_annotations == cfg.val_annotations \
                and comm.rank == 0:
            log('warning: the validation split is the training split: the best epoch is '
                'chosen on images the model trains on')
        (train_set, val_set), workers = _pipeline(cfg, (train_set, val_set))
        info = get_model_info(cfg.backbone)
        train_loader, sampler = make_loader(
            train_set, DetectionTrainTransform(cfg.short_range(), cfg.max_size, info.mean,
                                               info.std),
            cfg.batch_size, comm.rank, comm.size, train=True, seed=cfg.seed, workers=workers,
            joint=True, batchify=_batch_list)
        val_loader, _ = make_loader(
            val_set, DetectionEvalTransform(cfg.test_short, cfg.max_size, info.mean, info.std),
            1, comm.rank, comm.size, train=False, workers=workers, joint=True,
            batchify=_eval_batch)
        return train_loader, sampler, val_loader

    def optimizer(self, cfg):
        return Optimizer('sgd', 16, functools.partial(
            schedule.step_schedule, steps=cfg.decay_epochs(), warmup_iters=cfg.warmup_iters))

    def loss(self, net, batch, ctx):
        losses = rcnn_losses(net, batch, self.rpn_targets, ctx)
        return mx.nd.add_n(*losses.values()), len(batch), {
            'loss_' + name: value.detach().mean() for name, value in losses.items()}

    def meta(self, cfg):
        train_set = self.datasets(cfg)[0]
        return dict(class_names=list(train_set.classes),
                    category_ids=list(train_set.category_ids))

    def evaluator(self, cfg, ctx, net):
        val_set = self.datasets(cfg)[1]
        return COCODetectionEvaluator(val_set.ground_truth, ctx, val_set.category_ids,
                                      masks=cfg.model in MASK_MODELS, metric=cfg.metric)

    def record(self, scores):
        record = dict(val_ap=scores['ap'] if 'ap' in scores else scores['map'])
        if 'ap50' in scores:
            record.update(val_ap50=scores['ap50'])
        if 'mask_ap' in scores:
            record.update(val_mask_ap=scores['mask_ap'])
        return record

    def describe(self, record):
        line = Task.describe(self, record)
        if 'val_mask_ap' in record:
            line += ', mask AP %.2f%%' % record['val_mask_ap']
        losses = ', '.join('%s %.3f' % (name, record['train_loss_' + name]) for name in LOSSES
                           if 'train_loss_' + name in record)
        return line + ' (%s), %.2f img/s' % (losses, record['img_per_s'])


def evaluate_detection(net, dataset, ctx=None, backbone='resnest50', short=800, max_size=1333,
                       metric='coco', masks=False, comm=None, results_path=None, progress=False):
    """Box (and mask) AP, or VOC mAP, of ``net`` (on trunk ``backbone``, whose normalization
    the images get) on a detection dataset (its ground truth), images resized to ``short``
    (long side at most ``max_size``); under Horovod (``comm``, default: this process's ranks)
    each rank runs its shard and the detections are gathered exactly. ``results_path``: the
    COCO results JSON, written by rank 0."""
    from ..engine.distributed import Comm, device
    from ..engine.progress import validation_bar
    info = get_model_info(backbone)
    comm = comm or Comm()
    ctx = ctx or device(comm.local_rank)
    loader, _ = make_loader(dataset, DetectionEvalTransform(short, max_size, info.mean,
                                                            info.std),
                            1, comm.rank, comm.size, train=False, workers=0, joint=True,
                            batchify=_eval_batch)
    comm.start()
    evaluator = COCODetectionEvaluator(dataset.ground_truth, ctx, dataset.category_ids,
                                       results_path, masks=masks, metric=metric)
    return run_evaluator(evaluator, net, loader, comm,
                         validation_bar(progress, comm, loader, 'evaluating'))


def load_detector(checkpoint, ctx=None):
    """(network, its DetTrainConfig, class names, category ids) of a detection checkpoint
    folder the trainer wrote (``best/`` or ``epoch-NNNN/``)."""
    from ..engine.checkpoint import read_meta
    meta = read_meta(checkpoint)
    if meta.get('task') != 'detection':
        raise ValueError('%s holds a %s checkpoint, not a detection one'
                         % (checkpoint, meta.get('task', 'classification')))
    cfg = DetTrainConfig(**meta['config'])
    ctx = ctx or mx.cpu()
    net = build_model(dataclasses.replace(cfg, pretrained='', pretrained_base='',
                                          norm='bn' if cfg.norm == 'sync' else cfg.norm),
                      len(meta['class_names']), ctx)
    net.load_parameters(os.path.join(checkpoint, 'model.params'), ctx=ctx)
    # the box-target generator's constants serve training only: an inference graph leaves them
    # out, which MXNet would warn about on every hybridized call
    warnings.filterwarnings('ignore', message='Parameter .*boxcenterencoder.* is not used')
    return net, cfg, meta['class_names'], meta['category_ids']


def train_detection(cfg, comm=None, log=print):
    """Train a detector (a DetTrainConfig) on the engine; returns (net, summary)."""
    return train_task(DetectionTask(), cfg, comm, log)
