"""Pixel accuracy and mIoU of a segmentation model on a dataset split, single- or multi-scale
(scales 0.5-1.75 with flips), on one process or under horovodrun (counts summed exactly):

    python eval/evaluate_segmentation.py --checkpoint runs/scenes/best --dataset voc \
        --data-root data/scenes --split test --multi-scale
"""
import json
import os
import sys

from ..runtime import quiet_native_logs
from ..argtypes import command_parser, non_negative_int, positive_int
from ..segmentation.data import DATASETS, SegmentationDataError
from ..segmentation.evaluate import evaluate_split, load_segmentation
from ..segmentation.predict import MULTI_SCALES
from ..engine.checkpoint import check_output_file, write_json


def main(argv=None):
    quiet_native_logs()  # MXNet's C++ notices would break the progress bars
    parser = command_parser(__doc__)
    parser.add_argument('--checkpoint', help='a checkpoint folder the trainer wrote')
    parser.add_argument('--symbol', help='exported -symbol.json (with --params)')
    parser.add_argument('--params')
    parser.add_argument('--backbone', help="names the preprocessing of an exported graph "
                        "(default: the export's -meta.json)")
    parser.add_argument('--dataset', choices=DATASETS, default='voc')
    parser.add_argument('--data-root', required=True)
    parser.add_argument('--split', default='val')
    parser.add_argument('--classes', type=positive_int, help='default: the checkpoint\'s')
    parser.add_argument('--multi-scale', action='store_true',
                        help='scales %s with flips' % ', '.join(map(str, MULTI_SCALES)))
    parser.add_argument('--batch-size', type=positive_int, default=1,
                        help='images per batch (images of one size are batched together)')
    parser.add_argument('--workers', type=non_negative_int, default=0)
    parser.add_argument('--out', help='also write the scores (with per-class IoU) to this JSON '
                        'file')
    parser.add_argument('--no-progress', action='store_true')
    args = parser.parse_args(argv)
    try:
        if args.out:
            check_output_file(args.out)  # before the evaluation, not after it
        net, config = load_segmentation(args.checkpoint, args.symbol, args.params,
                                        args.backbone)
        if args.classes and config.get('classes') and args.classes != config['classes']:
            raise ValueError('--classes %d, but %s has %d classes (leave --classes out)'
                             % (args.classes, args.checkpoint or args.symbol,
                                config['classes']))
        classes = args.classes or config.get('classes')
        if not classes:
            raise ValueError('--classes is required with an exported graph')
        scales, flip = (MULTI_SCALES, True) if args.multi_scale else ((1.0,), False)
        scores = evaluate_split(net, args.dataset, args.data_root, args.split, classes,
                                config['backbone'], scales, flip, args.batch_size,
                                args.workers, config.get('ignore_label', 255),
                                progress=not args.no_progress)
    except (ValueError, FileNotFoundError, SegmentationDataError) as err:
        sys.exit('error: %s' % err)
    if int(os.environ.get('HOROVOD_RANK', 0)) == 0:
        print(json.dumps(dict(split=args.split, multi_scale=args.multi_scale,
                              miou=round(scores['miou'], 2),
                              pixel_acc=round(scores['pixel_acc'], 2),
                              pixels=scores['pixels'])))
        if args.out:
            write_json(args.out, dict(scores, split=args.split, multi_scale=args.multi_scale))


if __name__ == '__main__':
    main()
