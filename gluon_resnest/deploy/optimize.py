"""Faster CPU inference with MXNet's own tools: oneDNN graph fusion, INT8 quantization with
calibration, and bfloat16."""
import mxnet as mx

from ..layers.dropblock import deploy_mode

__all__ = ['BACKENDS', 'optimize_for_cpu', 'require_bfloat16_cpu']

BACKENDS = ('fp32', 'onednn', 'int8', 'bf16')


def require_bfloat16_cpu():
    """Raise ValueError unless this CPU can run MXNet's bfloat16 kernels."""
    from ..runtime import BF16_CPU_FLAGS, cpu_supports_bfloat16
    if not cpu_supports_bfloat16():
        raise ValueError('bfloat16 on the CPU needs AVX-512 (%s), which this CPU lacks; use '
                         'fp32, onednn or int8' % ', '.join(BF16_CPU_FLAGS))


def optimize_for_cpu(net, backend, input_shape, calib_images=None):
    """A network for ``backend`` (one of BACKENDS) that takes float32 NCHW input.

    - ``fp32``: ``net`` hybridized with static memory;
    - ``onednn``: oneDNN subgraph fusion (conv + BN + ReLU + sum folded);
    - ``int8``: quantized convolutions, activation ranges calibrated on ``calib_images``
      (preprocessed (N, C, H, W) images, N a multiple of the batch; 'naive' min/max);
    - ``bf16``: bfloat16 compute via AMP graph conversion (CPUs with AVX512-BF16).
    The network is traced without its stochastic layers first.
    """
    if backend not in BACKENDS:
        raise ValueError('unknown backend %r; choose one of %s' % (backend, ', '.join(BACKENDS)))
    if len(input_shape) != 4:
        raise ValueError('input_shape must be (N, C, H, W), got %r' % (input_shape,))
    if backend == 'bf16':
        require_bfloat16_cpu()
    example = mx.nd.zeros(input_shape)
    with deploy_mode(net), mx.autograd.predict_mode():
        net.hybridize(static_alloc=True, static_shape=True)
        net(example)
        if backend == 'fp32':
            return net
        if backend == 'onednn':
            net.optimize_for(example, backend='MKLDNN', static_alloc=True, static_shape=True)
            return net
        if backend == 'int8':
            if calib_images is None or len(calib_images) < input_shape[0]:
                raise ValueError('int8 needs at least one batch (%d) of calibration images'
                                 % input_shape[0])
            from mxnet.contrib.quantization import quantize_net_v2
            calib = mx.io.NDArrayIter(data={'data': calib_images}, batch_size=input_shape[0],
                                      last_batch_handle='discard')
            qnet = quantize_net_v2(net, quantized_dtype='auto', calib_data=calib,
                                   calib_mode='naive',
                                   data_shapes=[mx.io.DataDesc('data', input_shape)],
                                   ctx=mx.cpu())
            qnet.hybridize(static_alloc=True, static_shape=True)
            return qnet
        from mxnet.contrib import amp
        bnet = amp.convert_hybrid_block(net, target_dtype='bfloat16', ctx=mx.cpu())
        bnet.hybridize(static_alloc=True, static_shape=True)
        return bnet
