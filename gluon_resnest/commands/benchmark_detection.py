"""Faster R-CNN FPN inference, ours against GluonCV's model with the same weights, steps
alternating in one process, with the time of each stage (trunk, FPN, RPN, RoI head); with
--torchvision also torchvision's fasterrcnn_resnet50_fpn from the peers' environment (make
bench-env) in the same rounds, as context. One JSON line per model:

    python eval/benchmark_detection.py --backbone resnest50 --short 800 --long 1216 --torchvision
"""
import argparse
import json
import sys

from ..argtypes import add_peer_python, positive_int
from ..runtime import quiet_native_logs


def main(argv=None):
    quiet_native_logs()
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--backbone', default='resnest50',
                        help='a trunk GluonCV publishes faster_rcnn_fpn_syncbn_*_coco for')
    parser.add_argument('--short', type=positive_int, default=800)
    parser.add_argument('--long', type=positive_int, default=1216)
    parser.add_argument('--repeats', type=positive_int, default=3)
    parser.add_argument('--torchvision', action='store_true',
                        help="also time torchvision's fasterrcnn_resnet50_fpn (random weights) "
                             "in the peers' environment")
    add_peer_python(parser, 'torchvision')
    args = parser.parse_args(argv)
    from ..analysis.detection_speed import detection_speed
    try:
        records = detection_speed(args.backbone, (args.short, args.long), repeats=args.repeats,
                                  peer_python=args.peer_python if args.torchvision else None)
    except (FileNotFoundError, RuntimeError) as err:
        sys.exit('error: %s' % err)
    for record in records:
        print(json.dumps(record), flush=True)


if __name__ == '__main__':
    main()
