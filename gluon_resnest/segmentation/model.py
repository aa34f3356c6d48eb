"""DeepLabV3 (Chen et al., 2017) on the zoo's dilated trunks, as in the ResNeSt paper's Sec. 7.3.

Parameter names are those of GluonCV's ``DeepLabV3`` (the trunk's stages sit directly on the
model, then ``head.aspp.concurent.*``, ``head.block.*``, ``auxlayer.block.*``), so GluonCV's
published ``deeplab_resnest*_ade`` files load strictly. Unlike GluonCV's, nothing depends on the
input size: the image-pooling branch is broadcast to the size of the feature map it pools and the
logits are resized like the input, so one (hybridized, exported) network serves every size.
"""
import difflib

import mxnet as mx
from mxnet.gluon import nn
from mxnet.gluon.block import HybridBlock

from ..argtypes import check_positive_int
from ..backbone.resnet import check_input
from ..zoo.registry import get_model_info, list_models
from ..zoo.trunks import get_trunk

__all__ = ['DeepLabV3', 'get_segmentation_model', 'list_segmentation_weights',
           'SEGMENTATION_HEADS', 'ASPP_RATES']

SEGMENTATION_HEADS = ('deeplabv3',)
# ASPP atrous rates for the trunk's output stride (DeepLabV3, Sec. 3.3)
ASPP_RATES = {8: (12, 24, 36), 16: (6, 12, 18)}
# the trunk's children that GluonCV's segmentation models hold directly
TRUNK_PARTS = ('conv1', 'bn1', 'maxpool', 'layer1', 'layer2', 'layer3', 'layer4')


def gluoncv_part(module, name):
    """``gluoncv.<module>.<name>``, or ImportError saying how to install GluonCV."""
    import importlib
    try:
        return getattr(importlib.import_module('gluoncv.' + module), name)
    except ImportError:
        raise ImportError('the segmentation part needs GluonCV: pip install '
                          '"gluon-resnest[segmentation]" (gluoncv==0.10.5.post0)') from None


# the final 1x1 convolutions: re-initialized when the weights are loaded for another class count
CLASSIFIERS = ('head.block.4.weight', 'head.block.4.bias',
               'auxlayer.block.4.weight', 'auxlayer.block.4.bias')


def list_segmentation_weights():
    """{name: ModelInfo} of the published segmentation weights."""
    return {name: get_model_info(name, task='segmentation')
            for name in list_models(task='segmentation')}


def _norm(norm_layer, norm_kwargs):
    return lambda channels: norm_layer(in_channels=channels, **(norm_kwargs or {}))


def _conv_bn_relu(in_channels, channels, kernel, dilation, norm):
    block = nn.HybridSequential()
    with block.name_scope():
        block.add(nn.Conv2D(channels, kernel, padding=dilation * (kernel // 2), dilation=dilation,
                            use_bias=False, in_channels=in_channels),
                  norm(channels), nn.Activation('relu'))
    return block


class ImagePooling(HybridBlock):
    """ASPP's image-level branch: global average pool, 1x1 conv, BN, ReLU, spread over the
    feature map. A 1x1 map resized bilinearly is a constant, so broadcasting it *like* the
    input is the same result at any size (GluonCV resizes to a size fixed at construction)."""

    def __init__(self, in_channels, channels, norm, **kwargs):
        super(ImagePooling, self).__init__(**kwargs)
        with self.name_scope():
            self.gap = nn.HybridSequential()
            with self.gap.name_scope():
                self.gap.add(nn.GlobalAvgPool2D(),
                             nn.Conv2D(channels, 1, use_bias=False, in_channels=in_channels),
                             norm(channels), nn.Activation('relu'))

    def hybrid_forward(self, F, x):
        return F.broadcast_like(self.gap(x), x, lhs_axes=(2, 3), rhs_axes=(2, 3))


class ASPP(HybridBlock):
    """Atrous spatial pyramid pooling: 1x1, three dilated 3x3 and the image-pooling branch,
    concatenated and projected to ``channels`` (dropout 0.5)."""

    def __init__(self, in_channels, rates, channels, norm, **kwargs):
        super(ASPP, self).__init__(**kwargs)
        with self.name_scope():
            self.concurent = mx.gluon.contrib.nn.HybridConcurrent(axis=1)  # GluonCV's spelling
            with self.concurent.name_scope():
                self.concurent.add(_conv_bn_relu(in_channels, channels, 1, 1, norm))
                for rate in rates:
                    self.concurent.add(_conv_bn_relu(in_channels, channels, 3, rate, norm))
                self.concurent.add(ImagePooling(in_channels, channels, norm))
            self.project = nn.HybridSequential()
            with self.project.name_scope():
                self.project.add(nn.Conv2D(channels, 1, use_bias=False,
                                           in_channels=channels * (len(rates) + 2)),
                                 norm(channels), nn.Activation('relu'), nn.Dropout(0.5))

    def hybrid_forward(self, F, x):
        # the branches of ``concurent`` concatenated as HybridConcurrent would, but in one dtype
        branches = [branch(x) for branch in self.concurent._children.values()]
        return self.project(F.concat(*_same_dtype(F, branches), dim=1))


def _same_dtype(F, tensors):
    """``tensors`` cast to the widest of their dtypes under MXNet's AMP, unchanged otherwise.

    AMP counts concatenation as dtype-neutral, so it casts none of its inputs, yet the image
    pooling branch comes out of ``broadcast_like`` in float32 while the convolution branches
    are in bfloat16 (type inference then fails). AMP's own widest-type cast aligns them; without
    AMP the graph (and an export of it) has no cast."""
    from mxnet.contrib.amp import amp
    if not amp._amp_initialized:
        return tensors
    return list(F.amp_multicast(*tensors, num_outputs=len(tensors)))


class DeepLabHead(HybridBlock):
    """ASPP, then 3x3 conv + BN + ReLU + dropout 0.1 and a 1x1 classifier."""

    def __init__(self, in_channels, classes, rates, channels, norm, **kwargs):
        super(DeepLabHead, self).__init__(**kwargs)
        with self.name_scope():
            self.aspp = ASPP(in_channels, rates, channels, norm)
            self.block = nn.HybridSequential()
            with self.block.name_scope():
                self.block.add(nn.Conv2D(channels, 3, padding=1, use_bias=False,
                                         in_channels=channels),
                               norm(channels), nn.Activation('relu'), nn.Dropout(0.1),
                               nn.Conv2D(classes, 1, in_channels=channels))

    def hybrid_forward(self, F, x):
        return self.block(self.aspp(x))


class DeepLabV3(HybridBlock):
    """DeepLabV3 on a ``features_only`` zoo trunk; returns ``(logits,)`` or, with ``aux``,
    ``(logits, aux_logits)``, both ``(N, classes, H, W)`` at the input's size (GluonCV's
    convention). The auxiliary FCN head on C4 is GluonCV's ``_FCNHead``."""

    def __init__(self, trunk, classes, aux=True, rates=ASPP_RATES[8], head_channels=256,
                 norm_layer=nn.BatchNorm, norm_kwargs=None, **kwargs):
        super(DeepLabV3, self).__init__(**kwargs)
        if not trunk.features_only:
            raise ValueError('DeepLabV3 needs a trunk built with features_only=True')
        _FCNHead = gluoncv_part('model_zoo.fcn', '_FCNHead')
        rates = check_positive_int('ASPP rates', tuple(rates), 3)
        self.classes, self.aux = classes, aux
        # None: logits resized like the input (any size); (h, w): to that size, for exporters
        # that only know BilinearResize2D's fixed-size form (MXNet's ONNX exporter)
        self.fixed_output_size = None
        c4_channels, c5_channels = trunk.stage_channels[2:]
        # the trunk is called, not registered: a ResNeSt/ResNet-D trunk's stages are registered
        # below under GluonCV's names (conv1, layer1, ...), so parameter names match GluonCV's
        # files; another family's trunk is registered whole, as ``backbone``
        object.__setattr__(self, '_trunk', trunk)
        norm = _norm(norm_layer, norm_kwargs)
        with self.name_scope():
            if all(hasattr(trunk, name) for name in TRUNK_PARTS):
                for name in TRUNK_PARTS:
                    setattr(self, name, getattr(trunk, name))
            else:
                self.backbone = trunk
            self.head = DeepLabHead(c5_channels, classes, rates, head_channels, norm)
            if aux:
                self.auxlayer = _FCNHead(c4_channels, classes, norm_layer=norm_layer,
                                         norm_kwargs=norm_kwargs)

    @property
    def trunk(self):
        return self._trunk

    def head_params(self):
        """The parameters of the heads (trained with a larger learning rate)."""
        params = self.head.collect_params()
        if self.aux:
            params.update(self.auxlayer.collect_params())
        return params

    def forward(self, x, *args):
        check_input(self._trunk, x)
        return super(DeepLabV3, self).forward(x, *args)

    def _upsample(self, F, logits, x):
        if self.fixed_output_size:
            height, width = self.fixed_output_size
            return F.contrib.BilinearResize2D(logits, height=height, width=width)
        return F.contrib.BilinearResize2D(logits, x, mode='like')

    def hybrid_forward(self, F, x):
        _, _, c4, c5 = self._trunk(x)
        outputs = [self._upsample(F, self.head(c5), x)]
        if self.aux:
            outputs.append(self._upsample(F, self.auxlayer(c4), x))
        return tuple(outputs)

    def predict(self, x):
        """The main logits only."""
        return self(x)[0]


def _backbone_error(backbone):
    close = difflib.get_close_matches(str(backbone), list_models(), n=3, cutoff=0.5)
    return ValueError('unknown backbone %r%s; any zoo model works: %s'
                      % (backbone, ' (did you mean %s?)' % ', '.join(close) if close else '',
                         ', '.join(list_models())))


def get_segmentation_model(model='deeplabv3', backbone='resnest50', classes=150, aux=True,
                           output_stride=8, pretrained=False, pretrained_base=False, root=None,
                           ctx=None, norm_layer=nn.BatchNorm, norm_kwargs=None, rates=None,
                           head_channels=256, **backbone_kwargs):
    """Build a segmentation model on any zoo backbone.

    Parameters
    ----------
    model : 'deeplabv3'
    backbone : str
        A zoo model name (``list_models()``), e.g. ``resnest50``, ``resnetd50``,
        ``resnest14_small``.
    classes : int
        Output classes (150 for ADE20K, 21 for Pascal VOC, 19 for Cityscapes).
    aux : bool
        Auxiliary FCN head on C4 (training only needs it).
    output_stride : 8 or 16
        The trunk's dilation mode; ASPP rates default to 12/24/36 at 8 and 6/12/18 at 16.
    pretrained : bool or str
        GluonCV's published ADE20K weights (``deeplab_<backbone>_ade``), verified by sha1. With
        ``classes != 150`` every layer but the two final classifiers is loaded.
    pretrained_base : bool, str or path
        The trunk's weights (ignored with ``pretrained``): True or a hash tag for the published
        ImageNet weights; or a ``.params`` file or classification checkpoint folder of the same
        backbone (e.g. one the trainer wrote), its classifier left out.
    norm_layer, norm_kwargs
        Normalization everywhere (``SyncBatchNorm`` for synchronized BN across devices).
    rates, head_channels
        ASPP rates and width (default by output stride, 256); small images want small rates.
    **backbone_kwargs
        Trunk overrides (e.g. ``use_global_stats=True`` to freeze the trunk's BN statistics,
        ``dropblock_prob``: DropBlock is off by default, as the paper uses it for ImageNet only).

    Uninitialized without ``pretrained``/``pretrained_base``, as in GluonCV: call
    ``net.initialize()``; with ``pretrained_base`` only the heads are left to initialize.
    """
    if model not in SEGMENTATION_HEADS:
        raise ValueError('unknown segmentation model %r; available: %s'
                         % (model, ', '.join(SEGMENTATION_HEADS)))
    try:
        get_model_info(backbone)
    except ValueError:
        raise _backbone_error(backbone) from None
    if output_stride not in ASPP_RATES:
        raise ValueError('output_stride must be 8 or 16 for segmentation, got %r'
                         % (output_stride,))
    check_positive_int('classes', classes)
    ctx = ctx or mx.cpu()
    published = None
    if pretrained:
        published = list_segmentation_weights().get('deeplab_%s_ade' % backbone)
        if published is None:
            raise ValueError('no published %s weights for backbone %s; published: %s'
                             % (model, backbone, ', '.join(list_models(task='segmentation'))))
    trunk = get_trunk(backbone, pretrained_base if not pretrained else False, root=root,
                      ctx=ctx, output_stride=output_stride, norm_layer=norm_layer,
                      norm_kwargs=norm_kwargs, **backbone_kwargs)
    net = DeepLabV3(trunk, classes, aux=aux, rates=rates or ASPP_RATES[output_stride],
                    head_channels=head_channels, norm_layer=norm_layer, norm_kwargs=norm_kwargs)
    net.info = published or get_model_info(backbone)
    if published is not None:
        from ..zoo.store import load_pretrained
        load_pretrained(net, published, tag=pretrained, root=root, ctx=ctx,
                        classifier=CLASSIFIERS, skip=() if aux else ('auxlayer.',))
    elif pretrained_base:
        # the trunk is loaded; the heads start from He-initialized weights
        net.head.initialize(mx.init.MSRAPrelu(), ctx=ctx)
        if aux:
            net.auxlayer.initialize(mx.init.MSRAPrelu(), ctx=ctx)
    return net
