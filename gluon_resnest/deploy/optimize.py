"""Faster CPU inference with MXNet's own tools: oneDNN graph fusion, INT8 quantization with
calibration, and bfloat16."""
import contextlib

import mxnet as mx

from ..layers.dropblock import deploy_mode
from ..runtime import require_bfloat16_cpu

__all__ = ['BACKENDS', 'default_backend', 'CALIB_MODES', 'INT8_GRANULARITIES', 'optimize_for_cpu',
           'convert_to_bfloat16', 'require_bfloat16_cpu', 'end_layers']

BACKENDS = ('fp32', 'onednn', 'int8', 'bf16')
# activation ranges from the calibration images: min/max, or the threshold that minimizes the
# KL divergence between the fp32 and the quantized distributions (TensorRT's entropy method)
CALIB_MODES = ('naive', 'entropy')
# one weight scale per tensor, or per output channel
INT8_GRANULARITIES = ('tensor-wise', 'channel-wise')


def default_backend(ctx):
    """The fastest exact inference path for ``ctx``: oneDNN fusion on the CPU (the same
    mathematics as float32, BatchNorm folded into the convolutions), plain hybridized float32
    elsewhere (the optimizations here are the CPU's)."""
    return 'onednn' if ctx.device_type == 'cpu' else 'fp32'


def end_layers(sym):
    """Names of the first convolution and of the last layer with weights (the classifier) of a
    traced graph: the two layers most sensitive to INT8 (raw pixels in, logits out)."""
    import json
    layers = [node['name'] for node in json.loads(sym.tojson())['nodes']
              if node['op'] in ('Convolution', 'FullyConnected')]
    if not layers:
        raise ValueError('the network has no convolution or fully connected layer')
    return [layers[0], layers[-1]] if len(layers) > 1 else layers


def _check_choice(name, value, allowed):
    if value not in allowed:
        raise ValueError('unknown %s %r; choose one of %s' % (name, value, ', '.join(allowed)))


def optimize_for_cpu(net, backend, input_shape, calib_images=None, calib_mode='naive',
                     granularity='tensor-wise', fp32_ends=False):
    """A network for ``backend`` (one of BACKENDS) that takes float32 NCHW input.

    - ``fp32``: ``net`` hybridized with static memory;
    - ``onednn``: oneDNN subgraph fusion (conv + BN + ReLU + sum folded);
    - ``int8``: quantized convolutions, activation ranges calibrated on ``calib_images``
      (preprocessed (N, C, H, W) images, N a multiple of the batch) by ``calib_mode``
      (CALIB_MODES), weights scaled per ``granularity`` (INT8_GRANULARITIES); ``fp32_ends``
      keeps the first convolution and the classifier in float32;
    - ``bf16``: bfloat16 compute via AMP graph conversion (CPUs with AVX512-BF16).
    The network is traced without its stochastic layers first.
    """
    _check_choice('backend', backend, BACKENDS)
    _check_choice('calib_mode', calib_mode, CALIB_MODES)
    _check_choice('granularity', granularity, INT8_GRANULARITIES)
    if len(input_shape) != 4:
        raise ValueError('input_shape must be (N, C, H, W), got %r' % (input_shape,))
    if backend == 'bf16':
        require_bfloat16_cpu()
        return convert_to_bfloat16(net, input_shape)
    with _traced_for_inference(net, input_shape) as example:
        if backend == 'fp32':
            return net
        if backend == 'onednn':
            net.optimize_for(example, backend='MKLDNN', static_alloc=True, static_shape=True)
            return net
        if calib_images is None or len(calib_images) < input_shape[0]:
            raise ValueError('int8 needs at least one batch (%d) of calibration images'
                             % input_shape[0])
        from mxnet.contrib.quantization import quantize_net_v2
        calib = mx.io.NDArrayIter(data={'data': calib_images}, batch_size=input_shape[0],
                                  last_batch_handle='discard')
        exclude = end_layers(net._cached_graph[1]) if fp32_ends else None
        with _no_input_type_warning():
            qnet = quantize_net_v2(net, quantized_dtype='auto', calib_data=calib,
                                   calib_mode=calib_mode, quantize_granularity=granularity,
                                   exclude_layers=exclude,
                                   data_shapes=[mx.io.DataDesc('data', input_shape)],
                                   ctx=mx.cpu())
        qnet.hybridize(static_alloc=True, static_shape=True)
        return qnet


def convert_to_bfloat16(net, input_shape):
    """``net``'s inference graph with its convolutions and dense layers (and their weights) in
    bfloat16, by MXNet's AMP conversion. Converting runs on every CPU; running the result needs
    AVX-512 (``optimize_for_cpu(net, 'bf16', ...)`` checks that first)."""
    from mxnet.contrib import amp
    with _traced_for_inference(net, input_shape):
        # weights stored in bfloat16 (cast_optional_params) rather than cast on every run: the
        # same outputs, less work per call
        with _no_input_type_warning():
            bnet = amp.convert_hybrid_block(net, target_dtype='bfloat16', ctx=mx.cpu(),
                                            cast_optional_params=True)
    bnet.hybridize(static_alloc=True, static_shape=True)
    return bnet


@contextlib.contextmanager
def _no_input_type_warning():
    """The SymbolBlocks MXNet builds for a converted graph cannot tell their input's dtype
    before the first call and warn; the float32 they then assume is the one given."""
    import warnings
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='Cannot decide type')
        yield


@contextlib.contextmanager
def _traced_for_inference(net, input_shape):
    """``net`` hybridized and traced in predict mode without its stochastic layers, on a zero
    batch of ``input_shape`` (yielded)."""
    example = mx.nd.zeros(input_shape)
    with deploy_mode(net), mx.autograd.predict_mode():
        net.hybridize(static_alloc=True, static_shape=True)
        net(example)
        yield example
