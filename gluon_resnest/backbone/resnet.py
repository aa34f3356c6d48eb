"""ResNet-D trunk (He et al., "Bag of Tricks", 2019) with ResNeSt's tweaks.

One trunk and one bottleneck serve every model: ``radix >= 1`` makes the bottleneck's 3x3 a
Split-Attention conv, ``radix == 0`` leaves the plain ResNet-D 3x3 conv. Child names follow
GluonCV's ResNeSt so its ``.params`` files load with ``load_parameters``.
"""
from mxnet.gluon import nn
from mxnet.gluon.block import HybridBlock

from ..argtypes import check_positive_int
from ..layers.dropblock import DropBlock, Dropout
from ..layers.splat import SplitAttentionConv, global_avg_pool

__all__ = ['ResNeSt', 'Bottleneck', 'OUTPUT_STRIDES', 'trunk_stride']

# output stride -> (stride, dilation) of stages 3 and 4
OUTPUT_STRIDES = {32: ((2, 1), (2, 1)), 16: ((2, 1), (1, 2)), 8: ((1, 2), (1, 4))}
EXPANSION = 4


class _Identity(HybridBlock):
    # keeps the downsample branch's child indices (pool, conv, bn) those of the published weights
    def hybrid_forward(self, F, x):
        return x

    def traces_to_identity(self):
        return True


class Bottleneck(HybridBlock):
    """1x1 reduce -> 3x3 (Split-Attention when radix >= 1) -> 1x1 expand, with a shortcut.

    ``avd`` puts a 3x3 average pool (stride ``strides``) before (``avd_first``) or after the 3x3
    conv instead of striding the conv itself; it is used on the first block of a stage that
    changes resolution or dilation.
    """

    def __init__(self, planes, in_channels, strides=1, dilation=1, downsample=None,
                 radix=2, cardinality=1, bottleneck_width=64, avd=False, avd_first=False,
                 last_gamma=False, dropblock_prob=None, norm_layer=nn.BatchNorm, norm_kwargs=None,
                 **kwargs):
        super(Bottleneck, self).__init__(**kwargs)
        norm_kwargs = norm_kwargs or {}
        width = int(planes * (bottleneck_width / 64.)) * cardinality
        self.avd_first = avd_first
        conv2_strides = 1 if avd else strides
        with self.name_scope():
            self.conv1 = nn.Conv2D(width, 1, use_bias=False, in_channels=in_channels)
            self.bn1 = norm_layer(in_channels=width, **norm_kwargs)
            if radix >= 1:
                self.conv2 = SplitAttentionConv(
                    width, 3, conv2_strides, dilation, dilation, cardinality=cardinality,
                    radix=radix, in_channels=width, norm_layer=norm_layer, norm_kwargs=norm_kwargs)
                self.bn2 = None
            else:
                self.conv2 = nn.Conv2D(width, 3, conv2_strides, dilation, dilation,
                                       groups=cardinality, use_bias=False, in_channels=width)
                self.bn2 = norm_layer(in_channels=width, **norm_kwargs)
            self.conv3 = nn.Conv2D(planes * EXPANSION, 1, use_bias=False, in_channels=width)
            self.bn3 = norm_layer(in_channels=planes * EXPANSION,
                                  gamma_initializer='zeros' if last_gamma else 'ones',
                                  **norm_kwargs)
            self.avd_layer = nn.AvgPool2D(3, strides, padding=1) if avd else None
            self.downsample = downsample
            # DropBlock after bn1, after the 3x3 (+bn) and after bn3; None: no DropBlock layers
            # (stages 1-2), 0.0: layers present but off until set_drop_prob() ramps them up
            def make(channels):
                return _Identity() if dropblock_prob is None else DropBlock(
                    dropblock_prob, channels=channels)
            self.dropblock1, self.dropblock2 = make(width), make(width)
            self.dropblock3 = make(planes * EXPANSION)

    def hybrid_forward(self, F, x):
        out = F.Activation(act_type='relu', data=self.dropblock1(self.bn1(self.conv1(x))))
        if self.avd_layer is not None and self.avd_first:
            out = self.avd_layer(out)
        pool_after = self.avd_layer if self.avd_layer is not None and not self.avd_first \
            else None
        if self.bn2 is not None:
            out = F.Activation(act_type='relu', data=self.dropblock2(self.bn2(self.conv2(out))))
        elif pool_after is not None and self.dropblock2.traces_to_identity():
            # nothing between the attention and the avd pool in this graph (a hybridized graph
            # is traced once and serves training and inference alike, so the test is the
            # layer's, not the autograd mode's): the pool moves inside the attention, before
            # the weighted sum of the splits (same values, less work)
            out, pool_after = self.conv2.attend(F, out, pool_after), None
        else:
            out = self.dropblock2(self.conv2(out))
        if pool_after is not None:
            out = pool_after(out)
        out = self.dropblock3(self.bn3(self.conv3(out)))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.Activation(act_type='relu', data=out + shortcut)


class ResNeSt(HybridBlock):
    """ResNet-D trunk with Split-Attention bottlenecks.

    Parameters
    ----------
    layers : sequence of 4 ints
        Bottlenecks per stage.
    radix, cardinality, bottleneck_width : int
        Split-Attention layout; ``radix=0`` gives a plain ResNet-D.
    classes : int
        Classifier outputs.
    stem_width : int
        Width of the first two 3x3 stem convs (the third has twice this).
    deep_stem : bool
        Three 3x3 convs instead of one 7x7.
    avg_down : bool
        Average pool (ceil mode, padding not counted) then 1x1 conv in the downsampling shortcut.
    avd, avd_first : bool
        See :class:`Bottleneck`.
    output_stride : 32, 16 or 8
        16 and 8 replace the strides of stage 4 (and 3) by dilation, for dense prediction.
    last_gamma : bool
        Zero-initialise the last BN gamma of every bottleneck.
    dropblock_prob : float
        DropBlock probability on stages 3 and 4 (see ``layers.dropblock.set_drop_prob``).
    final_drop : float
        Dropout before the classifier.
    features_only : bool
        Return the stage outputs (C2, C3, C4, C5) instead of logits; no classifier is built.
    norm_layer, norm_kwargs
        Normalization layer (``nn.BatchNorm`` or ``SyncBatchNorm``) and its arguments.
    use_global_stats : bool
        Freeze BN statistics (fine-tuning detection or segmentation heads).
    in_channels : int
        Image channels.
    planes : 4 ints
        Bottleneck widths of the stages (outputs are 4x these).
    stem_stride : 1 or 2
        Stride of the stem's first conv; 1 (with ``stem_pool=False``) suits 28-64 px images.
    stem_pool : bool
        The stem's 3x3 stride-2 max pool.
    """

    def __init__(self, layers, radix=2, cardinality=1, bottleneck_width=64, classes=1000,
                 stem_width=32, deep_stem=True, avg_down=True, avd=True, avd_first=False,
                 output_stride=32, last_gamma=False, dropblock_prob=0.0, final_drop=0.0,
                 features_only=False, norm_layer=nn.BatchNorm, norm_kwargs=None,
                 use_global_stats=False, in_channels=3, planes=(64, 128, 256, 512),
                 stem_stride=2, stem_pool=True, **kwargs):
        super(ResNeSt, self).__init__(**kwargs)
        check_positive_int('layers', layers, 4)
        if isinstance(radix, bool) or not isinstance(radix, int) or radix < 0:
            raise ValueError('radix must be an integer >= 0 (0: plain ResNet-D conv), got %r'
                             % (radix,))
        if isinstance(cardinality, bool) or not isinstance(cardinality, int) or cardinality < 1:
            raise ValueError('cardinality must be an integer >= 1, got %r' % (cardinality,))
        if output_stride not in OUTPUT_STRIDES:
            raise ValueError('output_stride must be one of %s, got %r'
                             % (sorted(OUTPUT_STRIDES), output_stride))
        check_positive_int('planes', planes, 4)
        check_positive_int('classes', classes)
        norm_kwargs = dict(norm_kwargs or {})
        if use_global_stats:
            norm_kwargs['use_global_stats'] = True
        self.in_channels = in_channels
        if stem_stride not in (1, 2):
            raise ValueError('stem_stride must be 1 or 2, got %r' % (stem_stride,))
        # how much the trunk downsamples: the smallest input it accepts
        self.output_stride = trunk_stride(output_stride, stem_stride, stem_pool)
        self.features_only = features_only
        block_args = dict(radix=radix, cardinality=cardinality, bottleneck_width=bottleneck_width,
                          avd=avd, avd_first=avd_first, last_gamma=last_gamma,
                          norm_layer=norm_layer, norm_kwargs=norm_kwargs)
        (s3, d3), (s4, d4) = OUTPUT_STRIDES[output_stride]
        stem_out = stem_width * 2 if deep_stem else 64
        # channels of C2..C5, for the heads of dense prediction
        self.stage_channels = tuple(p * EXPANSION for p in planes)
        with self.name_scope():
            self.conv1 = self._make_stem(deep_stem, stem_width, in_channels, norm_layer,
                                         norm_kwargs, stem_stride)
            self.bn1 = norm_layer(in_channels=stem_out, **norm_kwargs)
            self.maxpool = nn.MaxPool2D(3, 2, padding=1) if stem_pool else _Identity()
            stages, channels = [], stem_out
            for index, (planes, n, strides, dilation, drop) in enumerate((
                    (planes[0], layers[0], 1, 1, None), (planes[1], layers[1], 2, 1, None),
                    (planes[2], layers[2], s3, d3, dropblock_prob),
                    (planes[3], layers[3], s4, d4, dropblock_prob)), 1):
                stages.append(self._make_stage(index, planes, n, channels, strides, dilation,
                                               avg_down, dict(block_args, dropblock_prob=drop)))
                channels = planes * EXPANSION
            self.layer1, self.layer2, self.layer3, self.layer4 = stages
            self.num_features = channels
            if not features_only:
                self.drop = Dropout(final_drop) if final_drop > 0 else None
                self.fc = nn.Dense(classes, in_units=channels)

    @staticmethod
    def _make_stem(deep_stem, stem_width, in_channels, norm_layer, norm_kwargs, strides):
        if not deep_stem:
            return nn.Conv2D(64, 7, strides, 3, use_bias=False, in_channels=in_channels)
        stem = nn.HybridSequential(prefix='conv1')
        with stem.name_scope():
            stem.add(nn.Conv2D(stem_width, 3, strides, 1, use_bias=False,
                               in_channels=in_channels),
                     norm_layer(in_channels=stem_width, **norm_kwargs), nn.Activation('relu'),
                     nn.Conv2D(stem_width, 3, 1, 1, use_bias=False, in_channels=stem_width),
                     norm_layer(in_channels=stem_width, **norm_kwargs), nn.Activation('relu'),
                     nn.Conv2D(stem_width * 2, 3, 1, 1, use_bias=False, in_channels=stem_width))
        return stem

    @staticmethod
    def _make_shortcut(index, in_channels, channels, strides, avg_down, norm_layer, norm_kwargs):
        shortcut = nn.HybridSequential(prefix='down%d_' % index)
        with shortcut.name_scope():
            if avg_down:
                # at stride 1 (dilated stages) the pool is an identity, kept as a placeholder
                shortcut.add(nn.AvgPool2D(strides, strides, ceil_mode=True,
                                          count_include_pad=False) if strides > 1
                             else _Identity())
                strides = 1
            shortcut.add(nn.Conv2D(channels, 1, strides, use_bias=False,
                                   in_channels=in_channels),
                         norm_layer(in_channels=channels, **norm_kwargs))
        return shortcut

    def _make_stage(self, index, planes, blocks, in_channels, strides, dilation, avg_down,
                    block_args):
        out_channels = planes * EXPANSION
        downsample = None
        if strides != 1 or in_channels != out_channels:
            downsample = self._make_shortcut(index, in_channels, out_channels, strides, avg_down,
                                             block_args['norm_layer'],
                                             block_args['norm_kwargs'])
        # The first block of a dilated stage runs at half the stage's dilation (1 for dilation 2),
        # and gets the avd pool whenever it changes resolution or dilation, as GluonCV's does.
        first_dilation = 1 if dilation <= 2 else dilation // 2
        avd = block_args.pop('avd')
        stage = nn.HybridSequential(prefix='layers%d_' % index)
        with stage.name_scope():
            stage.add(Bottleneck(planes, in_channels, strides, first_dilation, downsample,
                                 avd=avd and (strides > 1 or first_dilation != dilation),
                                 **block_args))
            for _ in range(1, blocks):
                stage.add(Bottleneck(planes, out_channels, 1, dilation, avd=False, **block_args))
        return stage

    def forward(self, x, *args):
        check_input(self, x)
        return super(ResNeSt, self).forward(x, *args)

    def hybrid_forward(self, F, x):
        x = self.maxpool(F.Activation(act_type='relu', data=self.bn1(self.conv1(x))))
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        if self.features_only:
            return c2, c3, c4, c5
        x = F.flatten(global_avg_pool(F, c5))
        if self.drop is not None:
            x = self.drop(x)
        return self.fc(x)


def trunk_stride(output_stride, stem_stride=2, stem_pool=True):
    """How much a trunk downsamples (its smallest input): ``output_stride`` assumes a stride-2
    stem with its max pool; a stride-1 stem or no pool each halve it."""
    return output_stride // (2 // stem_stride) // (1 if stem_pool else 2)


def check_input(net, x):
    """Raise a ValueError naming what is wrong with an image batch for ``net``."""
    shape = getattr(x, 'shape', None)
    if shape is None:  # a Symbol: shapes are checked when the graph is bound
        return
    if len(shape) != 4:
        raise ValueError('expected a 4-D batch (N, C, H, W), got shape %s' % (shape,))
    if shape[1] != net.in_channels:
        raise ValueError('expected %d input channels (N, %d, H, W), got shape %s'
                         % (net.in_channels, net.in_channels, shape))
    if min(shape[2:]) < net.output_stride:
        raise ValueError('input %dx%d is too small: height and width must be at least %d (the '
                         'trunk downsamples by %d)' % (shape[2], shape[3], net.output_stride,
                                                       net.output_stride))
