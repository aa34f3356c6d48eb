import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

from gluon_resnest.layers import SplitAttention, SplitAttentionConv
from helpers import randomize, structural_params
from numpy_reference import batchnorm, conv2d, fuse_splits, relu, split_attention


def _block(channels, radix, cardinality, in_channels, **kwargs):
    blk = SplitAttentionConv(channels, 3, padding=kwargs.pop('padding', 1), radix=radix,
                             cardinality=cardinality, in_channels=in_channels, **kwargs)
    blk.initialize()
    randomize(blk)
    return blk


@pytest.mark.parametrize('radix', [1, 2, 4])
@pytest.mark.parametrize('cardinality', [1, 2])
def test_matches_numpy_equations(radix, cardinality):
    channels = 16 * cardinality
    blk = _block(channels, radix, cardinality, in_channels=8 * cardinality * radix)
    x = np.random.uniform(-1, 1, (3, 8 * cardinality * radix, 9, 7))
    ours = blk(mx.nd.array(x)).asnumpy()
    ref = split_attention(x, structural_params(blk), channels, radix, cardinality)
    assert ours.shape == ref.shape
    assert np.abs(ours - ref).max() <= 1e-5


@pytest.mark.parametrize('radix, cardinality, groups, hidden', [
    (2, 4, 3, None),   # softmax over 2 splits, 4 cardinal groups after a 3-group convolution
    (1, 6, 4, 24),     # a sigmoid gate in 6 groups after a 4-group convolution (RegNet-SA)
    (4, 2, 48, None),  # 4 splits after a depthwise convolution (SA-FBNetV2)
])
def test_attention_module_after_any_convolution_matches_numpy(radix, cardinality, groups,
                                                              hidden):
    """SplitAttention on its own, where an SE module sits: the convolution's groups G are not
    the attention's cardinality c."""
    from mxnet.gluon import nn
    channels = 12
    in_channels = 12 if groups != 48 else 48
    net = nn.HybridSequential()
    net.add(nn.Conv2D(radix * channels, 3, padding=1, groups=groups, use_bias=False,
                      in_channels=in_channels),
            nn.BatchNorm(in_channels=radix * channels), nn.Activation('relu'),
            SplitAttention(channels, radix, cardinality, hidden=hidden))
    net.initialize()
    randomize(net)
    x = np.random.uniform(-1, 1, (3, in_channels, 7, 6))
    p = structural_params(net)
    u = relu(batchnorm(conv2d(x, p['0.weight'], pad=1, groups=groups),
                       *[p['1.' + k] for k in ('gamma', 'beta', 'running_mean', 'running_var')]))
    attention = {k[2:]: v for k, v in p.items() if k.startswith('3.')}
    ref = fuse_splits(u, attention, channels, radix, cardinality)
    assert np.abs(net(mx.nd.array(x)).asnumpy() - ref).max() <= 1e-5
    net.hybridize()
    assert np.abs(net(mx.nd.array(x)).asnumpy() - ref).max() <= 1e-5


def test_matches_numpy_with_stride_and_dilation():
    blk = _block(16, 2, 2, in_channels=16, strides=2, padding=2, dilation=2)
    x = np.random.uniform(-1, 1, (2, 16, 11, 10))
    ref = split_attention(x, structural_params(blk), 16, 2, 2, stride=2, pad=2, dilation=2)
    assert np.abs(blk(mx.nd.array(x)).asnumpy() - ref).max() <= 1e-5


def _avg_pool_3x3_stride2(x):
    """3x3 average, stride 2, zero padding 1 counted in the mean (MXNet's and GluonCV's avd)."""
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    oh, ow = (x.shape[2] - 1) // 2 + 1, (x.shape[3] - 1) // 2 + 1
    return sum(xp[:, :, i:i + 2 * oh - 1:2, j:j + 2 * ow - 1:2]
               for i in range(3) for j in range(3)) / 9.0


@pytest.mark.parametrize('radix', [1, 2, 4])
def test_a_pool_inside_the_attention_equals_pooling_its_output(radix):
    """attend(x, pool) pools the splits before their weighted sum (inference graphs of ResNeSt
    do this with the avd pool); it must equal Eq. 1-3 followed by the pool."""
    from mxnet.gluon import nn
    blk = _block(16, radix, 2, in_channels=8 * 2 * radix)
    x = np.random.uniform(-1, 1, (3, 8 * 2 * radix, 9, 8))
    ref = _avg_pool_3x3_stride2(split_attention(x, structural_params(blk), 16, radix, 2))
    got = blk.attend(mx.nd, mx.nd.array(x), nn.AvgPool2D(3, 2, padding=1)).asnumpy()
    assert got.shape == ref.shape == (3, 16, 5, 4)
    assert np.abs(got - ref).max() <= 1e-5


def test_attention_weights_sum_to_one_across_splits():
    # with every split equal to the same map (same weights, same input chunk), a softmax
    # attention returns that map exactly
    blk = _block(8, 4, 1, in_channels=8)
    w = blk.conv.weight.data().asnumpy()
    blk.conv.weight.set_data(mx.nd.array(np.concatenate([w[:8]] * 4)))
    for name in ('gamma', 'beta', 'running_mean', 'running_var'):
        p = getattr(blk.bn, name)
        p.set_data(mx.nd.array(np.tile(p.data().asnumpy()[:8], 4)))
    x = np.tile(np.random.uniform(-1, 1, (2, 2, 6, 6)), (1, 4, 1, 1))
    one_split = blk.bn(blk.conv(mx.nd.array(x))).relu().asnumpy()[:, :8]
    np.testing.assert_allclose(blk(mx.nd.array(x)).asnumpy(), one_split,
                               atol=1e-5)


@pytest.mark.parametrize('train', [False, True])
def test_hybridized_equals_imperative(train):
    blk = _block(16, 2, 2, in_channels=16)
    x = mx.nd.random.uniform(shape=(4, 16, 8, 8))
    with autograd.record(train_mode=train):
        eager = blk(x)
    blk.hybridize(static_alloc=True)
    with autograd.record(train_mode=train):
        traced = blk(x)
    np.testing.assert_allclose(eager.asnumpy(), traced.asnumpy(), atol=1e-5)


def test_any_input_size_and_batch_one_when_hybridized():
    blk = _block(8, 2, 1, in_channels=8)
    blk.hybridize()
    for shape in [(1, 8, 5, 5), (1, 8, 13, 7), (3, 8, 1, 1)]:
        x = mx.nd.random.uniform(shape=shape)
        assert blk(x).shape == shape
        ref = split_attention(x.asnumpy().astype(np.float64), structural_params(blk), 8, 2, 1)
        assert np.abs(blk(x).asnumpy() - ref).max() <= 1e-5


def test_gradients_match_finite_differences():
    blk = _block(4, 2, 1, in_channels=4)
    x = mx.nd.random.uniform(-1, 1, shape=(2, 4, 5, 5), dtype='float64')
    blk.cast('float64')
    x.attach_grad()
    # training mode: MXNet's BatchNorm backward always assumes batch statistics
    with autograd.record(train_mode=True):
        y = (blk(x) ** 2).sum()
    y.backward()
    analytic = x.grad.asnumpy()
    xn, eps = x.asnumpy(), 1e-6
    for idx in [(0, 0, 0, 0), (1, 3, 2, 4), (0, 2, 4, 1)]:
        plus, minus = xn.copy(), xn.copy()
        plus[idx] += eps
        minus[idx] -= eps
        def f(v):
            with autograd.train_mode():
                return (blk(mx.nd.array(v, dtype='float64')) ** 2).sum().asscalar()
        numeric = (f(plus) - f(minus)) / (2 * eps)
        assert abs(numeric - analytic[idx]) < 1e-5 * max(1, abs(numeric))


@pytest.mark.parametrize('kwargs, message', [
    (dict(channels=64, in_channels=64, radix=3), 'divisible by cardinality\\*radix=3'),
    (dict(channels=64, in_channels=64, radix=0), 'radix must be an integer >= 1'),
    (dict(channels=64, in_channels=64, cardinality=0), 'cardinality must be an integer >= 1'),
    (dict(channels=64, in_channels=64, cardinality=2.0), 'cardinality must be an integer'),
    (dict(channels=30, in_channels=64, cardinality=4), 'channels=30 by cardinality=4'),
])
def test_invalid_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SplitAttentionConv(kernel_size=3, **kwargs)
