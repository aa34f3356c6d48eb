"""Traces zoo networks under MXNet's AMP in a process of its own (``amp.init`` rewires MXNet's
operator functions for the rest of a process) and prints one JSON line per case.

    python tests/amp_worker.py TARGET_DTYPE [--run] CASE [CASE ...]

A case is ``NETWORK:GRAPH``. NETWORK is a zoo name (built with DropBlock on where the family
has it), a zoo name + ``-band`` (DropBlock's band-matrix growth instead of the depthwise
convolution) or ``deeplabv3-<backbone>``. GRAPH is ``training`` (the graph the trainer traces:
DropBlock on, training and inference decided when it runs) or ``inference`` (the graph evaluation
and export trace: stochastic layers left out).

AMP casts while the graph is traced, before any low-precision kernel runs, so tracing and type
inference work on every CPU. With ``--run`` (CPUs that have the kernels) each graph also runs a
forward and backward pass in its mode.
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..'))

import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402
from mxnet.contrib import amp  # noqa: E402

WEIGHT_OPS = ('Convolution', 'FullyConnected')
SIZE = 64


def build(network):
    from gluon_resnest import get_model
    from gluon_resnest.layers.dropblock import DropBlock, set_drop_prob
    if network.startswith('deeplabv3-'):
        from gluon_resnest.segmentation import get_segmentation_model
        return get_segmentation_model('deeplabv3', backbone=network[len('deeplabv3-'):],
                                      classes=5, rates=(2, 4, 6), head_channels=16)
    name, band = (network[:-len('-band')], True) if network.endswith('-band') else (network,
                                                                                     False)
    net = get_model(name, classes=10)
    if set_drop_prob(net, 0.1) and band:
        for block in _blocks(net):
            if isinstance(block, DropBlock):
                block.channels = None  # the band-matrix growth
    return net


def _blocks(net):
    found = []
    net.apply(found.append)
    return found


def trace(net, graph):
    """The network's symbol as the trainer (``training``) or evaluation (``inference``) traces
    it: Gluon calls ``hybrid_forward`` with symbols, as when a hybridized network builds its
    graph."""
    from gluon_resnest.layers.dropblock import deploy_mode
    data = mx.sym.var('data')
    if graph == 'inference':
        with deploy_mode(net):
            out = net(data)
    else:
        out = net(data)
    return mx.sym.Group(list(out)) if isinstance(out, (list, tuple)) else out


def weight_op_dtypes(sym):
    """{node name: inferred output dtype} of every convolution and dense layer of ``sym``, for
    a float32 input (type inference runs no kernel)."""
    nodes = json.loads(sym.tojson(remove_amp_cast=False))['nodes']
    names = [n['name'] for n in nodes if n['op'] in WEIGHT_OPS]
    internals = sym.get_internals()
    _, out_types, _ = internals.infer_type(data='float32')
    by_output = dict(zip(internals.list_outputs(), out_types))
    return {name: dtype_name(by_output[name + '_output']) for name in names}


def dtype_name(dtype):
    """'float32', 'float16', 'bfloat16' (numpy knows MXNet's bfloat16 as a structured type)
    or None where inference left the type open."""
    if dtype is None:
        return None
    dtype = np.dtype(dtype)
    return dtype.names[0] if dtype.names else dtype.name


def run(net, graph):
    """A forward and backward pass of the hybridized network in ``graph``'s mode; True when the
    outputs and gradients are finite."""
    from gluon_resnest.layers.dropblock import deploy_mode
    net.initialize(mx.init.Xavier())
    net.hybridize(static_alloc=True, static_shape=True)
    x = mx.nd.random.uniform(shape=(2, 3, SIZE, SIZE))
    if graph == 'inference':
        with deploy_mode(net), mx.autograd.predict_mode():
            outs = net(x)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        return all(np.isfinite(o.astype('float32').asnumpy()).all() for o in outs)
    with mx.autograd.record():
        outs = net(x)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        loss = sum(o.astype('float32').sum() for o in outs)
    loss.backward()
    grads = [p.grad().astype('float32').asnumpy() for p in net.collect_params().values()
             if p.grad_req != 'null']
    return bool(np.isfinite(loss.asscalar())) and all(np.isfinite(g).all() for g in grads)


def main(argv):
    target, argv = argv[0], argv[1:]
    do_run = '--run' in argv
    cases = [a for a in argv if a != '--run']
    amp.init(target_dtype=target)
    for case in cases:
        network, graph = case.rsplit(':', 1)
        record = dict(case=case)
        try:
            net = build(network)
            record['dtypes'] = weight_op_dtypes(trace(net, graph))
            if do_run:
                record['finite'] = run(net, graph)
        except Exception as err:  # reported per case: one failure must not hide the others
            record['error'] = '%s: %s' % (type(err).__name__, str(err).splitlines()[-1]
                                          if str(err) else '')
        print(json.dumps(record), flush=True)


if __name__ == '__main__':
    main(sys.argv[1:])
