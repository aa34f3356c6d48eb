"""Faster and Mask R-CNN with a feature pyramid on any zoo trunk: our trunk and FPN, GluonCV's
R-CNN machinery (RPN, anchors, RoIAlign, samplers, target generators, box and mask heads), and
GluonCV's published COCO files loaded strictly by name."""
import os
import re

import mxnet as mx
import numpy as np
from mxnet.gluon import nn

from ..argtypes import check_positive_int
from ..zoo.registry import ModelInfo, get_model_info, list_models, register_task_model
from ..zoo.trunks import get_trunk
from .fpn import DetectionFeatures

__all__ = ['get_detection_model', 'DETECTION_MODELS', 'COCO_CLASSES', 'GLUONCV_FASTER_RCNN_FPN',
           'MASK_RCNN_FPN', 'HEAD', 'LIGHT_HEAD', 'list_detection_weights', 'gluoncv_trunk_names']

DETECTION_MODELS = ('faster_rcnn_fpn', 'mask_rcnn_fpn', 'cascade_rcnn_fpn',
                    'cascade_mask_rcnn_fpn')
MASK_MODELS = ('mask_rcnn_fpn', 'cascade_mask_rcnn_fpn')
# GluonCV's architecture of its faster_rcnn_fpn_syncbn_resnest*_coco models (model_zoo/rcnn/
# faster_rcnn/predefined_models.py): what its published weights were trained with. Detectron2
# (the paper's) differs in: anchor sizes 32-512 (base 16 x scales 2..32 here: the same), RPN
# post-NMS 1000 per image in training, 512 sampled RoIs (here too), a 2fc box head (here
# 4conv1fc with BatchNorm), NMS 0.5 and 100 detections per image (here every one above 0.001).
GLUONCV_FASTER_RCNN_FPN = dict(
    short=(640, 800), max_size=1333, min_stage=2, max_stage=6, nms_thresh=0.5, nms_topk=-1,
    post_nms=-1, roi_mode='align', roi_size=(7, 7), strides=(4, 8, 16, 32, 64), clip=4.14,
    rpn_channel=256, base_size=16, scales=(2, 4, 8, 16, 32), ratios=(0.5, 1, 2),
    alloc_size=(384, 384), rpn_nms_thresh=0.7, rpn_train_pre_nms=12000,
    rpn_train_post_nms=2000, rpn_test_pre_nms=6000, rpn_test_post_nms=1000, rpn_min_size=1,
    num_sample=512, pos_iou_thresh=0.5, pos_ratio=0.25, max_num_gt=100,
    per_device_batch_size=1)
# Mask R-CNN's mask head as GluonCV's FPN Mask R-CNN with synchronized BN builds it (masks of
# 2 x the 7 px RoIs: 14 px; Detectron pools masks at 14 px and predicts 28 px), with
# Detectron's four 3x3 convolutions
MASK_RCNN_FPN = dict(mask_channels=256, rcnn_max_dets=1000, target_roi_scale=2, num_fcn_convs=4)
# the pyramid's width and the box head (GluonCV's 4conv1fc: four 3x3 convolutions with
# BatchNorm, then one 1024-unit layer; Detectron's 2fc is box_convs=0, box_fcs=2)
HEAD = dict(fpn_channels=256, box_convs=4, box_fcs=1, box_units=1024)
# a lighter R-CNN for small images (the Fashion-MNIST instance scenes): a 64-channel pyramid
# and RPN, a 2fc box head of 256 units, a 64-channel mask head, fewer proposals before NMS
LIGHT_HEAD = dict(fpn_channels=64, rpn_channel=64, box_convs=0, box_fcs=2, box_units=256,
                  mask_channels=64, rpn_train_pre_nms=2000, rpn_test_pre_nms=1000)
COCO_CLASSES = 80
# the predictors: left out (and initialized afresh) when weights load for another class count
PREDICTORS = ('class_predictor.weight', 'class_predictor.bias', 'box_predictor.weight',
              'box_predictor.bias')
# what touching GluonCV's net.target_generator adds to its saved files
TARGET_GENERATOR_KEYS = ('_target_generator._box_encoder.means',
                         '_target_generator._box_encoder.stds')


def _published(backbone, sha1, box_ap):
    return ModelInfo(name='faster_rcnn_fpn_syncbn_%s_coco' % backbone, arch={}, eval_crop=800,
                     sha1=sha1, weights_from='gluoncv',
                     extra=dict(detector='faster_rcnn_fpn', backbone=backbone, dataset='coco',
                                classes=COCO_CLASSES, box_ap=box_ap))


# GluonCV 0.10.5's model store (sha1) and the paper's Table 5 (COCO box mAP, %)
for _info in (_published('resnest50', '6df46961827647d418b11ffaf616a6a60d9dd16e', 42.33),
              _published('resnest101', 'baebfa1b7d7f56dd33a7687efea4b014736bd791', 44.72),
              _published('resnest269', 'b7d778f58921e459a6af200f6a323d6fe67069b9', None)):
    register_task_model('detection', _info)


def list_detection_weights():
    """{name: ModelInfo} of the published detection weights."""
    return {name: get_model_info(name, task='detection')
            for name in list_models(task='detection')}


def pyramid_settings(output_stride, max_size):
    """The R-CNN's pyramid strides (P2..P6) for a trunk whose C5 has ``output_stride`` (32 for
    ImageNet trunks: 4..64; the small trunks without a stem pool run at half of it), anchors of
    8 x each level's stride (GluonCV's and Detectron's 32..512 px for ImageNet trunks: 16 px
    base x scales 2..32), and an anchor map large enough for ``max_size`` px images (GluonCV's
    384 cells at least, so its files' anchors fit)."""
    strides = tuple(output_stride // 8 * 2 ** k for k in range(5))
    cells = max(384, -(-max_size // strides[0]))
    return dict(strides=strides, alloc_size=(cells, cells),
                scales=tuple(stride / 2.0 for stride in strides))


def _box_head(norm_layer, norm_kwargs, fpn_channels, box_convs, box_fcs, box_units):
    head = nn.HybridSequential()
    for _ in range(box_convs):
        head.add(nn.Conv2D(fpn_channels, 3, padding=1, use_bias=False),
                 norm_layer(**(norm_kwargs or {})), nn.Activation('relu'))
    for _ in range(box_fcs):
        head.add(nn.Dense(box_units, weight_initializer=mx.init.Normal(0.01)),
                 nn.Activation('relu'))
    return head


def gluoncv_trunk_names(backbone):
    """{GluonCV's global parameter name: structural name} of GluonCV's ``backbone`` trunk (its
    published R-CNN files name trunk parameters globally, e.g. ``resnest_layers1_conv0_weight``
    for ``layer1.0.conv1.weight``); built without weights, paired parameter by parameter."""
    from gluoncv.model_zoo import resnest
    from mxnet.gluon.contrib.nn import SyncBatchNorm
    if not hasattr(resnest, backbone):
        raise ValueError('GluonCV has no %s trunk to read R-CNN files of' % backbone)
    # the published files were trained with synchronized BN: its layers name the parameters
    net = getattr(resnest, backbone)(pretrained=False, dilated=False, norm_layer=SyncBatchNorm)
    structural = {id(p): name for name, p in net._collect_params_with_prefix().items()}
    return {name: structural[id(p)] for name, p in net.collect_params().items()}


def gluoncv_file_names(net, backbone):
    """{our structural name: the name GluonCV's files give it} for every parameter of a
    faster_rcnn_fpn ``net``: the trunk's by :func:`gluoncv_trunk_names`, the FPN's by GluonCV's
    symbol names (``P5_conv_lat``, ``P5_lat_bn`` after the top lateral, ``P4_conv1_bn`` after
    the others, ``P5_conv1`` and ``P5_bn`` at the output, ``P6_conv1`` and ``P6_pre_bn``), the
    rest unchanged."""
    trunk = {structural: name for name, structural in gluoncv_trunk_names(backbone).items()}
    bn = {'gamma': 'gamma', 'beta': 'beta', 'running_mean': 'moving_mean',
          'running_var': 'moving_var'}
    names = {}
    for key in net._collect_params_with_prefix():
        if key.startswith('features.trunk.'):
            names[key] = 'features.' + trunk.get(key[len('features.trunk.'):], '?' + key)
        elif key.startswith('features.fpn.'):
            block, param = key[len('features.fpn.'):].split('.')
            if block.startswith('p6'):
                names[key] = 'features.P6_' + ('pre_bn_' + bn[param] if block == 'p6_bn'
                                               else 'conv1_weight')
                continue
            kind, level, norm = re.match(r'(lateral|output)(\d)(_bn)?$', block).groups()
            if norm:
                prefix = ('P%s_lat_bn' % level if level == '5' else 'P%s_conv1_bn' % level) \
                    if kind == 'lateral' else 'P%s_bn' % level
                names[key] = 'features.%s_%s' % (prefix, bn[param])
            else:
                names[key] = 'features.P%s_%s_weight' % (level, 'conv_lat' if kind == 'lateral'
                                                         else 'conv1')
        else:
            names[key] = key
    return names


def _pyramid_roi_features(self, F, features, rpn_rois, roi_size, strides, roi_mode='align',
                          roi_canonical_scale=224.0, sampling_ratio=2, eps=1e-6):
    """RoIAlign of each RoI on its pyramid level (FPN's rule: level 4 + log2(sqrt(area) /
    224), clipped to P2..P5). GluonCV hands each level's RoIAlign the other levels' RoIs with
    batch index -1 and adds the outputs up; MXNet's CPU RoIAlign leaves such RoIs' outputs
    unwritten (uninitialized memory: pooled features of 1e20 in training, detections that
    changed from call to call) and spoils some of the others'. Here every level pools its own
    RoIs, the others as a point outside the image (zeros), and keeps its own."""
    top = self._max_stage - 1 if self._max_stage > 5 else self._max_stage  # P6: RPN only
    # FPN's 224 px at level 4 holds for a stride-4 P2; a trunk of finer strides keeps the
    # ratio of RoI to cell size
    roi_canonical_scale *= strides[0] / 4.0
    _, x1, y1, x2, y2 = F.split(rpn_rois, axis=-1, num_outputs=5)
    size = F.sqrt((x2 - x1 + 1) * (y2 - y1 + 1))
    level = F.squeeze(F.clip(F.floor(4 + F.log2(size / roi_canonical_scale + eps)),
                             self._min_stage, top))
    if F is mx.nd:  # imperative (training, evaluation): each level pools only its own RoIs
        return _pooled_by_level(features, rpn_rois, level, range(self._min_stage, top + 1),
                                roi_size, strides, sampling_ratio)
    # other levels' RoIs become a point far outside the image: pooled as zeros, quickly, and
    # without the cost of their gradients (most of a training step's RoIAlign time otherwise)
    outside = F.concat(F.slice_axis(rpn_rois, axis=-1, begin=0, end=1),
                       F.ones_like(F.slice_axis(rpn_rois, axis=-1, begin=1, end=None)) * -1e4,
                       dim=-1)
    pooled = []
    for i, stage in enumerate(range(self._min_stage, top + 1)):
        here = level == stage
        features_here = F.contrib.ROIAlign(features[i], F.where(here, rpn_rois, outside),
                                           roi_size, 1. / strides[i],
                                           sample_ratio=sampling_ratio)
        pooled.append(F.where(here, features_here, F.zeros_like(features_here)))
    return F.ElementWiseSum(*pooled)


def _pooled_by_level(features, rois, level, stages, roi_size, strides, sampling_ratio):
    """RoIAlign of each RoI on its level, imperatively: the RoIs are grouped by level, each
    group pooled on its own level and the rows put back in the RoIs' order. The same values as
    pooling every RoI on every level and keeping its own (the graph's way, whose shapes cannot
    depend on the data), at a quarter of RoIAlign's cost, most of which is its backward."""
    levels = level.asnumpy()
    order, pooled = [], []
    for i, stage in enumerate(stages):
        rows = np.flatnonzero(levels == stage)
        if len(rows):
            pooled.append(mx.nd.contrib.ROIAlign(
                features[i], mx.nd.take(rois, mx.nd.array(rows, ctx=rois.context)), roi_size,
                1. / strides[i], sample_ratio=sampling_ratio))
            order.append(rows)
    pooled = pooled[0] if len(pooled) == 1 else mx.nd.concat(*pooled, dim=0)
    return mx.nd.take(pooled, mx.nd.array(np.argsort(np.concatenate(order), kind='stable'),
                                          ctx=rois.context))


class Upsample2x(nn.HybridBlock):
    """A 2x2, stride-2 transposed convolution (``nn.Conv2DTranspose``'s parameters and result)
    computed as a 1x1 convolution to 4x the channels and ``depth_to_space``: MXNet 1.9.1's
    CPU (oneDNN) deconvolution crashes in backward when it ran more than once before it, as
    the mask head does for each image of a batch."""

    def __init__(self, channels, in_channels, weight_initializer=None, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels
        with self.name_scope():
            self.weight = self.params.get('weight', shape=(in_channels, channels, 2, 2),
                                          init=weight_initializer)
            self.bias = self.params.get('bias', shape=(channels,), init='zeros')

    def hybrid_forward(self, F, x, weight, bias):
        # output (2i + a, 2j + b) of channel o is sum_c x[c, i, j] * weight[c, o, a, b]: a 1x1
        # convolution with filter (a * 2 + b) * channels + o, which depth_to_space places there
        # the last operator a transpose: oneDNN refuses a reshaped view as the weight under
        # MXNet's naive engine ("Check failed: !is_view")
        kernel = F.transpose(F.transpose(weight, axes=(0, 2, 3, 1)).reshape((0, -1, 1, 1)),
                             axes=(1, 0, 2, 3))
        y = F.Convolution(x, kernel, F.tile(bias, reps=4), kernel=(1, 1),
                          num_filter=4 * self.channels)
        # depth_to_space as a reshape and a transpose: the same order, at half the cost of
        # MXNet's depth_to_space (forward and backward)
        y = y.reshape((0, -4, 2, -1, -2)).reshape((0, 0, -4, 2, -1, -2))  # N, 2, 2, C, H, W
        return y.transpose((0, 3, 4, 1, 5, 2)).reshape((0, 0, -3, -3))


def _mask_head(batch_images, classes, channels, convs):
    """GluonCV's FPN mask head (``convs`` 3x3 convolutions and ReLUs, a 2x upsampling, a 1x1
    classifier; structural names as GluonCV's, so its files load) with :class:`Upsample2x`."""
    from gluoncv.model_zoo.rcnn.mask_rcnn.mask_rcnn import Mask
    # built with one convolution, whose layers are then replaced (a block's attribute can only
    # be replaced by one of its type)
    head = Mask(batch_images, classes, channels, num_fcn_convs=1)
    init = mx.init.Xavier(rnd_type='gaussian', factor_type='out', magnitude=2)
    with head.name_scope():
        deconv = nn.HybridSequential()
        for _ in range(convs):
            deconv.add(nn.Conv2D(channels, 3, padding=1, weight_initializer=init),
                       nn.Activation('relu'))
        deconv.add(Upsample2x(channels, channels, weight_initializer=init))
        head.deconv = deconv
    return head


_CLASSES = []


def _detector_classes():
    """GluonCV's FasterRCNN and MaskRCNN with :func:`_pyramid_roi_features` (same class names,
    so parameter prefixes are GluonCV's)."""
    if not _CLASSES:
        from gluoncv.model_zoo.rcnn.faster_rcnn.faster_rcnn import FasterRCNN as GluonFaster
        from gluoncv.model_zoo.rcnn.mask_rcnn.mask_rcnn import MaskRCNN as GluonMask
        for base in (GluonFaster, GluonMask):
            _CLASSES.append(type(base.__name__, (base,), dict(
                _pyramid_roi_feats=_pyramid_roi_features, __module__=__name__)))
    return _CLASSES


def get_detection_model(name='faster_rcnn_fpn', backbone='resnest50', classes=COCO_CLASSES,
                        pretrained=False, root=None, ctx=None, norm_layer=nn.BatchNorm,
                        norm_kwargs=None, pretrained_base=False, use_global_stats=False,
                        **kwargs):
    """A detector on a zoo trunk.

    name : 'faster_rcnn_fpn', 'mask_rcnn_fpn', 'cascade_rcnn_fpn' (three box stages at IoU
        0.5/0.6/0.7, detection.cascade) or 'cascade_mask_rcnn_fpn' (and a mask head)
    backbone : a zoo name (``list_models()``); GluonCV publishes faster_rcnn_fpn COCO weights
        for resnest50, resnest101 and resnest269 (``list_models(task='detection')``); no MXNet
        Mask R-CNN weights exist for ResNeSt trunks.
    pretrained : False; True or a sha1 prefix (GluonCV's published COCO weights of
        ``backbone``, verified); or the path of a GluonCV-format ``.params`` file. Loaded
        strictly: every file entry is used and every parameter filled, except the predictors
        for another class count.
    norm_layer, norm_kwargs : the normalization of the trunk, FPN and box head.
    pretrained_base : the trunk's ImageNet weights (ignored with ``pretrained``): True or a sha1
        tag (published, verified), or a ``.params`` file or classification checkpoint folder.
    use_global_stats : the trunk's BatchNorms keep their statistics (``--norm frozen``).
    kwargs : override GLUONCV_FASTER_RCNN_FPN's settings (e.g. ``short``, ``max_size``,
        ``rpn_test_post_nms``), HEAD's (the pyramid's width, the box head; ``LIGHT_HEAD`` is a
        lighter set for small images) and, for Mask R-CNN, MASK_RCNN_FPN's.

    Calls return GluonCV's (class ids, scores, boxes), and Mask R-CNN also each detection's
    14 x 14 mask probabilities (``gluoncv.utils.viz.expand_mask`` pastes them into the image);
    uninitialized without ``pretrained``.
    """
    if name not in DETECTION_MODELS:
        raise ValueError('unknown detection model %r; available: %s'
                         % (name, ', '.join(DETECTION_MODELS)))
    get_model_info(backbone)  # unknown name: ValueError with close matches
    check_positive_int('classes', classes)
    allowed = dict(GLUONCV_FASTER_RCNN_FPN, **HEAD)
    allowed.update(MASK_RCNN_FPN if name in MASK_MODELS else {})
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError('unknown arguments %s; allowed: %s'
                         % (', '.join(unknown), ', '.join(sorted(allowed))))
    if pretrained and name != 'faster_rcnn_fpn':
        from ..zoo.store import PretrainedWeightsError
        raise PretrainedWeightsError(
            'no published MXNet weights for %s (GluonCV publishes Mask R-CNN for ResNet trunks '
            'only, and no Cascade R-CNN); published: %s'
            % (name, ', '.join(list_models(task='detection'))))
    ctx = ctx or mx.cpu()
    trunk = get_trunk(backbone, pretrained_base if not pretrained else False, root=root,
                      ctx=ctx, norm_layer=norm_layer, dropblock_prob=0.0,
                      norm_kwargs=dict(norm_kwargs or {}, **(
                          dict(use_global_stats=True) if use_global_stats else {})))
    settings = dict(allowed, **pyramid_settings(trunk.output_stride,
                                                kwargs.get('max_size', allowed['max_size'])))
    settings.update(kwargs)
    head = {key: settings.pop(key) for key in HEAD}
    features = DetectionFeatures(trunk, head['fpn_channels'], norm_layer, norm_kwargs)
    parts = dict(features=features, top_features=None,
                 classes=['class%d' % i for i in range(classes)],
                 train_patterns='(?!.*moving)', **settings)
    if name.startswith('cascade'):
        from .cascade import cascade_class
        mask = {key: parts.pop(key) for key in MASK_RCNN_FPN if key in parts}
        net = cascade_class(_detector_classes()[0])(
            box_head=lambda: _box_head(norm_layer, norm_kwargs, **head),
            mask_head=_mask_head(settings['per_device_batch_size'], parts['classes'],
                                 mask['mask_channels'], mask['num_fcn_convs'])
            if mask else None, rcnn_max_dets=mask.get('rcnn_max_dets', 100), **parts)
    elif name == 'mask_rcnn_fpn':
        net = _detector_classes()[1](norm_layer=norm_layer, norm_kwargs=norm_kwargs,
                                     box_features=_box_head(norm_layer, norm_kwargs, **head),
                                     **parts)
        with net.name_scope():
            net.mask = _mask_head(net._batch_size, parts['classes'],
                                  settings['mask_channels'], settings['num_fcn_convs'])
    else:
        net = _detector_classes()[0](box_features=_box_head(norm_layer, norm_kwargs, **head),
                                     **parts)
    if pretrained:
        load_gluoncv_weights(net, pretrained, backbone, root=root, ctx=ctx)
    return net


def allocate_parameters(net, size=256):
    """Give every parameter of ``net`` (initialized) its shape and memory now, by symbolic shape
    inference on a ``size`` px image: the layers GluonCV builds without their input channels
    (the RPN head, the predictors) and the heads would otherwise wait for the first forward
    pass, after the engine's broadcast and moving average have read the weights."""
    out = net(mx.sym.var('data'))
    graph = mx.sym.Group(list(out) if isinstance(out, (list, tuple)) else [out])
    args, _, aux = graph.infer_shape(data=(1, 3, size, size))
    shapes = dict(zip(graph.list_arguments(), args))
    shapes.update(zip(graph.list_auxiliary_states(), aux))
    for param in net.collect_params().values():
        if param._deferred_init:
            param.shape = shapes[param.name]
            param._finish_deferred_init()
    return net


def load_gluoncv_weights(net, pretrained, backbone, root=None, ctx=None):
    """Load GluonCV-format Faster R-CNN FPN weights into ``net`` by name (see
    :func:`get_detection_model`)."""
    from ..zoo.store import PretrainedWeightsError, get_model_file, load_weights_file
    ctx = ctx or mx.cpu()
    if isinstance(pretrained, str) and os.path.sep in pretrained or str(pretrained).endswith(
            '.params'):
        path, what = pretrained, 'faster_rcnn_fpn on %s' % backbone
    else:
        info = list_detection_weights().get('faster_rcnn_fpn_syncbn_%s_coco' % backbone)
        if info is None:
            raise PretrainedWeightsError(
                'no published faster_rcnn_fpn weights for backbone %s; published: %s'
                % (backbone, ', '.join(list_models(task='detection'))))
        path, what = get_model_file(info, tag=pretrained, root=root), info.name
    ours = gluoncv_file_names(net, backbone)
    return load_weights_file(net, path, what, ctx, classifier=PREDICTORS,
                             rename={theirs: mine for mine, theirs in ours.items()},
                             ignore=TARGET_GENERATOR_KEYS)
