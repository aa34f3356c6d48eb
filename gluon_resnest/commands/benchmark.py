"""Speed, memory, parameters and FLOPs of a zoo model, optionally against GluonCV's model of the
same name, or against the model's own ONNX export in ONNX Runtime (inference), measured the same
way in the same process. Prints one JSON line per measurement.

    python eval/benchmark.py --model resnest50 --compare gluoncv
    python eval/benchmark.py --model resnest50 --mode inference --compare onnxruntime
    python eval/benchmark.py --model resnest50 --mode training --compare no-dropblock
"""
import argparse
import json
import os
import tempfile

import mxnet as mx

from .. import get_model, get_model_info, list_models
from ..analysis import (INFERENCE_BATCH, TRAINING_BATCH, TRAINING_SIZE,
                        count_flops, count_params, peak_rss_mb, time_inference,
                        time_training)
from ..analysis.benchmark import time_onnxruntime
from ..deploy import export_onnx
from ..argtypes import positive_int


def build(impl, name, mode, size, dropblock_prob):
    """An initialized network. Training uses the paper's DropBlock rate on both sides (GluonCV's
    zoo has it built in and tied to ``input_size``)."""
    if impl == 'gluoncv':
        from gluoncv.model_zoo import get_model as gluoncv_model
        net = gluoncv_model(name, input_size=size)
    else:
        net = get_model(name, dropblock_prob=dropblock_prob if mode == 'training'
                                      else 0.0)
    net.initialize(mx.init.MSRAPrelu())
    return net


def measure(impl, args, mode):
    if impl == 'onnxruntime' and mode != 'inference':
        return None  # ONNX Runtime's CPU provider does not train
    if impl == 'no-dropblock' and mode != 'training':
        return None  # DropBlock is an identity in inference
    size = args.size if mode == 'inference' else args.train_size
    net = build('gluon_resnest' if impl in ('onnxruntime', 'no-dropblock') else impl, args.model,
                mode, size, 0.0 if impl == 'no-dropblock' else args.dropblock_prob)
    if impl == 'onnxruntime':
        with tempfile.TemporaryDirectory() as tmp:
            path = export_onnx(net, os.path.join(tmp, 'model.onnx'), (1, 3, size, size))
            result = time_onnxruntime(path, args.batch_size, size, repeats=args.repeats)
        batch = args.batch_size
    elif mode == 'inference':
        result = time_inference(net, args.batch_size, size, repeats=args.repeats)
        batch = args.batch_size
    else:
        result = time_training(net, args.train_batch_size, size, repeats=args.train_repeats)
        batch = args.train_batch_size
    record = dict(model=args.model, impl=impl, mode=mode, batch_size=batch, size=size,
                  params=count_params(net), **{k: round(v, 3) if isinstance(v, float) else v
                                               for k, v in result.items()})
    if impl == 'gluon_resnest':
        record['gflops'] = round(count_flops(net, (1, 3, args.size, args.size)) / 1e9, 3)
    record['peak_rss_mb'] = round(peak_rss_mb(), 1)
    record['omp_threads'] = os.environ.get('OMP_NUM_THREADS', 'mxnet default')
    return record


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--model', default='resnest50', choices=list_models())
    parser.add_argument('--mode', choices=['inference', 'training', 'both'], default='both')
    parser.add_argument('--batch-size', type=positive_int, default=INFERENCE_BATCH,
                        help='inference batch')
    parser.add_argument('--size', type=positive_int, default=None,
                        help="inference crop (default: the model's eval crop)")
    parser.add_argument('--train-batch-size', type=positive_int, default=TRAINING_BATCH)
    parser.add_argument('--train-size', type=positive_int, default=TRAINING_SIZE)
    parser.add_argument('--repeats', type=positive_int, default=10)
    parser.add_argument('--train-repeats', type=positive_int, default=5)
    parser.add_argument('--dropblock-prob', type=float, default=0.1,
                        help='DropBlock rate while training (GluonCV builds 0.1 in)')
    parser.add_argument('--compare', choices=['gluoncv', 'onnxruntime', 'no-dropblock'],
                        default=None,
                        help="also measure GluonCV's model of the same name, this model "
                             "exported to ONNX in ONNX Runtime (inference only), or this model "
                             "training without DropBlock (DropBlock's cost), and print the "
                             "ratio")
    args = parser.parse_args(argv)
    if args.size is None:
        args.size = get_model_info(args.model).eval_crop
    modes = ['inference', 'training'] if args.mode == 'both' else [args.mode]
    impls = ['gluon_resnest'] + ([args.compare] if args.compare else [])
    for mode in modes:
        results = {impl: measure(impl, args, mode) for impl in impls}
        results = {impl: record for impl, record in results.items() if record is not None}
        for record in results.values():
            print(json.dumps(record), flush=True)
        if args.compare in results:
            ratio = results['gluon_resnest']['img_per_s'] / results[args.compare]['img_per_s']
            print(json.dumps(dict(model=args.model, mode=mode, compare=args.compare,
                                  speedup=round(ratio, 2))), flush=True)


if __name__ == '__main__':
    main()
