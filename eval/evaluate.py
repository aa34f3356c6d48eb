"""Top-1/top-5 on a RecordIO validation set of a zoo model with a .params file, a training
checkpoint, or an exported symbol; under horovodrun the counts are summed exactly.

    python eval/evaluate.py --checkpoint runs/fashion-mnist/best --rec-val data/fashion-mnist/test.rec
    python eval/evaluate.py --model resnest50 --params resnest50-bcfefe1d.params --rec-val val.rec
    python eval/evaluate.py --model resnest50 --symbol deploy/r50-symbol.json \\
        --params deploy/r50-0000.params --rec-val val.rec
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

from gluon_resnest.analysis.accuracy import evaluate_records, load_network  # noqa: E402
from gluon_resnest.training.data import RecordError  # noqa: E402
from gluon_resnest.training.distributed import Comm, device  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--rec-val', required=True, help='RecordIO file (its .idx beside it)')
    parser.add_argument('--model', help='zoo name (preprocessing and architecture)')
    parser.add_argument('--params', help='.params file')
    parser.add_argument('--symbol', help='exported -symbol.json (with --params)')
    parser.add_argument('--checkpoint', help='a checkpoint folder written by train/train.py')
    parser.add_argument('--classes', type=int, default=None)
    parser.add_argument('--crop', type=int, default=None, help="default: the model's eval crop")
    parser.add_argument('--batch-size', type=int, default=64)
    parser.add_argument('--workers', type=int, default=2)
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error('--batch-size must be positive')
    comm = Comm()
    ctx = device(comm.local_rank)
    try:
        net, info, classes = load_network(args.model, args.params, args.symbol, args.checkpoint,
                                          args.classes, ctx)
        result = evaluate_records(net, info, args.rec_val, classes or args.classes,
                                  args.batch_size, args.crop, args.workers, comm, ctx)
    except (ValueError, FileNotFoundError, RecordError) as err:
        sys.exit('error: %s' % err)
    if comm.rank == 0:
        print(json.dumps(dict(model=info.name, rec=args.rec_val, **result)))


if __name__ == '__main__':
    main()
