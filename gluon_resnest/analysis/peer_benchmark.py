"""Times what a CPU user would pick instead of gluon-resnest: timm's ResNeSt on PyTorch (eager,
inference and training), timm's model exported to ONNX in ONNX Runtime (inference), and for
detection torchvision's R-CNNs (``--impl torchvision``, inference), with the shapes and timing of
``analysis.benchmark`` (fixed random batch, warm-up, median of repeats).

Runs in the peers' own environment (``make bench-env``: torch, timm, onnxruntime), never in the
project's (MXNet needs numpy 1.23.5), so it imports nothing from gluon_resnest: ``eval/benchmark.py
--compare timm`` runs this file by path with that environment's python and reads its one JSON
line.

    .bench-venv/bin/python gluon_resnest/analysis/peer_benchmark.py --model resnest50d \\
        --impl timm --mode inference --batch-size 8 --size 224
"""
import functools
import json
import os
import statistics
import sys
import tempfile
import time
from ..argtypes import command_parser

# run by path, this folder comes first on sys.path, and its profile.py (MXNet's profiler)
# would shadow the standard library's module that torch imports
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]


DTYPES = ('float32', 'bfloat16')


def median_rate(step, batch_size, warmup, repeats):
    """Images per second of ``step`` (one batch) from the median of ``repeats`` timed calls
    after ``warmup`` untimed ones; shared with ``analysis.benchmark``."""
    return median_rates([step], batch_size, warmup, repeats)[0]


def median_rates(steps, batch_size, warmup, repeats):
    """:func:`median_rate` of several ``steps`` timed in alternation (one call of each per
    round), so that a slow spell of a shared machine falls on all of them alike. A step that
    returns a number has timed itself (seconds): a step run by another process."""
    for _ in range(warmup):
        for step in steps:
            step()
    times = [[] for _ in steps]
    for _ in range(repeats):
        for step, timed in zip(steps, times):
            start = time.perf_counter()
            own = step()
            elapsed = time.perf_counter() - start
            timed.append(own if isinstance(own, float) else elapsed)
    results = []
    for timed in times:
        median = statistics.median(timed)
        results.append({'img_per_s': batch_size / median, 'median_ms': median * 1e3,
                        'min_ms': min(timed) * 1e3, 'repeats': repeats})
    return results


IMPLS = ('timm', 'timm-onnxruntime', 'timm-onnxruntime-int8', 'torchvision')


@functools.lru_cache(maxsize=None)
def torchvision_detector(model, height, width):
    """torchvision's detection ``model`` (e.g. fasterrcnn_resnet50_fpn) with random weights, in
    eval mode, its resizing set so that a ``height`` x ``width`` image runs at that size (as our
    detector gets it), and that image: (net, [image]). The RPN's NMS keeps every box (IoU
    threshold 1), so that the box head gets its full 1,000 proposals, as with trained weights
    on real images and as GluonCV's does always: random weights would leave the count to
    chance. Built once per shape (the FLOP count and the timed step share it)."""
    import torch
    from torchvision.models import detection
    if not hasattr(detection, model) or not callable(getattr(detection, model)):
        raise SystemExit('error: torchvision.models.detection has no model %r' % model)
    torch.manual_seed(0)
    short, long_side = sorted((height, width))
    net = getattr(detection, model)(weights=None, weights_backbone=None, min_size=short,
                                    max_size=long_side, rpn_nms_thresh=1.0)
    return net.eval(), [torch.rand(3, height, width)]


def detector_gmacs(net, images):
    """Multiply-adds (G) of one forward pass, from PyTorch's own FLOP counter (which counts a
    multiply-add as two FLOPs: halved to the paper's convention; convolutions and matrix
    products, as ``analysis.flops`` convention 'macs')."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        net(images)
    return counter.get_total_flops() / 2e9


def make_steps(model, impl, mode, batch_size, size, threads, also_onnx=None, dtype='float32',
               width=None):
    """One-batch step functions of ``impl`` on timm's ``model``: [timm's step], or for
    timm-onnxruntime with ``also_onnx`` [timm's export, that file] in the same ONNX Runtime
    settings. ``dtype`` bfloat16 runs timm under ``torch.autocast`` (eager only), as a PyTorch
    user runs mixed precision on a CPU. ``torchvision`` runs a detection model on one image of
    ``size`` x ``width``."""
    import contextlib
    import torch
    if impl == 'torchvision':
        if mode != 'inference' or dtype != 'float32' or batch_size != 1:
            raise SystemExit('error: --impl torchvision times float32 inference of one image')
        torch.set_num_threads(threads)
        net, images = torchvision_detector(model, size, width or size)

        def detect():
            with torch.inference_mode():
                net(images)
        return [detect]
    import timm
    if dtype not in DTYPES:
        raise SystemExit('error: --dtype %r: choose one of %s' % (dtype, ', '.join(DTYPES)))
    if dtype != 'float32' and impl != 'timm':
        raise SystemExit('error: %s runs float32 here; --dtype %s needs --impl timm'
                         % (impl, dtype))
    torch.set_num_threads(threads)
    net = timm.create_model(model, pretrained=False)
    x = torch.rand(batch_size, 3, size, size)

    def precision():
        if dtype == 'float32':
            return contextlib.nullcontext()
        return torch.autocast('cpu', dtype=getattr(torch, dtype))
    if mode == 'training':
        if impl != 'timm':
            raise SystemExit('error: %s does not train; --mode training needs --impl timm' % impl)
        net.train()
        optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True,
                                    weight_decay=1e-4)
        y = torch.randint(0, 1000, (batch_size,))
        loss_fn = torch.nn.CrossEntropyLoss()

        def step():
            optimizer.zero_grad(set_to_none=True)
            with precision():
                loss = loss_fn(net(x), y)
            loss.backward()
            optimizer.step()
        return [step]
    net.eval()
    if impl == 'timm':
        def step():
            with torch.inference_mode(), precision():
                net(x)
        return [step]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, 'model.onnx')
        torch.onnx.export(net, x[:1], path, input_names=['data'], output_names=['out'],
                          dynamic_axes={'data': {0: 'batch'}, 'out': {0: 'batch'}},
                          opset_version=17, dynamo=False)
        if impl == 'timm-onnxruntime-int8':
            path = _quantize(path, x.numpy())
        sessions = [onnxruntime_session(p, threads)
                    for p in [path] + ([also_onnx] if also_onnx else [])]
    data = x.numpy()
    return [lambda s=s: s.run(None, {s.get_inputs()[0].name: data}) for s in sessions]


def measure(model, impl, mode, batch_size, size, repeats, threads, also_onnx=None,
            dtype='float32', width=None):
    """:func:`make_steps` timed like ``analysis.benchmark`` (steps alternating); with
    ``also_onnx`` the file's rate is ``also_onnx_img_per_s``."""
    steps = make_steps(model, impl, mode, batch_size, size, threads, also_onnx, dtype, width)
    results = median_rates(steps, batch_size, 3 if mode == 'inference' else 2, repeats)
    if also_onnx:
        results[0]['also_onnx_img_per_s'] = results[1]['img_per_s']
    return results[0]


def serve(steps, info, lines=sys.stdin, out=sys.stdout):
    """Runs steps on request so that another process can alternate them with its own: prints
    ``info`` as one JSON line, then for each input line ``step I`` runs step I and answers
    ``{"seconds": ...}``; stops at ``quit`` or the end of the input."""
    print(json.dumps(dict(info, ready=True, steps=len(steps))), file=out, flush=True)
    for line in lines:
        words = line.split()
        if not words or words[0] == 'quit':
            break
        start = time.perf_counter()
        steps[int(words[1])]()
        print(json.dumps(dict(seconds=time.perf_counter() - start)), file=out, flush=True)


def _quantize(path, images):
    """ONNX Runtime's static INT8 quantization of ``path`` (QDQ format, per-channel int8
    weights, uint8 activations calibrated on ``images``: random here, this measures speed),
    after its recommended pre-processing; returns the quantized file's path beside it."""
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    import onnx
    name = onnx.load(path, load_external_data=False).graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{name: images}])

        def get_next(self):
            return next(self.batches, None)
    prepared, quantized = path + '.pre.onnx', path + '.int8.onnx'
    quant_pre_process(path, prepared)
    quantize_static(prepared, quantized, Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8)
    return quantized


def onnxruntime_session(path, threads):
    """An ONNX Runtime CPU session on ``threads`` intra-op threads (shared with
    ``analysis.benchmark``)."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.log_severity_level = 3
    # no busy-waiting between runs: spinning threads would take the cores from the step
    # timed next (another implementation's: -4% for MXNet after ONNX Runtime here)
    options.add_session_config_entry('session.intra_op.allow_spinning', '0')
    return ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])


def main(argv=None):
    parser = command_parser(__doc__)
    parser.add_argument('--model', required=True,
                        help='timm model name (torchvision: a torchvision.models.detection name)')
    parser.add_argument('--impl', choices=IMPLS, default='timm')
    parser.add_argument('--mode', choices=['inference', 'training'], default='inference')
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--size', type=int, default=224, help='image height')
    parser.add_argument('--width', type=int, help='image width (default: --size)')
    parser.add_argument('--repeats', type=int, default=10)
    parser.add_argument('--also-onnx', help='timm-onnxruntime: an ONNX file (NCHW float input) '
                        "timed in the same ONNX Runtime session settings, its steps alternating "
                        "with timm's export")
    parser.add_argument('--dtype', choices=DTYPES, default='float32',
                        help='bfloat16: timm under torch.autocast (--impl timm)')
    parser.add_argument('--threads', type=int,
                        default=int(os.environ.get('OMP_NUM_THREADS', 0)) or
                        len(os.sched_getaffinity(0)))
    parser.add_argument('--serve', action='store_true',
                        help='build the steps, then run them on request from standard input '
                             '("step I" -> {"seconds": ...}): how eval/benchmark.py alternates '
                             "them with its own steps")
    args = parser.parse_args(argv)
    try:
        import torch
        library = __import__('torchvision' if args.impl == 'torchvision' else 'timm')
    except ImportError as err:
        sys.exit('error: %s; this runs in the peers\' environment (make bench-env)' % err)
    info = {'peer_model': args.model, 'threads': args.threads, 'torch': torch.__version__,
            library.__name__: library.__version__}
    if args.impl.startswith('timm-onnxruntime'):
        import onnxruntime
        info['onnxruntime'] = onnxruntime.__version__
    if args.impl == 'torchvision':
        info['gmacs'] = round(detector_gmacs(*torchvision_detector(
            args.model, args.size, args.width or args.size)), 2)
    if args.serve:
        serve(make_steps(args.model, args.impl, args.mode, args.batch_size, args.size,
                         args.threads, args.also_onnx, args.dtype, args.width), info)
        return
    result = measure(args.model, args.impl, args.mode, args.batch_size, args.size,
                     args.repeats, args.threads, args.also_onnx, args.dtype, args.width)
    print(json.dumps(dict(result, **info)))


if __name__ == '__main__':
    main()
