"""Top-1/top-5 on a RecordIO validation set of a zoo model with a .params file, a training
checkpoint, or an exported symbol; under horovodrun the counts are summed exactly.

    python eval/evaluate.py --checkpoint runs/fashion-mnist/best \\
        --rec-val data/fashion-mnist/test.rec
    python eval/evaluate.py --model resnest50 --params resnest50-bcfefe1d.params --rec-val val.rec
    python eval/evaluate.py --model resnest50 --symbol deploy/r50-symbol.json \\
        --params deploy/r50-0000.params --rec-val val.rec
"""
import json
import sys

from ..runtime import quiet_native_logs
from ..analysis import time_inference
from ..analysis.accuracy import (calibration_images, evaluate_records,
                                 load_network)
from ..argtypes import command_parser, non_negative_int, positive_int
from ..deploy import BACKENDS, default_backend, optimize_for_cpu
from ..deploy.optimize import CALIB_MODES, INT8_GRANULARITIES
from ..classification.data import RecordError
from ..engine.distributed import Comm, device


def main(argv=None):
    quiet_native_logs()  # MXNet's C++ notices would break the progress bars
    parser = command_parser(__doc__)
    parser.add_argument('--rec-val', required=True, help='RecordIO file (its .idx beside it)')
    parser.add_argument('--model', help='zoo name (preprocessing and architecture)')
    parser.add_argument('--params', help='.params file')
    parser.add_argument('--symbol', help='exported -symbol.json (with --params)')
    parser.add_argument('--checkpoint', help='a checkpoint folder written by train/train.py')
    parser.add_argument('--classes', type=positive_int, default=None)
    parser.add_argument('--crop', type=positive_int, default=None,
                        help="default: the model's eval crop")
    parser.add_argument('--batch-size', type=positive_int, default=64)
    parser.add_argument('--workers', type=non_negative_int, default=2)
    parser.add_argument('--backend', default=None, choices=BACKENDS,
                        help='inference backend: fp32 (hybridized), onednn (fusion, BatchNorm '
                             'folded: the default on the CPU, fp32 on a GPU), int8, bf16')
    parser.add_argument('--rec-calib', help='RecordIO images for INT8 calibration (use training '
                        'data, not the evaluation set)')
    parser.add_argument('--calib-images', type=positive_int, default=512)
    parser.add_argument('--calib-mode', default='naive', choices=CALIB_MODES,
                        help='INT8 activation ranges: min/max, or minimal KL divergence')
    parser.add_argument('--int8-granularity', default='tensor-wise', choices=INT8_GRANULARITIES,
                        help='INT8 weight scales per tensor or per output channel')
    parser.add_argument('--int8-fp32-ends', action='store_true',
                        help='keep the first convolution and the classifier in float32')
    parser.add_argument('--no-progress', action='store_true', help='no progress bar')
    args = parser.parse_args(argv)
    comm = Comm()
    ctx = device(comm.local_rank)
    args.backend = args.backend or default_backend(ctx)
    try:
        net, info, classes = load_network(args.model, args.params, args.symbol, args.checkpoint,
                                          args.classes, ctx)
        crop = args.crop or info.eval_crop
        shape = (args.batch_size, 3, crop, crop)
        if args.backend != 'fp32':
            if args.backend == 'int8' and not args.rec_calib:
                raise ValueError('--backend int8 needs --rec-calib (calibration images)')
            calib = calibration_images(info, args.rec_calib, args.calib_images, crop) \
                if args.backend == 'int8' else None
            net = optimize_for_cpu(net, args.backend, shape, calib, args.calib_mode,
                                   args.int8_granularity, args.int8_fp32_ends)
        result = evaluate_records(net, info, args.rec_val, classes or args.classes,
                                  args.batch_size, args.crop, args.workers, comm, ctx,
                                  hybridize=args.backend == 'fp32',
                                  progress=not args.no_progress)
        speed = time_inference(net, args.batch_size, crop, hybridize=args.backend == 'fp32')
    except (ValueError, FileNotFoundError, RecordError) as err:
        sys.exit('error: %s' % err)
    if comm.rank == 0:
        int8 = dict(calib_mode=args.calib_mode, int8_granularity=args.int8_granularity,
                    int8_fp32_ends=args.int8_fp32_ends) if args.backend == 'int8' else {}
        print(json.dumps(dict(model=info.name, rec=args.rec_val, backend=args.backend, **int8,
                              img_per_s=round(speed['img_per_s'], 1), **result)))


if __name__ == '__main__':
    main()
