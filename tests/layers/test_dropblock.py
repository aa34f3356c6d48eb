import json

import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd
from mxnet.gluon import nn

from gluon_resnest.layers import DropBlock, deploy_mode, set_drop_prob
from gluon_resnest.layers.dropblock import _walk


def _train(block, x):
    with autograd.record():
        return block(x)


# blocks grow through band-matrix products (channels unknown) or a depthwise convolution
GROWTH = [None, 'channels']


def _block(p, growth, channels, **kwargs):
    return DropBlock(p, channels=channels if growth else None, **kwargs)


def _net(drop_prob=0.1, growth=None):
    net = nn.HybridSequential()
    net.add(nn.Conv2D(8, 3, padding=1, in_channels=3), _block(drop_prob, growth, 8),
            nn.BatchNorm(in_channels=8))
    net.initialize()
    return net


@pytest.mark.parametrize('growth', GROWTH)
@pytest.mark.parametrize('p', [0.05, 0.1, 0.3])
def test_dropped_fraction_is_close_to_p(p, growth):
    block = _block(p, growth, 32, block_size=3)
    x = mx.nd.ones((16, 32, 28, 28))
    y = _train(block, x).asnumpy()
    dropped = (y == 0).mean()
    assert abs(dropped - p) < 0.2 * p + 0.005
    # survivors are rescaled per sample so that each sample keeps its activation mass
    np.testing.assert_allclose(y.sum(axis=(1, 2, 3)), x[0].size, rtol=1e-4)


@pytest.mark.parametrize('growth', GROWTH)
def test_drops_whole_blocks(growth):
    block = _block(0.05, growth, 8, block_size=3)
    y = _train(block, mx.nd.ones((4, 8, 20, 20))).asnumpy() == 0
    # every dropped pixel lies in a fully dropped 3x3 square
    h, w = y.shape[2:]
    covered = np.zeros_like(y)
    for i in range(h - 2):
        for j in range(w - 2):
            full = y[:, :, i:i + 3, j:j + 3].all(axis=(2, 3))
            covered[:, :, i:i + 3, j:j + 3] |= full[:, :, None, None]
    assert y.any()
    assert (covered == y).all()


@pytest.mark.parametrize('growth', GROWTH)
def test_independent_masks_per_sample_and_channel(growth):
    block = _block(0.2, growth, 4)
    mask = _train(block, mx.nd.ones((8, 4, 16, 16))).asnumpy() == 0
    flat = mask.reshape(32, -1)
    assert len({row.tobytes() for row in flat}) == 32


def test_identity_at_inference_even_when_first_traced_while_recording():
    net = _net(0.3)
    net.hybridize(static_alloc=True)
    x = mx.nd.random.uniform(shape=(4, 3, 16, 16))
    with autograd.record():
        trained = net(x)           # the graph is traced here, in training mode
    first, second = net(x).asnumpy(), net(x).asnumpy()
    np.testing.assert_array_equal(first, second)
    for block in (net[1],):
        block.drop_prob = 0.0      # reference: the same network without DropBlock, not traced
    net.hybridize(active=False)
    np.testing.assert_array_equal(first, net(x).asnumpy())
    assert not np.array_equal(trained.asnumpy(), first)


@pytest.mark.parametrize('growth', GROWTH)
def test_one_network_trains_at_two_input_sizes(growth):
    net = _net(0.2, growth)
    net.hybridize()
    for size in (32, 24, 17):
        x = mx.nd.ones((2, 3, size, size))
        out = _train(net, x)
        assert out.shape == (2, 8, size, size)
        assert (net[1](net[0](x)) == 0).sum().asscalar() == 0  # inference keeps everything
        with autograd.record():
            dropped = (net[1](mx.nd.ones((2, 8, size, size))) == 0).mean().asscalar()
        assert 0.05 < dropped < 0.4


@pytest.mark.parametrize('growth', GROWTH)
def test_tiny_maps_where_no_block_fits_are_left_alone(growth):
    y = _train(_block(0.5, growth, 3, block_size=5), mx.nd.ones((2, 3, 3, 3)))
    np.testing.assert_array_equal(y.asnumpy(), np.ones((2, 3, 3, 3)))


@pytest.mark.parametrize('shape, block_size', [((4, 6, 9, 9), 3), ((2, 5, 7, 12), 5),
                                               ((3, 4, 2, 2), 3)])
def test_both_growths_give_the_same_masks_from_the_same_draws(shape, block_size):
    """The depthwise-convolution growth (channels known) and the band products draw the same
    random numbers, so one seed gives bitwise the same output; with a max pooling of the seeds
    as the independent reference of which positions a block covers."""
    x = mx.nd.random.uniform(1, 2, shape=shape)
    outputs = []
    for channels in (None, shape[1]):
        block = DropBlock(0.3, block_size=block_size, channels=channels)
        block.hybridize()
        mx.random.seed(7)
        outputs.append(_train(block, x).asnumpy())
    np.testing.assert_array_equal(outputs[0], outputs[1])
    mx.random.seed(7)
    seeds = mx.nd.random.uniform_like(x)  # the layer's only draw, so the same numbers
    pad = block_size // 2
    rate = 0.3 / block_size ** 2 * (shape[2] * shape[3]) / max(
        (shape[2] - 2 * pad) * (shape[3] - 2 * pad), 1e-6)
    valid = np.zeros(shape[2:], bool)
    valid[pad:shape[2] - pad, pad:shape[3] - pad] = True
    seeds = ((seeds.asnumpy() < rate) & valid).astype('float32')
    covered = mx.nd.Pooling(mx.nd.array(seeds), kernel=(block_size,) * 2, stride=(1, 1),
                            pad=(pad, pad), pool_type='max').asnumpy() > 0
    np.testing.assert_array_equal(outputs[0] == 0, covered)


def test_set_drop_prob_changes_a_hybridized_network_without_rebuilding():
    net = _net(0.0)
    net.hybridize()
    x = mx.nd.ones((4, 8, 24, 24))
    params_before = {k: v.data().asnumpy().copy() for k, v in net.collect_params().items()}
    with autograd.record():
        assert (net[1](x) == 0).sum().asscalar() == 0
    assert set_drop_prob(net, 0.25) == 1
    with autograd.record():
        frac = (net[1](x) == 0).mean().asscalar()
    assert 0.15 < frac < 0.35
    for k, v in net.collect_params().items():
        np.testing.assert_array_equal(params_before[k], v.data().asnumpy())


def test_set_drop_prob_keeps_the_graph_when_no_rate_changes():
    # the trainer sets the epoch's rate every epoch; an unchanged rate must not rebuild the
    # graph and its memory (a re-trace cost several seconds per epoch of short runs)
    net = _net(0.25)
    net.hybridize()
    with autograd.record():
        net(mx.nd.ones((2, 3, 16, 16)))
    graph = net._cached_op
    assert graph is not None
    assert set_drop_prob(net, 0.25) == 1
    assert net._cached_op is graph
    assert set_drop_prob(net, 0.1) == 1
    assert net._cached_op is None


def test_deploy_mode_leaves_no_random_ops_in_the_graph():
    net = _net(0.2)
    net.hybridize()
    with deploy_mode(net):
        net(mx.nd.ones((1, 3, 8, 8)))
        graph = net._cached_graph[1].tojson()
    assert 'random' not in graph and 'Dropout' not in graph
    with autograd.record():
        net(mx.nd.ones((1, 3, 8, 8)))
    assert 'random' in net._cached_graph[1].tojson()


@pytest.mark.parametrize('first_call', ['predict', 'record'])
def test_a_resnest_graph_keeps_every_dropblock_whatever_mode_traced_it(first_call):
    """A hybridized graph is traced once, by its first call, and then serves training too:
    tracing it in predict mode must not drop DropBlock layers (the avd blocks move their pool
    inside the attention only when nothing sits between them)."""
    import gluon_resnest as gr
    net = gr.get_model('resnest26', classes=10, dropblock_prob=0.1)
    net.initialize()
    net.hybridize()
    layers = [b for b in _walk(net) if isinstance(b, DropBlock)]
    assert len(layers) == 3 * (2 + 2)  # three per bottleneck of stages 3-4 (2 blocks each)
    x = mx.nd.ones((1, 3, 64, 64))
    if first_call == 'predict':
        net(x)
    else:
        with autograd.record():
            net(x)
    nodes = json.loads(net._cached_graph[1].tojson())['nodes']
    assert sum(n['op'] == '_random_uniform_like' for n in nodes) == len(layers)
    # the same graph in deploy mode: no DropBlock, every avd pool inside its attention
    with deploy_mode(net):
        net(x)
        nodes = json.loads(net._cached_graph[1].tojson())['nodes']
    assert not any('random' in n['op'] for n in nodes)


@pytest.mark.parametrize('kwargs, message', [
    (dict(drop_prob=1.0), 'drop_prob must be in \\[0, 1\\)'),
    (dict(drop_prob=-0.1), 'drop_prob must be in'),
    (dict(drop_prob=0.1, block_size=4), 'block_size must be an odd integer'),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DropBlock(**kwargs)


@pytest.mark.parametrize('shape, pad', [((3, 4, 4, 4), 1), ((2, 5, 7, 9), 1), ((2, 3, 11, 6), 2),
                                        ((1, 2, 3, 5), 3)])
def test_dilation_equals_mxnet_max_pooling(shape, pad):
    """DropBlock grows seeds into blocks with band-matrix products instead of a stride-1 max
    Pooling (much faster on small maps): the same 0/1 mask, including at the borders."""
    from gluon_resnest.layers.dropblock import dilate
    seeds = (mx.nd.random.uniform(shape=shape) < 0.15).astype('float32')
    expected = mx.nd.Pooling(seeds, kernel=(2 * pad + 1,) * 2, stride=(1, 1), pad=(pad, pad),
                             pool_type='max')
    got = dilate(mx.nd, seeds, pad)
    assert seeds.sum().asscalar() > 0
    np.testing.assert_array_equal(got.asnumpy(), expected.asnumpy())
    sym = dilate(mx.sym, mx.sym.var('s'), pad)  # the same in a graph, shapes known at run time
    out = sym.bind(mx.cpu(), {'s': seeds}).forward()[0]
    np.testing.assert_array_equal(out.asnumpy(), expected.asnumpy())
