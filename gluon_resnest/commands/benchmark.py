"""Speed, memory, parameters and FLOPs of a zoo model, optionally against what a user would pick
instead, measured the same way in one run: GluonCV's model of the same name, the model's own ONNX
export in ONNX Runtime (inference), timm's model on PyTorch or timm's ONNX export in ONNX Runtime
(in the peers' separate environment, `make bench-env`). Prints one JSON line per measurement,
each with the machine's measured convolution peak and the fraction of it the figure reaches.

    python eval/benchmark.py --model resnest50 --compare gluoncv
    python eval/benchmark.py --model resnest50 --mode inference --compare onnxruntime
    python eval/benchmark.py --model resnest50 --compare timm,timm-onnxruntime
    python eval/benchmark.py --model resnest50 --mode inference --backend int8 \
        --compare timm-onnxruntime-int8
    python eval/benchmark.py --model resnest50 --mode training --compare no-dropblock
    python eval/benchmark.py --model resnest14_small --mode training --train-size 28 \
        --train-batch-size 128 --classes 10 --compare trainer \
        --rec-train data/fashion-mnist/train.rec --rec-val data/fashion-mnist/val.rec
"""
import argparse
import json

from ..analysis import INFERENCE_BATCH, TRAINING_BATCH, TRAINING_SIZE
from ..analysis.compare import COMPARISONS, BenchmarkSettings, check_settings, run_benchmark
from ..argtypes import add_peer_python, command_parser, positive_int
from ..deploy import BACKENDS
from ..runtime import quiet_native_logs
from ..zoo.registry import list_models


def _comparisons(text):
    names = [name for name in text.split(',') if name]
    unknown = sorted(set(names) - set(COMPARISONS))
    if unknown or not names:
        raise argparse.ArgumentTypeError('%r: choose from %s (comma-separated)'
                                         % (text, ', '.join(COMPARISONS)))
    return names


def main(argv=None):
    quiet_native_logs()  # MXNet's C++ notices would break the progress bars
    parser = command_parser(__doc__)
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
    parser.add_argument('--compare', type=_comparisons, default=[],
                        help="also measure (comma-separated): gluoncv (GluonCV's model of the "
                             "same name), onnxruntime (this model's ONNX export, inference), "
                             "no-dropblock (training without DropBlock: its cost), band-growth "
                             "(training with DropBlock's band-matrix growth instead of the "
                             "depthwise convolution), timm "
                             "(timm's model on PyTorch), timm-onnxruntime (timm's ONNX "
                             "export, with ours beside it), timm-onnxruntime-int8 (timm's export "
                             "quantized by ONNX Runtime: static QDQ, per channel), trainer "
                             "(train/train.py on --rec-train in --np Horovod processes beside "
                             "the model alone in as many processes: the data pipeline's and "
                             "communication's cost); prints each ratio, always between the same "
                             "dtypes")
    parser.add_argument('--classes', type=positive_int, default=1000)
    parser.add_argument('--rec-train', help='RecordIO training data (--compare trainer)')
    parser.add_argument('--rec-val', help='RecordIO validation data (--compare trainer)')
    parser.add_argument('--np', type=positive_int, default=2,
                        help='processes (--compare trainer)')
    parser.add_argument('--iterations', type=positive_int, default=100,
                        help='timed trainer steps per process (--compare trainer)')
    parser.add_argument('--backend', choices=BACKENDS,
                        help='inference path of this project (and of GluonCV with --compare '
                             'gluoncv): onednn (fusion, BatchNorm folded; what evaluate.py uses '
                             'on the CPU; the default), fp32 (hybridized), int8 (calibrated on '
                             'random images: speed only), bf16 (timm runs under '
                             'torch.autocast(bfloat16) beside it)')
    parser.add_argument('--amp', action='store_true',
                        help='train in mixed precision (bfloat16 on the CPU, as train.py --amp; '
                             'timm beside it under torch.autocast(bfloat16))')
    parser.add_argument('--rounds', type=positive_int, default=1,
                        help='measure every implementation this many times, in turn, and report '
                             "each one's median (within a round the steps of all of them "
                             'alternate already)')
    parser.add_argument('--no-peak', action='store_true',
                        help='skip measuring the convolution peak')
    add_peer_python(parser, 'timm')
    args = parser.parse_args(argv)
    settings = BenchmarkSettings(**vars(args))
    try:
        check_settings(settings)
    except ValueError as err:
        parser.error(str(err))
    try:
        run_benchmark(settings, lambda record: print(json.dumps(record), flush=True))
    except (FileNotFoundError, RuntimeError, ValueError) as err:
        raise SystemExit('error: %s' % err)


if __name__ == '__main__':
    main()
