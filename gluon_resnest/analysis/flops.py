"""Parameter and FLOP counts from a network's symbol graph.

FLOPs follow the paper's (and GluonCV's) convention by default: one multiply-add counts once.
Counted are convolutions (groups and dilation included: dilation changes the receptive field, not
the work per output), dense layers, and pooling (one operation per window element of every
output). Other sources count differently (CONVENTIONS): pycls and mobile-vision count only
convolutions and dense layers; the newer ResNeSt paper's Table 1 also counts BatchNorm as two
operations (scale, shift) per output, which reproduces its 4.00 G (RegNetY-4GF) and 4.04 G
(RegNet-SA-50).
"""
import json

import mxnet as mx
import numpy as np

from ..layers.dropblock import deploy_mode
from ..layers.splat import pool_after_sum

__all__ = ['count_flops', 'count_params', 'symbol_of', 'CONVENTIONS']

_POOLING = ('Pooling', '_contrib_AdaptiveAvgPooling2D')
_MACS = ('Convolution', 'Deconvolution', 'FullyConnected')
# which operators each convention counts
CONVENTIONS = {'paper': _MACS + _POOLING, 'macs': _MACS, 'macs+bn': _MACS + ('BatchNorm',)}


def symbol_of(net, input_shape):
    """The inference graph of ``net`` for one ``input_shape`` (N, C, H, W), with its operators
    in the paper's order (an avd pool after the attention's weighted sum, not moved inside it)."""
    with deploy_mode(net), pool_after_sum(), mx.autograd.predict_mode():
        out = net(mx.sym.var('data'))
    if isinstance(out, (list, tuple)):
        out = mx.sym.Group(list(out))
    return out


def count_params(net, trainable_only=True):
    """Number of parameters (trainable ones by default; BN running statistics excluded)."""
    return sum(int(np.prod(p.shape)) for p in net.collect_params().values()
               if not trainable_only or p.grad_req != 'null')


def _tuple(value):
    return tuple(int(v) for v in value.strip('()[] ').split(',') if v.strip())


def count_flops(net, input_shape=(1, 3, 224, 224), per_op=False, convention='paper'):
    """Multiply-adds of one forward pass of ``net`` for a batch of ``input_shape``, counted as
    ``convention`` (a key of CONVENTIONS) says.

    Returns the total, or with ``per_op`` a dict {op name: total} of the counted ops too.
    """
    if convention not in CONVENTIONS:
        raise ValueError('unknown convention %r; choose one of %s'
                         % (convention, ', '.join(CONVENTIONS)))
    graph = json.loads(symbol_of(net, input_shape).tojson())
    nodes = graph['nodes']
    # a block called more than once (a detector's RPN head on every pyramid level) has one
    # node name per call: made unique, so that each call's shapes are its own
    for index, node in enumerate(nodes):
        if node['op'] != 'null':
            node['name'] = '%s__%d' % (node['name'], index)
    internals = mx.sym.load_json(json.dumps(graph)).get_internals()
    _, out_shapes, _ = internals.infer_shape(data=tuple(input_shape))
    shapes = dict(zip(internals.list_outputs(), out_shapes))
    by_op = {}
    for node in nodes:
        op, attrs = node['op'], node.get('attrs', {})
        if op == 'null':
            continue
        out = shapes.get(node['name'] + '_output')
        inputs = [nodes[i[0]] for i in node['inputs']]
        in_shape = shapes.get(inputs[0]['name'] + '_output') if inputs else None
        if inputs and inputs[0]['op'] == 'null' and inputs[0]['name'] == 'data':
            in_shape = tuple(input_shape)
        if out is None:
            continue
        if op in ('Convolution', 'Deconvolution'):
            kernel = _tuple(attrs['kernel'])
            groups = int(attrs.get('num_group', 1))
            flops = np.prod(out) * (in_shape[1] // groups) * np.prod(kernel)
        elif op == 'FullyConnected':
            flops = np.prod(out) * int(np.prod(in_shape[1:]))
        elif op == 'Pooling':
            if attrs.get('global_pool', 'False') in ('True', 'true', '1'):
                flops = np.prod(in_shape)
            else:
                flops = np.prod(out) * np.prod(_tuple(attrs['kernel']))
        elif op == '_contrib_AdaptiveAvgPooling2D':
            flops = np.prod(in_shape)
        elif op == 'BatchNorm':
            flops = 2 * np.prod(out)  # scale and shift
        else:
            continue
        if op not in CONVENTIONS[convention]:
            continue
        by_op[op] = by_op.get(op, 0) + int(flops)
    total = sum(by_op.values())
    return (total, by_op) if per_op else total
