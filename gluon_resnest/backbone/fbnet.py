"""FBNetV2 (Wan et al. 2020) as facebookresearch/mobile-vision defines it, and SA-FBNetV2: its SE
modules replaced by Split-Attention (the newer ResNeSt paper's Table 2).

A model is a table of stages, each a list of blocks ``(op, channels, stride, repeats,
expansion)`` in mobile-vision's notation: ``conv_k3_hs`` (3x3 conv with bias + BN + h-swish),
``ir_k{3,5}[_sehsig][_hs]`` (inverted residual: 1x1 expansion to ``in x expansion`` channels
rounded to a multiple of 8 when it changes the width, kxk depthwise, optional SE with an h-sigmoid
gate and a bottleneck of a quarter of the expanded width rounded to 8, 1x1 projection; BN after
every conv, ReLU or h-swish after the first two, including inside the SE; the last BN's gamma
starts at zero where a residual adds the input), ``skip`` (identity, or 1x1 conv + BN + ReLU
where the width changes) and ``ir_pool_hs`` (1x1 expansion + BN + h-swish, global pool, 1x1 conv
without bias + h-swish). The classifier is a 1x1 conv with bias on the pooled features.
"""
import math

from mxnet.gluon import nn
from mxnet.gluon.block import HybridBlock

from ..argtypes import check_positive_int
from ..layers.dropblock import Dropout
from ..layers.conv import ConvBNAct
from ..layers.se import SqueezeExcite
from ..layers.splat import SplitAttention, global_avg_pool
from .resnet import check_input

__all__ = ['FBNet', 'IRFBlock', 'divisible_by', 'parse_op']

WIDTH_DIVISOR = 8


def divisible_by(num, divisor=WIDTH_DIVISOR):
    """mobile-vision's channel rounding: to the nearest multiple of ``divisor`` (halves away
    from zero), one more multiple if that loses over 5%, at least ``divisor``."""
    value = int(num)
    if num % divisor:
        value = int((math.floor(num / divisor + 0.5) or 1) * divisor)
        if value < 0.95 * num:
            value += divisor
    return max(value, divisor)


def _bn(channels, **kwargs):
    return nn.BatchNorm(in_channels=channels, **kwargs)


def parse_op(op):
    """(kind, kernel, se, act) of a mobile-vision block name, e.g. 'ir_k5_sehsig_hs' ->
    ('ir', 5, True, 'hswish')."""
    fixed = {'skip': ('skip', 1, False, 'relu'), 'conv_k3_hs': ('conv', 3, False, 'hswish'),
             'ir_pool_hs': ('ir_pool', 1, False, 'hswish')}
    if op in fixed:
        return fixed[op]
    parts = op.split('_')
    if parts[0] == 'ir' and parts[1:2] in (['k3'], ['k5']) and set(parts[2:]) <= {'sehsig',
                                                                                 'hs'}:
        return 'ir', int(parts[1][1]), 'sehsig' in parts, 'hswish' if 'hs' in parts else 'relu'
    raise ValueError('unknown FBNet block %r; known: skip, conv_k3_hs, ir_pool_hs, '
                     'ir_k{3,5}[_sehsig][_hs]' % (op,))


class IRFBlock(HybridBlock):
    """Inverted residual block; ``radix`` > 0 replaces its SE by Split-Attention (the depthwise
    conv made ``radix`` times, on copies of its input, fused by the attention)."""

    def __init__(self, in_channels, channels, strides, kernel, expansion, se, act, radix=0,
                 last_gamma=True, dilation=1, residual=None, norm=_bn, **kwargs):
        super(IRFBlock, self).__init__(**kwargs)
        mid = divisible_by(in_channels * expansion)
        # a block whose stride a dilated trunk replaced keeps its architecture (``residual``)
        self.residual = strides == 1 and in_channels == channels if residual is None \
            else residual
        self.radix = radix if se else 0
        splits = max(self.radix, 1)
        with self.name_scope():
            self.pw = ConvBNAct(in_channels, mid, norm=norm, act=act) \
                if mid != in_channels else None
            self.dw = ConvBNAct(mid * splits, mid * splits, kernel, strides, mid * splits,
                                 norm=norm, act=act, dilation=dilation)
            if not se:
                self.attention = None
            elif self.radix:
                self.attention = SplitAttention(mid, self.radix)
            else:
                self.attention = SqueezeExcite(mid, divisible_by(int(mid * 0.25)), 'hsigmoid', act)
            self.pwl = ConvBNAct(mid, channels, norm=norm,
                                  zero_gamma=self.residual and last_gamma)

    def hybrid_forward(self, F, x):
        out = x if self.pw is None else self.pw(x)
        if self.radix > 1:
            out = F.tile(out, reps=(1, self.radix, 1, 1))  # radix-major copies
        out = self.dw(out)
        if self.attention is not None:
            out = self.attention(out)
        out = self.pwl(out)
        return out + x if self.residual else out


class _Skip(HybridBlock):
    def __init__(self, in_channels, channels, strides, project=None, norm=_bn, **kwargs):
        super(_Skip, self).__init__(**kwargs)
        if project is None:
            project = in_channels != channels or strides != 1
        with self.name_scope():
            self.conv = ConvBNAct(in_channels, channels, 1, strides, norm=norm, act='relu') \
                if project else None

    def hybrid_forward(self, F, x):
        return x if self.conv is None else self.conv(x)


class _IRPool(HybridBlock):
    def __init__(self, in_channels, channels, expansion, act, norm=_bn, **kwargs):
        super(_IRPool, self).__init__(**kwargs)
        mid = divisible_by(in_channels * expansion)
        with self.name_scope():
            self.pw = ConvBNAct(in_channels, mid, norm=norm, act=act) \
                if mid != in_channels else None
            self.pwl = ConvBNAct(mid, channels, act=act)

    def hybrid_forward(self, F, x):
        x = x if self.pw is None else self.pw(x)
        return self.pwl(global_avg_pool(F, x))


class FBNet(HybridBlock):
    """An FBNet from a block table (see the module docstring).

    Parameters
    ----------
    stages : list of lists of (op, channels, stride, repeats, expansion)
        mobile-vision's block table.
    radices : list of ints or None
        Split-Attention radix of each SE block in table order (0 keeps its SE); None keeps
        every SE (FBNetV2 itself).
    classes, in_channels
        Classifier outputs and image channels.
    last_gamma : bool
        Zero-initialize the last BN gamma of residual blocks (mobile-vision's
        ``zero_last_bn_gamma``, on by default as in its FBNetV2 configs).
    final_drop : float
        Dropout before the classifier.
    dropblock_prob : float
        Only 0: FBNet has no DropBlock layers (accepted so the trainer's arguments apply).
    features_only, output_stride, norm_layer, norm_kwargs, use_global_stats
        As for :class:`~gluon_resnest.backbone.ResNeSt`: the outputs at strides 4 to 32
        (``stage_channels``; the pooling block and classifier left out) instead of logits;
        the blocks past an output stride of 16 or 8 dilated instead of strided.
    """

    def __init__(self, stages, radices=None, classes=1000, in_channels=3, last_gamma=True,
                 final_drop=0.0, dropblock_prob=0.0, features_only=False, output_stride=32,
                 norm_layer=nn.BatchNorm, norm_kwargs=None, use_global_stats=False, **kwargs):
        super(FBNet, self).__init__(**kwargs)
        norm_kwargs = dict(norm_kwargs or {})
        if use_global_stats:
            norm_kwargs['use_global_stats'] = True

        def norm(channels, **extra):
            return norm_layer(in_channels=channels, **dict(norm_kwargs, **extra))
        check_positive_int('classes', classes)
        if dropblock_prob:
            raise ValueError('FBNet has no DropBlock layers: dropblock_prob must be 0, got %r'
                             % (dropblock_prob,))
        blocks = [(op, c, s if i == 0 else 1, e) for stage in stages
                  for op, c, s, n, e in stage for i in range(n)]
        se_blocks = sum(1 for op, _, _, _ in blocks if parse_op(op)[2])
        radices = list(radices) if radices is not None else [0] * se_blocks
        if len(radices) != se_blocks or any(r not in (0, 1, 2, 4) for r in radices):
            raise ValueError('radices must give each of the %d SE blocks 0 (keep SE), 1, 2 or '
                             '4, got %r' % (se_blocks, radices))
        if output_stride not in (8, 16, 32):
            raise ValueError('output_stride must be one of 8, 16, 32, got %r' % (output_stride,))
        self.in_channels = in_channels
        self.features_only = features_only
        radix_of = iter(radices)
        # each block's (stride, dilation, its output's stride): a stride-2 block past
        # ``output_stride`` runs at stride 1 and the blocks after it dilated, the first at half
        # the dilation (ResNeSt's rule)
        plan, current, dilation = [], 1, 1
        for op, _, strides, _ in blocks:
            if strides == 2 and current * 2 > output_stride:
                dilation *= 2
                plan.append((1, 1 if dilation <= 2 else dilation // 2, current))
            else:
                current *= strides
                plan.append((strides, dilation, current))
        self.output_stride = current
        # the stage outputs C2-C5: the last block at each stride from 4 on, before the pool
        original, ends = 1, {}
        for index, (op, _, strides, _) in enumerate(blocks):
            original *= strides
            if parse_op(op)[0] != 'ir_pool' and original >= 4:
                ends[original] = index
        self.stage_ends = tuple(ends[s] for s in sorted(ends))
        self.stage_channels = tuple(blocks[i][1] for i in self.stage_ends)
        with self.name_scope():
            self.features = nn.HybridSequential()
            channels = in_channels
            with self.features.name_scope():
                for (op, width, strides, expansion), (stride, dil, _) in zip(blocks, plan):
                    kind, kernel, se, act = parse_op(op)
                    if kind == 'ir_pool':
                        if features_only:  # the classification head's pooling block
                            break
                        block = _IRPool(channels, width, expansion, act, norm)
                    elif kind == 'conv':
                        block = ConvBNAct(channels, width, kernel, stride, use_bias=True,
                                          norm=norm, act=act, dilation=dil)
                    elif kind == 'skip':
                        block = _Skip(channels, width, stride,
                                      project=channels != width or strides != 1, norm=norm)
                    else:
                        block = IRFBlock(channels, width, stride, kernel, expansion, se, act,
                                         next(radix_of) if se else 0, last_gamma, dil,
                                         residual=strides == 1 and channels == width,
                                         norm=norm)
                    self.features.add(block)
                    channels = width
            self.num_features = channels
            if not features_only:
                self.drop = Dropout(final_drop) if final_drop > 0 else None
                self.output = nn.Conv2D(classes, 1, in_channels=channels)
        # what a classification file holds that a features_only trunk has not
        self.classification_head = ('output.', 'features.%d.' % len(self.features)) \
            if features_only else ()

    def forward(self, x, *args):
        check_input(self, x)
        return super(FBNet, self).forward(x, *args)

    def hybrid_forward(self, F, x):
        if self.features_only:
            features = []
            for index, block in enumerate(self.features._children.values()):
                x = block(x)
                if index in self.stage_ends:
                    features.append(x)
            return tuple(features)
        x = global_avg_pool(F, self.features(x))  # a no-op on ir_pool's 1x1 output
        if self.drop is not None:
            x = self.drop(x)
        return F.flatten(self.output(x))
