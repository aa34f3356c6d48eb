"""DropBlock (Ghiasi et al., 2018) and the stochastic-layer switches shared with final dropout.

Unlike GluonCV's DropBlock this one
- takes no input size: the seed rate is derived from the feature map's runtime shape, so one
  hybridized network trains and evaluates at any resolution;
- draws an independent mask for every sample and channel;
- is an exact identity at inference even inside a graph first traced under
  ``autograd.record()``: training vs. inference is decided by the executing graph, not at trace
  time (see ``_train_flag``).
"""
from mxnet.gluon import nn
from mxnet.gluon.block import HybridBlock

from ..argtypes import is_positive_int

__all__ = ['DropBlock', 'Dropout', 'set_drop_prob', 'deploy_mode', 'dilate']


def _train_flag(F, ones):
    """All ones when the graph executes in training mode, all zeros in inference.

    Dropout is the operator that reads the runtime is_train flag: with p=0.5 its training outputs
    are exactly 0 or 2 (|out - 1| == 1) and its inference output is exactly 1 (|out - 1| == 0).
    """
    return F.abs(F.Dropout(ones, p=0.5) - 1)


def _band(F, x, axis, pad):
    """(n, n) matrix of ones where |i - j| <= pad, n = x.shape[axis] (at run time)."""
    index = F.contrib.arange_like(x, axis=axis)
    return F.abs(F.broadcast_minus(index.reshape((-1, 1)), index.reshape((1, -1)))) <= pad


def dilate(F, mask, pad, counts=False):
    """Max of a 0/1 (N, C, H, W) ``mask`` over (2 pad + 1)^2 windows, as a stride-1 max pooling
    padded with ``pad`` would give it (``counts``: the number of ones in each window instead).

    Written as two products with band matrices (counts of ones in the window, then > 0), exact
    for 0/1 inputs: MXNet's stride-1 max Pooling is slow on the small feature maps of stages
    3-4."""
    window = F.dot(mask, _band(F, mask, 3, pad))  # along W
    window = F.dot(F.transpose(window, axes=(0, 1, 3, 2)), _band(F, mask, 2, pad))  # along H
    window = F.transpose(window, axes=(0, 1, 3, 2))
    return window if counts else window > 0


class _Stochastic(object):
    """Mixin for layers that are random in training and dropped from deployed graphs."""
    deploy = False


class DropBlock(_Stochastic, HybridBlock):
    """Drops contiguous ``block_size`` x ``block_size`` regions of each feature map.

    Parameters
    ----------
    drop_prob : float
        Expected fraction of activations dropped, in [0, 1). 0 makes the layer an identity with no
        operators in the graph. Change it with :func:`set_drop_prob`.
    block_size : int
        Odd side of the dropped square.
    channels : int or None
        Channels of the input, when known: blocks then grow in one depthwise convolution
        instead of the band-matrix products (the same mask; README, design notes: which is
        faster where).
    """

    def __init__(self, drop_prob=0.0, block_size=3, channels=None, **kwargs):
        super(DropBlock, self).__init__(**kwargs)
        if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1 \
                or block_size % 2 == 0:
            raise ValueError('DropBlock: block_size must be an odd integer >= 1, got %r'
                             % (block_size,))
        if channels is not None and not is_positive_int(channels):
            raise ValueError('DropBlock: channels must be a positive integer or None, got %r'
                             % (channels,))
        self.block_size = block_size
        self.channels = channels
        self.drop_prob = drop_prob

    @property
    def drop_prob(self):
        return self._drop_prob

    @drop_prob.setter
    def drop_prob(self, value):
        value = float(value)
        if not 0.0 <= value < 1.0:
            raise ValueError('DropBlock: drop_prob must be in [0, 1), got %r' % (value,))
        self._drop_prob = value

    def traces_to_identity(self):
        """Whether a graph traced now leaves this layer out (rate 0 or deploy mode). Training
        vs inference is a runtime flag of the traced graph and does not count."""
        return self.drop_prob == 0 or self.deploy

    def hybrid_forward(self, F, x):
        if self.traces_to_identity():
            return x
        bs, pad = self.block_size, self.block_size // 2
        first = F.slice_axis(x, axis=0, begin=0, end=1)  # (1, C, H, W)
        ones = F.ones_like(F.slice_axis(first, axis=1, begin=0, end=1))  # (1, 1, H, W)
        # Block centres may only lie where the whole block fits (DropBlock paper, Alg. 1): a
        # count_include_pad average of ones is exactly 1 there and < 1 near the border.
        valid = F.Pooling(ones, kernel=(bs, bs), stride=(1, 1), pad=(pad, pad), pool_type='avg',
                          count_include_pad=True) >= 1 - 1e-6
        valid_fraction = F.maximum(F.mean(valid, axis=(2, 3), keepdims=True), 1e-6)
        # the paper's seed rate: gamma = p / bs^2 * (H*W) / ((H-bs+1)*(W-bs+1))
        gamma = F.broadcast_div(valid * _train_flag(F, ones), valid_fraction) * (
            self.drop_prob / (bs * bs))
        seeds = F.broadcast_lesser(F.random.uniform_like(x), gamma)
        keep = self._covering_seeds(F, seeds, pad) == 0
        # rescale each sample by numel / kept so that it keeps its expected activation mass
        # (exactly 1 when nothing is dropped, so inference is an exact identity). Counts are
        # products with a column of ones (exact integers): MXNet's reduction over (C, H, W) is
        # slower than the matrix product.
        ones_column = F.ones_like(first).reshape((-1, 1))  # (C*H*W, 1)
        kept = F.dot(keep.reshape((0, -1)), ones_column)  # (N, 1)
        scale = F.broadcast_div(F.sum(ones_column).reshape((1, 1)), F.maximum(kept, 1e-6))
        mask = F.broadcast_mul(keep, scale.reshape((-1, 1, 1, 1)))
        # the mask is a constant for autograd: no gradient flows into the sampling ops
        return x * F.stop_gradient(mask)

    def _covering_seeds(self, F, seeds, pad):
        """How many seeds lie within ``pad`` of each position (the (2 pad + 1)^2 window)."""
        if self.channels is None:
            return dilate(F, seeds, pad, counts=True)
        side = 2 * pad + 1
        # the (C, 1, side, side) kernel of ones is made from the input: MXNet's AMP wraps every
        # symbol creator to cast its inputs and fails on one that has none (F.ones)
        corner = F.slice(seeds, begin=(0, 0, 0, 0), end=(1, None, 1, 1))  # (1, C, 1, 1)
        kernel = F.broadcast_to(F.ones_like(F.transpose(corner, axes=(1, 0, 2, 3))),
                                shape=(0, 0, side, side))
        return F.Convolution(seeds, kernel, kernel=(side, side), pad=(pad, pad),
                             num_filter=self.channels, num_group=self.channels, no_bias=True)

    def __repr__(self):
        return '%s(drop_prob=%g, block_size=%d%s)' % (
            self.__class__.__name__, self.drop_prob, self.block_size,
            '' if self.channels is None else ', channels=%d' % self.channels)


class Dropout(_Stochastic, nn.Dropout):
    """``nn.Dropout`` that :func:`deploy_mode` leaves out of exported graphs."""

    def hybrid_forward(self, F, x):
        if self.deploy:
            return x
        return super(Dropout, self).hybrid_forward(F, x)


def _retrace(net):
    # Python-level settings are frozen into a hybridized graph at trace time: drop every cached
    # graph so the next call traces again. Parameters are untouched.
    net.apply(lambda block: block._clear_cached_op() if isinstance(block, HybridBlock) else None)


def set_drop_prob(net, drop_prob):
    """Set the drop probability of every DropBlock in ``net``; returns how many were set.

    Takes effect on the next forward call (a hybridized network re-traces once, if any rate
    changed).
    """
    blocks = [b for b in _walk(net) if isinstance(b, DropBlock)]
    changed = False
    for block in blocks:
        changed |= block.drop_prob != float(drop_prob)
        block.drop_prob = drop_prob
    if changed:  # re-tracing rebuilds the graph and its memory: only when something changed
        _retrace(net)
    return len(blocks)


def _walk(net):
    found = []
    net.apply(found.append)
    return found


class deploy_mode(object):
    """Context manager: trace ``net`` without its stochastic layers (no random ops in the graph),
    for export. Restores the previous state on exit."""

    def __init__(self, net):
        self.net = net
        self._blocks = [b for b in _walk(net) if isinstance(b, _Stochastic)]

    def __enter__(self):
        self._set(True)
        return self.net

    def __exit__(self, *exc):
        self._set(False)

    def _set(self, value):
        for block in self._blocks:
            block.deploy = value
        _retrace(self.net)
