"""The RegNet design space (Radosavovic et al. 2020, pycls's AnyNet with Y blocks), with the
channel attention of each block chosen: none (RegNetX), Squeeze-and-Excitation (RegNetY) or
Split-Attention (RegNet-SA, the ResNeSt paper's Table 1).

Stem: 3x3 conv (stride 2) + BN + ReLU. Y block: 1x1 conv -> 3x3 group conv (stride 2 in a
stage's first block) -> attention -> 1x1 conv, BN after each conv and ReLU after the first two;
a strided 1x1 conv + BN shortcut where the shape changes; add, then ReLU. Head: global average
pool and a dense classifier.
"""
import numpy as np
from mxnet.gluon import nn
from mxnet.gluon.block import HybridBlock

from ..argtypes import check_positive_int
from ..layers.conv import ConvBNAct
from ..layers.dropblock import DropBlock, Dropout
from ..layers.se import SqueezeExcite
from ..layers.splat import SplitAttention, global_avg_pool
from .resnet import OUTPUT_STRIDES, check_input

__all__ = ['RegNet', 'RegNetBlock', 'regnet_stages', 'ATTENTIONS']

ATTENTIONS = (None, 'se', 'splat')


def regnet_stages(w0, wa, wm, depth, group_width, bot_mul=1.0, q=8):
    """(widths, depths, group widths) of the stages of the RegNet with these parameters, by
    pycls's rules: block j's width ``w0 + wa * j`` is snapped to ``w0 * wm ** k`` (k integer)
    and rounded to a multiple of ``q``; blocks of one width form a stage; each stage's group
    width is at most its bottleneck width, which is rounded to a multiple of it."""
    continuous = np.arange(depth) * wa + w0
    steps = np.round(np.log(continuous / w0) / np.log(wm))
    widths = (np.round(w0 * np.power(wm, steps) / q) * q).astype(int)
    stage_widths, depths = np.unique(widths, return_counts=True)
    out_widths, group_widths = [], []
    for width in stage_widths:
        bottleneck = int(max(1, width * bot_mul))
        group = int(min(group_width, bottleneck))
        multiple = int(np.lcm(group, int(bot_mul))) if bot_mul > 1 else group
        bottleneck = max(multiple, int(round(bottleneck / multiple) * multiple))
        out_widths.append(int(bottleneck / bot_mul))
        group_widths.append(group)
    return tuple(out_widths), tuple(int(d) for d in depths), tuple(group_widths)


def _conv_bn(in_channels, channels, kernel, strides, groups, norm, relu, dropblock=None,
             zero_gamma=False, dilation=1):
    return ConvBNAct(in_channels, channels, kernel, strides, groups, norm=norm,
                     act='relu' if relu else None, dropblock=dropblock, zero_gamma=zero_gamma,
                     dilation=dilation)


class RegNetBlock(HybridBlock):
    """The Y block (``attention=None``: the X block).

    With ``attention='se'`` the SE bottleneck is ``se_ratio`` x the block's input width
    (``se_from='input'``, pycls) or x its bottleneck width (``se_from='block'``). With
    ``attention='splat'`` the 3x3 conv makes ``radix`` splits (radix x the channels and groups)
    that :class:`SplitAttention` fuses per ``cardinality`` group. ``dropblock`` (a probability,
    or None for no layers) and ``last_gamma`` as in the ResNeSt bottleneck: DropBlock after the
    BN of each of the three convs, the last BN's gamma starting at zero. ``dilation`` dilates
    the 3x3 conv; ``project`` forces the projection shortcut (a block whose stride a dilated
    trunk replaced keeps its weights).
    """

    def __init__(self, in_channels, channels, strides, group_width, bot_mul, norm,
                 attention=None, se_ratio=0.25, se_from='input', radix=1, cardinality=1,
                 dropblock=None, last_gamma=False, dilation=1, project=None, **kwargs):
        super(RegNetBlock, self).__init__(**kwargs)
        width = int(round(channels * bot_mul))
        if width % group_width:
            raise ValueError('bottleneck width %d is not a multiple of the group width %d'
                             % (width, group_width))
        groups = width // group_width
        splits = radix if attention == 'splat' else 1
        with self.name_scope():
            self.a = _conv_bn(in_channels, width, 1, 1, 1, norm, True, dropblock)
            self.b = _conv_bn(width, width * splits, 3, strides, groups * splits, norm, True,
                              dropblock if attention != 'splat' else None, dilation=dilation)
            if attention == 'se':
                self.attention = SqueezeExcite(width, int(round(
                    (in_channels if se_from == 'input' else width) * se_ratio)))
            elif attention == 'splat':
                self.attention = SplitAttention(width, radix, cardinality,
                                                norm_layer=lambda in_channels: norm(in_channels))
            else:
                self.attention = None
            # with Split-Attention the second DropBlock follows the fused splits, as in ResNeSt
            self.drop_splits = DropBlock(dropblock, channels=width) \
                if attention == 'splat' and dropblock is not None else None
            self.c = _conv_bn(width, channels, 1, 1, 1, norm, False, dropblock, last_gamma)
            if project is None:
                project = strides != 1 or in_channels != channels
            self.shortcut = _conv_bn(in_channels, channels, 1, strides, 1, norm, False) \
                if project else None

    def hybrid_forward(self, F, x):
        out = self.b(self.a(x))
        if self.attention is not None:
            out = self.attention(out)
        if self.drop_splits is not None:
            out = self.drop_splits(out)
        out = self.c(out)
        return F.Activation(out + (x if self.shortcut is None else self.shortcut(x)),
                            act_type='relu')


class RegNet(HybridBlock):
    """A RegNet trunk with its classifier.

    Parameters
    ----------
    widths, depths, group_widths : 4 ints each
        Output width, number of blocks and group width of each stage (see
        :func:`regnet_stages`); every stage starts with a stride-2 block.
    bot_mul : float
        Bottleneck width over output width.
    stem_width : int
        Width of the stem's 3x3 conv.
    attention : None, 'se' or 'splat'
        The block's channel attention (X, Y or SA block).
    se_ratio, se_from
        SE bottleneck width: ``se_ratio`` x the block's input width ('input', pycls's) or x
        its bottleneck width ('block').
    radix, cardinalities
        Split-Attention's splits, and its cardinal groups per stage (default 1 each).
    classes, in_channels, norm_layer, norm_kwargs, last_gamma, final_drop
        As for :class:`~gluon_resnest.backbone.ResNeSt`.
    dropblock_prob : float
        DropBlock in the blocks of the last two stages, as in ResNeSt (the trainer's recipe
        applies to every trunk).
    features_only, output_stride, use_global_stats
        As for :class:`~gluon_resnest.backbone.ResNeSt`: the four stage outputs (strides 4 to
        32, channels ``stage_channels``) instead of logits; the last two stages dilated for an
        output stride of 16 or 8.
    """

    def __init__(self, widths, depths, group_widths, bot_mul=1.0, stem_width=32,
                 attention=None, se_ratio=0.25, se_from='input', radix=1,
                 cardinalities=None, classes=1000, in_channels=3,
                 norm_layer=nn.BatchNorm, norm_kwargs=None, last_gamma=False,
                 dropblock_prob=0.0, final_drop=0.0, features_only=False, output_stride=32,
                 use_global_stats=False, **kwargs):
        super(RegNet, self).__init__(**kwargs)
        stages = (widths, depths, group_widths, cardinalities or (1,) * len(widths))
        if any(len(v) != len(widths) for v in stages) or not widths:
            raise ValueError('widths, depths, group_widths and cardinalities need one value '
                             'per stage, got %r' % (stages,))
        if attention not in ATTENTIONS:
            raise ValueError('attention must be one of %s, got %r' % (ATTENTIONS, attention))
        if se_from not in ('input', 'block'):
            raise ValueError("se_from must be 'input' or 'block', got %r" % (se_from,))
        check_positive_int('classes', classes)
        if output_stride not in OUTPUT_STRIDES or (output_stride != 32 and len(widths) != 4):
            raise ValueError('output_stride must be one of %s (of a 4-stage RegNet), got %r'
                             % (sorted(OUTPUT_STRIDES), output_stride))
        self.in_channels = in_channels
        # stride and dilation of each stage: the last two dilated instead of strided for an
        # output stride of 16 or 8, as in the ResNeSt trunk
        plan = [(2, 1)] * len(widths)
        if len(widths) == 4:
            plan[2:] = OUTPUT_STRIDES[output_stride]
        self.output_stride = 2 * 2 ** sum(1 for s, _ in plan if s == 2)
        self.features_only = features_only
        self.stage_channels = tuple(widths)

        norm_kwargs = dict(norm_kwargs or {})
        if use_global_stats:  # BN statistics frozen (e.g. a pretrained trunk under a head)
            norm_kwargs['use_global_stats'] = True

        def norm(channels, **extra):
            return norm_layer(in_channels=channels, **dict(norm_kwargs, **extra))
        block_args = dict(bot_mul=bot_mul, norm=norm, attention=attention, se_ratio=se_ratio,
                          se_from=se_from, radix=radix, last_gamma=last_gamma)
        with self.name_scope():
            self.stem = _conv_bn(in_channels, stem_width, 3, 2, 1, norm, True)
            channels = stem_width
            self.stages = nn.HybridSequential()
            with self.stages.name_scope():
                for index, (width, depth, group, card) in enumerate(zip(*stages)):
                    drop = dropblock_prob if index >= len(widths) - 2 else None
                    strides, dilation = plan[index]
                    # the first block runs at half the stage's dilation (ResNeSt's rule)
                    first_dilation = 1 if dilation <= 2 else dilation // 2
                    stage = nn.HybridSequential()
                    with stage.name_scope():
                        for i in range(depth):
                            stage.add(RegNetBlock(
                                channels, width, strides if i == 0 else 1, group,
                                cardinality=card, dropblock=drop,
                                dilation=first_dilation if i == 0 else dilation,
                                project=True if i == 0 else None, **block_args))
                            channels = width
                    self.stages.add(stage)
            self.num_features = channels
            if not features_only:
                self.drop = Dropout(final_drop) if final_drop > 0 else None
                self.fc = nn.Dense(classes, in_units=channels)

    def forward(self, x, *args):
        check_input(self, x)
        return super(RegNet, self).forward(x, *args)

    def hybrid_forward(self, F, x):
        x = self.stem(x)
        features = []
        for stage in self.stages._children.values():
            x = stage(x)
            features.append(x)
        if self.features_only:
            return tuple(features)
        x = F.flatten(global_avg_pool(F, x))
        if self.drop is not None:
            x = self.drop(x)
        return self.fc(x)
