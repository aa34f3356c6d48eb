"""Export a model for deployment as an MXNet symbol (and optionally ONNX), then reload the files
and check they give the network's outputs.

    python eval/export.py --checkpoint runs/fashion-mnist/best --out deploy/fmnist --onnx
    python eval/export.py --model resnest50 --pretrained --out deploy/resnest50 --preprocess
    python eval/export.py --checkpoint runs/scenes/best --out deploy/scenes --onnx
    python eval/export.py --checkpoint runs/detection/best --out deploy/detector

Beside the files, ``PREFIX-meta.json`` records the model, its classes and normalization.
"""
import json
import sys

import mxnet as mx
import numpy as np

from ..analysis.accuracy import load_network
from ..argtypes import command_parser, positive_int
from ..classification.deploy import export_classifier
from ..deploy.export import import_symbol, read_export_meta
from ..runtime import quiet_native_logs
from ..tasks import export_checkpoint
from ..zoo import PretrainedWeightsError, get_model, get_model_info


def _reference_input(info, shape, preprocess):
    pixels = np.random.RandomState(0).uniform(0, 255, shape).astype('float32')
    if not preprocess:
        return pixels, pixels
    mean, std = np.array(info.mean) * 255, np.array(info.std) * 255
    return pixels, ((pixels - mean) / std).transpose(0, 3, 1, 2).astype('float32')


def _export_zoo_model(args):
    """A zoo model, its published weights or a ``.params`` file (Exported)."""
    if args.pretrained:  # the published weights: ImageNet's 1000 classes
        net, info, classes = get_model(args.model, pretrained=True), \
            get_model_info(args.model), 1000
    else:
        net, info, classes = load_network(args.model, args.params)
    return export_classifier(net, info, classes, args.out, args.input_size, args.batch_size,
                             args.preprocess, args.onnx)


def _arrays(outputs):
    """A network's output or outputs as a list of NumPy arrays."""
    if isinstance(outputs, (list, tuple)):
        return [o.asnumpy() for o in outputs]
    return [outputs.asnumpy()]


def main(argv=None):
    quiet_native_logs()  # MXNet's C++ notices would break the progress bars
    parser = command_parser(__doc__)
    parser.add_argument('--out', required=True, help='output prefix')
    parser.add_argument('--model', help='zoo name')
    parser.add_argument('--params', help='.params file for --model')
    parser.add_argument('--pretrained', action='store_true', help="the zoo's published weights")
    parser.add_argument('--checkpoint', help='a checkpoint folder written by train/train.py, '
                        'train/train_segmentation.py or train/train_detection.py')
    parser.add_argument('--input-size', type=positive_int, default=None, help="default: eval crop")
    parser.add_argument('--batch-size', type=positive_int, default=1)
    parser.add_argument('--preprocess', action='store_true',
                        help='fold mean/std in: the graph takes (N, H, W, 3) pixels in 0..255')
    parser.add_argument('--onnx', action='store_true', help='also write PREFIX.onnx')
    args = parser.parse_args(argv)
    if args.pretrained and not args.model:
        parser.error('--pretrained needs --model')
    if not (args.checkpoint or args.model):
        parser.error('pass --checkpoint (a run folder) or --model (a zoo model)')
    try:
        if args.checkpoint:  # by the export of the task the checkpoint records
            net, info, shape, sym, params, onnx_path = export_checkpoint(
                args.checkpoint, args.out, args.input_size, args.batch_size, args.preprocess,
                args.onnx)
        else:
            net, info, shape, sym, params, onnx_path = _export_zoo_model(args)
    except (ValueError, FileNotFoundError, PermissionError, PretrainedWeightsError,
            ImportError) as err:
        sys.exit('error: %s' % err)
    pixels, normalized = _reference_input(info, shape, args.preprocess)
    expected = _arrays(net(mx.nd.array(normalized)))
    reloaded = import_symbol(sym, params)
    # differences also relative to the output scale: 1e-4 means little for logits of 1e3
    scale = max(float(np.abs(e).max()) for e in expected)
    symbol_diff = max(float(np.abs(got - want).max()) for got, want in
                      zip(_arrays(reloaded(mx.nd.array(pixels))), expected))
    report = dict(model=(read_export_meta(sym) or {}).get('model', info.name), symbol=sym,
                  params=params, input_shape=list(shape),
                  input='NHWC pixels 0..255' if args.preprocess else 'NCHW normalized',
                  output_scale=scale, symbol_max_abs_diff=symbol_diff,
                  symbol_max_rel_diff=symbol_diff / max(scale, 1e-30))
    if onnx_path:
        report['onnx'] = onnx_path
        try:
            import onnxruntime as ort
        except ImportError:
            report['onnx_check'] = 'skipped: onnxruntime not installed'
        else:
            options = ort.SessionOptions()
            options.log_severity_level = 3
            sess = ort.InferenceSession(onnx_path, options, providers=['CPUExecutionProvider'])
            out = sess.run(None, {sess.get_inputs()[0].name: pixels})[0]
            report['onnx_max_abs_diff'] = float(np.abs(out - expected[0]).max())
            report['onnx_max_rel_diff'] = report['onnx_max_abs_diff'] / max(scale, 1e-30)
    print(json.dumps(report))


if __name__ == '__main__':
    main()
