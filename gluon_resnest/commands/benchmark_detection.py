"""Faster R-CNN FPN inference, ours against GluonCV's model with the same weights, steps
alternating in one process, with the time of each stage (trunk, FPN, RPN, RoI head); one JSON
line per model:

    python eval/benchmark_detection.py --backbone resnest50 --short 800 --long 1216
"""
import argparse
import json

from ..argtypes import positive_int
from ..runtime import quiet_native_logs


def main(argv=None):
    quiet_native_logs()
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--backbone', default='resnest50',
                        help='a trunk GluonCV publishes faster_rcnn_fpn_syncbn_*_coco for')
    parser.add_argument('--short', type=positive_int, default=800)
    parser.add_argument('--long', type=positive_int, default=1216)
    parser.add_argument('--repeats', type=positive_int, default=3)
    args = parser.parse_args(argv)
    from ..analysis.detection_speed import detection_speed
    for record in detection_speed(args.backbone, (args.short, args.long),
                                  repeats=args.repeats):
        print(json.dumps(record), flush=True)


if __name__ == '__main__':
    main()
