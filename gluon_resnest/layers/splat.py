"""Split-Attention convolution (ResNeSt, Zhang et al. 2020, Sec. 3 and Eq. 1-3).

Layout is radix-major: one grouped convolution with ``groups = cardinality * radix`` produces
``radix`` splits of ``channels`` channels each; split ``r`` of cardinal group ``k`` is
convolution group ``r * cardinality + k``. The attention branch works per cardinal group (grouped
1x1 layers) and emits its logits cardinality-major, ``(cardinality, radix, channels/cardinality)``,
which is the layout of GluonCV's and the official ResNeSt's published weights.
"""
import contextlib

from mxnet import autograd
from mxnet.gluon import nn
from mxnet.gluon.block import HybridBlock

__all__ = ['SplitAttention', 'SplitAttentionConv', 'attention_channels', 'global_avg_pool',
           'pool_after_sum']

_POOL_AFTER_SUM = [False]


@contextlib.contextmanager
def pool_after_sum():
    """Graphs traced inside apply :meth:`SplitAttention.attend`'s pool after the weighted sum,
    the paper's order of operations (same values, more work): what FLOP counts describe."""
    _POOL_AFTER_SUM[0], before = True, _POOL_AFTER_SUM[0]
    try:
        yield
    finally:
        _POOL_AFTER_SUM[0] = before


def attention_channels(in_channels, radix, reduction_factor=4):
    """Width of the attention bottleneck: ``max(in_channels * radix / reduction_factor, 32)``."""
    return max(in_channels * radix // reduction_factor, 32)


def _check_ints(owner, **values):
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError('%s: %s must be an integer >= 1, got %r' % (owner, name, value))


def _check_attention_args(channels, cardinality, hidden):
    _check_ints('SplitAttention', hidden=hidden)
    if channels % cardinality or hidden % cardinality:
        raise ValueError('SplitAttention: channels=%d and the attention width %d must be '
                         'divisible by cardinality=%d' % (channels, hidden, cardinality))


def _check_split_args(channels, in_channels, cardinality, radix, reduction_factor):
    _check_ints('SplitAttentionConv', channels=channels, in_channels=in_channels,
                cardinality=cardinality, radix=radix, reduction_factor=reduction_factor)
    groups = cardinality * radix
    if in_channels % groups or channels % cardinality:
        raise ValueError(
            'SplitAttentionConv: in_channels=%d must be divisible by cardinality*radix=%d and '
            'channels=%d by cardinality=%d' % (in_channels, groups, channels, cardinality))
    inter = attention_channels(in_channels, radix, reduction_factor)
    if inter % cardinality:
        raise ValueError('SplitAttentionConv: the attention width %d is not divisible by '
                         'cardinality=%d' % (inter, cardinality))
    return inter


def global_avg_pool(F, x):
    """(N, C, H, W) -> (N, C, 1, 1) mean.

    oneDNN's global Pooling is the fastest forward but its backward on oneDNN-layout inputs is
    far slower than adaptive pooling's; both compute the same mean, so graphs traced for
    training use the adaptive op.
    """
    if autograd.is_training():
        return F.contrib.AdaptiveAvgPooling2D(x, output_size=1)
    return F.Pooling(x, kernel=(1, 1), pool_type='avg', global_pool=True)


def _splits(F, x, radix, channels):
    """The ``radix`` consecutive blocks of ``channels`` channels of ``x``.

    Channel slices rather than ``split``: MXNet's ONNX exporter writes ``split`` in a form that
    opset-18+ runtimes reject, while slices export everywhere (and run on oneDNN). oneDNN keeps
    maps in blocks of 8 or 16 channels and cannot slice through a block, so other widths are
    first brought back to the plain layout by a same-shape reshape (exported as a no-op).
    """
    if channels % 16:
        x = F.reshape(x, (0, 0, 0, 0))
    return [F.slice(x, begin=(None, r * channels), end=(None, (r + 1) * channels))
            for r in range(radix)]


def _sum_splits(F, x, radix, channels):
    """Sum of the ``radix`` consecutive channel blocks of ``x``."""
    return x if radix == 1 else F.add_n(*_splits(F, x, radix, channels))


def _scale_channels(F, x, scale):
    """``x * scale`` for x (N, C, H, W) and scale (N, C, 1, 1).

    As a batched (1x1)·(1xHW) product: same values as broadcast_mul, but the backward for
    ``scale`` is a GEMM instead of the slow generic broadcast reduction.
    """
    rows = F.expand_dims(F.reshape(x, (-3, -3)), axis=1)  # (N*C, 1, H*W)
    return F.reshape_like(F.batch_dot(F.reshape(scale, (-1, 1, 1)), rows), x)


def _weighted_sum(F, x, att, radix, channels):
    """sum over r of att_r * x_r, for the radix-major splits of x and of att (N, radix*C, 1, 1).

    Training graphs use the batched product (fast backward); inference graphs multiply split by
    split, which is as fast forward and uses only operators ONNX can express.
    """
    if autograd.is_training():
        return _sum_splits(F, _scale_channels(F, x, att), radix, channels)
    if radix == 1:
        return F.broadcast_mul(x, att)
    return F.add_n(*[F.broadcast_mul(s, w) for s, w in zip(_splits(F, x, radix, channels),
                                                           _splits(F, att, radix, channels))])


class SplitAttention(HybridBlock):
    """The attention of Split-Attention on its own, usable where an SE module sits: it takes
    ``radix`` feature-map splits of ``channels`` channels each, stacked radix-major as
    (N, radix * channels, H, W) by whatever made them (a grouped or depthwise convolution of any
    grouping), and returns their attention-weighted sum (N, channels, H, W). The attention works
    per cardinal group (``cardinality``, independent of the convolution's groups): a softmax over
    the splits, or a sigmoid gate when ``radix == 1``.

    Parameters
    ----------
    channels : int
        Width of one split (the output width).
    radix, cardinality : int
        Splits per cardinal group, and cardinal groups (``channels`` divisible by it).
    hidden : int or None
        Width of the attention bottleneck; default ``max(channels * radix / reduction_factor,
        32)``. It must be divisible by ``cardinality``.
    norm_layer, norm_kwargs
        Normalization in the bottleneck (``None`` leaves it out).
    """

    def __init__(self, channels, radix=2, cardinality=1, reduction_factor=4, hidden=None,
                 norm_layer=nn.BatchNorm, norm_kwargs=None, **kwargs):
        super(SplitAttention, self).__init__(**kwargs)
        _check_ints('SplitAttention', channels=channels, radix=radix, cardinality=cardinality,
                    reduction_factor=reduction_factor)
        if hidden is None:
            hidden = attention_channels(channels, radix, reduction_factor)
        _check_attention_args(channels, cardinality, hidden)
        self.channels, self.radix, self.cardinality = channels, radix, cardinality
        with self.name_scope():
            self.fc1 = nn.Conv2D(hidden, 1, in_channels=channels, groups=cardinality)
            self.bn1 = norm_layer(in_channels=hidden, **(norm_kwargs or {})) if norm_layer \
                else None
            self.fc2 = nn.Conv2D(channels * radix, 1, in_channels=hidden, groups=cardinality)

    def hybrid_forward(self, F, x):
        return self.attend(F, x)

    def attend(self, F, x, pool=None):
        """The attention-weighted sum of the splits of ``x``, followed by ``pool`` (a block
        applied per channel and linear, such as ResNeSt's avd average pool) when given.

        The pool is applied to the splits before their weighted sum: the attention weights are
        constant over positions, so ``pool(sum_r a_r x_r) == sum_r a_r pool(x_r)``, while the
        attention still sees the full-resolution map. The products and the sum then run on the
        pooled map, and the pool reads the convolution's output in oneDNN's blocked layout
        (pooling the sum ran oneDNN's reference kernel on a plain-layout map: ~3% of ResNeSt-50's
        inference).
        """
        # Pooling is linear, so GAP(sum of splits) == sum of GAP(split): pool the whole map once
        # and add the splits on the pooled (N, radix*C, 1, 1) tensor instead of summing full
        # feature maps (a strided reduction over the radix axis is the slowest op on the CPU).
        gap = _sum_splits(F, global_avg_pool(F, x), self.radix, self.channels)
        gap = self.fc1(gap)
        if self.bn1 is not None:
            gap = self.bn1(gap)
        logits = self.fc2(F.Activation(gap, act_type='relu'))
        if self.radix == 1:
            att = F.sigmoid(logits)
        else:
            # logits are (cardinality, radix, C/cardinality): softmax over radix, then reorder to
            # the radix-major layout of x
            att = F.softmax(logits.reshape((0, self.cardinality, self.radix, -1)), axis=2)
            # transpose, not swapaxes: the ONNX exporter writes swapaxes as a chain of shape
            # computations (Shape, ScatterND, GatherND, Pad, ...) around the Transpose
            att = F.transpose(att, axes=(0, 2, 1, 3)).reshape((0, -1, 1, 1))
        if pool is None:
            return _weighted_sum(F, x, att, self.radix, self.channels)
        if _POOL_AFTER_SUM[0]:
            return pool(_weighted_sum(F, x, att, self.radix, self.channels))
        return _weighted_sum(F, pool(x), att, self.radix, self.channels)

    def __repr__(self):
        return '%s(channels=%d, radix=%d, cardinality=%d)' % (
            self.__class__.__name__, self.channels, self.radix, self.cardinality)


class SplitAttentionConv(SplitAttention):
    """Split-Attention convolution: one grouped convolution (``cardinality * radix`` groups)
    makes the ``radix`` splits per cardinal group, then BN, ReLU and :class:`SplitAttention`.

    Parameters
    ----------
    channels : int
        Output channels (the width of one split).
    kernel_size, strides, padding, dilation : int or tuple
        Of the grouped convolution that produces the splits.
    cardinality : int
        Number of cardinal groups.
    radix : int
        Number of splits per cardinal group, >= 1.
    in_channels : int
        Input channels.
    reduction_factor : int
        The attention bottleneck has ``max(in_channels * radix / reduction_factor, 32)`` channels.
    norm_layer, norm_kwargs
        Normalization after the split convolution and in the attention bottleneck
        (``None`` leaves them out).

    Parameter names (``conv``, ``bn``, ``fc1``, ``bn1``, ``fc2``) match GluonCV's ResNeSt, so its
    published weights load unchanged.
    """

    def __init__(self, channels, kernel_size, strides=1, padding=0, dilation=1, cardinality=1,
                 radix=2, in_channels=None, reduction_factor=4, norm_layer=nn.BatchNorm,
                 norm_kwargs=None, use_bias=False, **kwargs):
        if in_channels is None:
            in_channels = channels
        inter = _check_split_args(channels, in_channels, cardinality, radix, reduction_factor)
        super(SplitAttentionConv, self).__init__(channels, radix, cardinality, hidden=inter,
                                                 norm_layer=norm_layer, norm_kwargs=norm_kwargs,
                                                 **kwargs)
        with self.name_scope():
            self.conv = nn.Conv2D(channels * radix, kernel_size, strides, padding, dilation,
                                  groups=cardinality * radix, use_bias=use_bias,
                                  in_channels=in_channels)
            self.bn = (norm_layer(in_channels=channels * radix, **(norm_kwargs or {}))
                       if norm_layer else None)

    def hybrid_forward(self, F, x):
        return self.attend(F, x)

    def attend(self, F, x, pool=None):
        """The block's output followed by ``pool`` (see :meth:`SplitAttention.attend`)."""
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        x = F.Activation(act_type='relu', data=x)
        return super(SplitAttentionConv, self).attend(F, x, pool)

    def __repr__(self):
        return '%s(channels=%d, radix=%d, cardinality=%d, conv=%s)' % (
            self.__class__.__name__, self.channels, self.radix, self.cardinality, self.conv)
