"""The detection run's configuration (every field a flag of train/train_detection.py; the
defaults are the paper's 1x recipe), the detector it builds, and the loader of the checkpoints
its runs write."""
import dataclasses
import os
import warnings
from dataclasses import dataclass

import mxnet as mx
from mxnet.gluon import nn

from ..argtypes import check_positive_ints, option
from ..engine.config import RunConfig
from ..layers.sync_batchnorm import HorovodSyncBatchNorm
from .data import EMPTY, LAYOUTS
from .evaluate import METRICS
from .model import (DETECTION_MODELS, HEADS, MASK_MODELS, check_short_side,
                    get_detection_model, initialize_for_training, load_checkpoint_weights)

__all__ = ['DetTrainConfig', 'build_detector', 'load_detector', 'NORMS', 'HEADS']

NORMS = ('sync', 'bn', 'frozen')


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
        low, high = self.short_range()
        for flag, value in (('--short', low), ('--test-short', self.test_short)):
            check_short_side(value, self.max_size, self.backbone, flag)
        check_short_side(high, self.max_size, self.backbone)
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
        return dict(head=self.head, short=self.short_range(), max_size=self.max_size,
                    num_sample=self.num_sample, rpn_train_post_nms=self.rpn_train_post_nms,
                    rpn_test_post_nms=self.rpn_test_post_nms)


def build_detector(cfg, classes, ctx):
    """The detector of a config with ``classes`` classes, every weight allocated on ``ctx``:
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
    # what no file filled: everything, the heads, or another class count's predictors
    return initialize_for_training(net, ctx)


def load_detector(checkpoint, ctx=None, max_size=None):
    """(network, its DetTrainConfig, class names, category ids) of a detection checkpoint
    folder the trainer wrote (``best/`` or ``epoch-NNNN/``). ``max_size``: the largest image
    side it will see, when above the run's own (the anchors, which the network computes from
    its settings, are made for it)."""
    from ..engine.checkpoint import read_meta
    meta = read_meta(checkpoint)
    if meta.get('task') != 'detection':
        raise ValueError('%s holds a %s checkpoint, not a detection one'
                         % (checkpoint, meta.get('task', 'classification')))
    cfg = DetTrainConfig(**meta['config'])
    ctx = ctx or mx.cpu()
    net = build_detector(dataclasses.replace(
        cfg, pretrained='', pretrained_base='', norm='bn' if cfg.norm == 'sync' else cfg.norm,
        max_size=max(cfg.max_size, max_size or 0)), len(meta['class_names']), ctx)
    load_checkpoint_weights(net, os.path.join(checkpoint, 'model.params'), ctx)
    # the box-target generator's constants serve training only: an inference graph leaves them
    # out, which MXNet would warn about on every hybridized call
    warnings.filterwarnings('ignore', message='Parameter .*boxcenterencoder.* is not used')
    return net, cfg, meta['class_names'], meta['category_ids']
