"""Faster and Mask R-CNN with a feature pyramid on any zoo trunk: our trunk and FPN, GluonCV's
R-CNN machinery (RPN, anchors, RoIAlign, samplers, target generators, box and mask heads), and
GluonCV's published COCO files loaded strictly by name."""
import os
import re

import mxnet as mx
from mxnet.gluon import nn

from ..argtypes import check_positive_int
from ..backbone.resnet import trunk_stride
from ..zoo.registry import get_model_info, list_models
from ..zoo.trunks import get_trunk
from . import cascade  # noqa: F401  (registers the Cascade R-CNNs)
from .fpn import DetectionFeatures
from .heads import box_head
from .rcnn import DETECTORS

__all__ = ['get_detection_model', 'DETECTION_MODELS', 'MASK_MODELS', 'COCO_CLASSES',
           'GLUONCV_FASTER_RCNN_FPN', 'MASK_RCNN_FPN', 'HEAD', 'LIGHT_HEAD', 'HEADS',
           'list_detection_weights', 'gluoncv_trunk_names', 'allocate_parameters',
           'initialize_for_training',
           'load_gluoncv_weights', 'load_checkpoint_weights', 'min_image_side',
           'check_short_side']

# the registered detectors (rcnn.py, cascade.py), and those predicting instance masks
DETECTION_MODELS = tuple(DETECTORS)
MASK_MODELS = tuple(name for name, spec in DETECTORS.items() if spec.masks)
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
HEADS = {'gluoncv': {}, 'light': LIGHT_HEAD}
COCO_CLASSES = 80
# the predictors: left out (and initialized afresh) when weights load for another class count
PREDICTORS = ('class_predictor.weight', 'class_predictor.bias', 'box_predictor.weight',
              'box_predictor.bias')
# what touching GluonCV's net.target_generator adds to its saved files
TARGET_GENERATOR_KEYS = ('_target_generator._box_encoder.means',
                         '_target_generator._box_encoder.stds')


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


def get_detection_model(name='faster_rcnn_fpn', backbone='resnest50', classes=COCO_CLASSES,
                        pretrained=False, root=None, ctx=None, head='gluoncv',
                        norm_layer=nn.BatchNorm, norm_kwargs=None, pretrained_base=False,
                        use_global_stats=False, **kwargs):
    """A detector on a zoo trunk.

    name : a registered detector (``DETECTION_MODELS``): 'faster_rcnn_fpn', 'mask_rcnn_fpn',
        'cascade_rcnn_fpn' (three box stages at IoU 0.5/0.6/0.7, detection.cascade) or
        'cascade_mask_rcnn_fpn' (and a mask head)
    backbone : a zoo name (``list_models()``); GluonCV publishes faster_rcnn_fpn COCO weights
        for resnest50, resnest101 and resnest269 (``list_models(task='detection')``); no MXNet
        Mask R-CNN weights exist for ResNeSt trunks.
    pretrained : False; True or a sha1 prefix (GluonCV's published COCO weights of
        ``backbone``, verified); or the path of a GluonCV-format ``.params`` file. Loaded
        strictly: every file entry is used and every parameter filled, except the predictors
        for another class count.
    head : 'gluoncv' (GluonCV's heads, which its weights fit: a 256-channel pyramid, the
        4conv1fc box head) or 'light' (LIGHT_HEAD: 64 channels and a 2fc box head, for small
        images)
    norm_layer, norm_kwargs : the normalization of the trunk, FPN and box head.
    pretrained_base : the trunk's ImageNet weights (ignored with ``pretrained``): True or a sha1
        tag (published, verified), or a ``.params`` file or classification checkpoint folder.
    use_global_stats : the trunk's BatchNorms keep their statistics (``--norm frozen``).
    kwargs : override GLUONCV_FASTER_RCNN_FPN's settings (e.g. ``short``, ``max_size``: the
        largest image side the anchors cover, ``rpn_test_post_nms``), the head's and, for the
        mask models, MASK_RCNN_FPN's.

    ``net(images)`` returns GluonCV's (class ids, scores, boxes) for each image of the batch,
    and the mask models each detection's 14 x 14 mask probabilities
    (``gluoncv.utils.viz.expand_mask`` pastes them into the image); under
    ``autograd.record()``, ``net(images, DetectionTargets(...))`` returns the named losses.
    Uninitialized without ``pretrained``.
    """
    spec = DETECTORS.get(name)
    if spec is None:
        raise ValueError('unknown detection model %r; available: %s'
                         % (name, ', '.join(DETECTION_MODELS)))
    if head not in HEADS:
        raise ValueError('unknown head %r; available: %s' % (head, ', '.join(HEADS)))
    get_model_info(backbone)  # unknown name: ValueError with close matches
    check_positive_int('classes', classes)
    allowed = dict(GLUONCV_FASTER_RCNN_FPN, **HEAD)
    allowed.update(MASK_RCNN_FPN if spec.masks else {})
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError('unknown arguments %s; allowed: %s'
                         % (', '.join(unknown), ', '.join(sorted(allowed))))
    if pretrained:
        from ..zoo.store import PretrainedWeightsError
        published = sorted({info.extra['detector'] for info in
                            list_detection_weights().values()})
        if name not in published:
            raise PretrainedWeightsError(
                'no published MXNet weights for %s (GluonCV publishes Mask R-CNN for ResNet '
                'trunks only, and no Cascade R-CNN); published: %s'
                % (name, ', '.join(list_models(task='detection'))))
        if head != 'gluoncv':
            raise ValueError("GluonCV's weights fit head='gluoncv', not head=%r" % head)
    ctx = ctx or mx.cpu()
    trunk = get_trunk(backbone, pretrained_base if not pretrained else False, root=root,
                      ctx=ctx, norm_layer=norm_layer, dropblock_prob=0.0,
                      norm_kwargs=dict(norm_kwargs or {}, **(
                          dict(use_global_stats=True) if use_global_stats else {})))
    settings = dict(allowed, **{k: v for k, v in HEADS[head].items() if k in allowed})
    settings.update(pyramid_settings(trunk.output_stride,
                                     kwargs.get('max_size', allowed['max_size'])))
    settings.update(kwargs)
    head_settings = {key: settings.pop(key) for key in HEAD}
    features = DetectionFeatures(trunk, head_settings['fpn_channels'], norm_layer, norm_kwargs)
    net = spec.build(lambda: box_head(norm_layer, norm_kwargs, **head_settings), norm_layer,
                     norm_kwargs, features=features, top_features=None,
                     classes=['class%d' % i for i in range(classes)],
                     train_patterns='(?!.*moving)', **settings)
    if pretrained:
        load_gluoncv_weights(net, pretrained, backbone, root=root, ctx=ctx)
    return net


def min_image_side(backbone):
    """The smallest image side (px) a detector on ``backbone`` takes: one cell of its
    coarsest pyramid level, P6, at twice C5's stride (64 px for ImageNet trunks)."""
    arch = get_model_info(backbone).arch
    return 2 * trunk_stride(32, arch.get('stem_stride', 2), arch.get('stem_pool', True))


def check_short_side(short, max_size, backbone, flag='--short'):
    """ValueError unless images resized to a short side of ``short`` px (long side at most
    ``max_size``) suit a detector on ``backbone``: at least :func:`min_image_side`."""
    smallest = min_image_side(backbone)
    if short < smallest:
        raise ValueError('%s %d is too small for the FPN of %s: its coarsest level (P6) has a '
                         'stride of %d px, so images need at least %d px a side'
                         % (flag, short, backbone, smallest, smallest))
    if max_size < short:
        raise ValueError('--max-size %d is below the short side %d' % (max_size, short))


def load_checkpoint_weights(net, path, ctx):
    """Load a detection checkpoint's ``model.params`` into ``net`` strictly; the anchors, which
    the network computes from its settings, may cover larger images than the file's (a
    detector built for a larger ``max_size``), and must agree with the file's where both
    have them."""
    from ..zoo.store import PretrainedWeightsError, load_weights_file, read_params_file
    saved = read_params_file(path)
    own = net._collect_params_with_prefix()
    anchors = [key for key in own if re.search(r'anchor_generator\.\d+\.anchors$', key)
               and key in saved]
    for key in anchors:
        mine, theirs = own[key].data().asnumpy(), saved[key].asnumpy()
        region = tuple(slice(0, n) for n in theirs.shape)
        if mine.ndim != theirs.ndim or any(a < b for a, b in zip(mine.shape, theirs.shape)) \
                or not (mine[region] == theirs).all():
            raise ValueError('%s was trained with other anchors than its settings give (%s)'
                             % (path, key))
    try:
        return load_weights_file(net, path, 'the detector', ctx, classifier=(), ignore=anchors)
    except PretrainedWeightsError as err:  # a checkpoint, not published weights
        raise ValueError(str(err)) from None


def initialize_for_training(net, ctx=None):
    """``net`` ready to train: what its first training call would add built
    (``prepare_training``), every parameter no file filled initialized (layers with their own
    initializer, GluonCV's predictors and the FPN, keep it; the rest MSRA's) and allocated."""
    net.prepare_training()
    for param in net.collect_params().values():
        if param._data is None:
            param.initialize(default_init=mx.init.MSRAPrelu(), ctx=ctx or mx.cpu())
    return allocate_parameters(net)


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
