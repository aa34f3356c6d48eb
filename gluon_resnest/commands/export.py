"""Export a model for deployment as an MXNet symbol (and optionally ONNX), then reload the files
and check they give the network's outputs.

    python eval/export.py --checkpoint runs/fashion-mnist/best --out deploy/fmnist --onnx
    python eval/export.py --model resnest50 --pretrained --out deploy/resnest50 --preprocess
    python eval/export.py --checkpoint runs/scenes/best --out deploy/scenes --onnx
    python eval/export.py --checkpoint runs/detection/best --out deploy/detector

Beside the files, ``PREFIX-meta.json`` records the model, its classes and normalization.
"""
import argparse
import json
import sys

import mxnet as mx
import numpy as np

from ..runtime import quiet_native_logs
from .. import PretrainedWeightsError, export_model, export_onnx, get_model  # noqa
from ..analysis.accuracy import load_network
from ..deploy.export import import_symbol
from ..engine.checkpoint import read_meta
from ..argtypes import positive_int
from ..zoo import get_model_info


def _reference_input(info, shape, preprocess):
    pixels = np.random.RandomState(0).uniform(0, 255, shape).astype('float32')
    if not preprocess:
        return pixels, pixels
    mean, std = np.array(info.mean) * 255, np.array(info.std) * 255
    return pixels, ((pixels - mean) / std).transpose(0, 3, 1, 2).astype('float32')


def _shape(args, size):
    return ((args.batch_size, size, size, 3) if args.preprocess
            else (args.batch_size, 3, size, size))


def _export_classifier(args):
    """(network, info, input shape, symbol, params, ONNX path or None) of a zoo model."""
    if args.pretrained:  # the published weights: ImageNet's 1000 classes
        net, info, classes = get_model(args.model, pretrained=True), \
            get_model_info(args.model), 1000
    else:
        net, info, classes = load_network(args.model, args.params, None, args.checkpoint)
    shape = _shape(args, args.input_size or info.eval_crop)
    preprocess = info if args.preprocess else None
    meta = dict(task='classification', model=info.name, classes=classes, mean=list(info.mean),
                std=list(info.std))
    sym, params = export_model(net, args.out, shape, preprocess=preprocess, meta=meta)
    onnx_path = export_onnx(net, args.out + '.onnx', shape, preprocess=preprocess) \
        if args.onnx else None
    return net, info, shape, sym, params, onnx_path


def _export_segmentation(args):
    """The same for a segmentation checkpoint: its main logits, at any size for the symbol
    (traced at --input-size, default the training crop), at that size for ONNX."""
    from ..segmentation.deploy import (MainOutput, export_segmentation,
                                       export_segmentation_onnx)
    from ..segmentation.evaluate import load_segmentation, segmentation_meta
    if args.preprocess and args.onnx:
        raise ValueError('--preprocess and --onnx: the segmentation ONNX file takes NCHW '
                         'normalized input; export them in two runs')
    net, config = load_segmentation(args.checkpoint)
    info = get_model_info(config['backbone'])
    shape = _shape(args, args.input_size or config['crop_size'])
    sym, params = export_segmentation(net, args.out, shape, info if args.preprocess else None,
                                      meta=segmentation_meta(config))
    onnx_path = export_segmentation_onnx(net, args.out + '.onnx', shape) if args.onnx else None
    return MainOutput(net), info, shape, sym, params, onnx_path


def _export_detection(args):
    """The same for a detection checkpoint: class ids, scores, boxes (and masks) for one image
    at any size (traced at --input-size, default the validation short side, square). No ONNX:
    MXNet 1.9.1's exporter writes a Split node onnxruntime refuses to load and cannot keep
    class-aware NMS."""
    from ..detection.task import load_detector
    if args.onnx:
        raise ValueError('--onnx: detectors do not export to ONNX (MXNet 1.9.1\'s exporter '
                         'writes a Split node onnxruntime refuses to load, and its NMS would '
                         'suppress boxes across classes); the symbol export serves any size')
    net, cfg, names, category_ids = load_detector(args.checkpoint)
    info = get_model_info(cfg.backbone)
    size = args.input_size or cfg.test_short
    shape = (1, size, size, 3) if args.preprocess else (1, 3, size, size)
    meta = dict(task='detection', model=cfg.model, backbone=cfg.backbone, classes=names,
                category_ids=category_ids, mean=list(info.mean), std=list(info.std),
                short=cfg.test_short, max_size=cfg.max_size)
    sym, params = export_model(net, args.out, shape, preprocess=info if args.preprocess
                               else None, meta=meta)
    return net, info, shape, sym, params, None


def _arrays(outputs):
    """A network's output or outputs as a list of NumPy arrays."""
    if isinstance(outputs, (list, tuple)):
        return [o.asnumpy() for o in outputs]
    return [outputs.asnumpy()]


def main(argv=None):
    quiet_native_logs()  # MXNet's C++ notices would break the progress bars
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
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
    try:
        task = read_meta(args.checkpoint).get('task') if args.checkpoint else None
        if task == 'segmentation':
            net, info, shape, sym, params, onnx_path = _export_segmentation(args)
        elif task == 'detection':
            if args.batch_size != 1:
                raise ValueError('--batch-size: a detector takes one image at a time')
            net, info, shape, sym, params, onnx_path = _export_detection(args)
        else:
            net, info, shape, sym, params, onnx_path = _export_classifier(args)
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
    report = dict(model=info.name, symbol=sym, params=params, input_shape=list(shape),
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
