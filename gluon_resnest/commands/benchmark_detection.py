"""Faster R-CNN FPN inference, ours against GluonCV's model with the same weights, steps
alternating in one process, with the time of each stage (trunk, FPN, RPN, RoI head); with
--torchvision also torchvision's fasterrcnn_resnet50_fpn from the peers' environment (make
bench-env) in the same rounds, as context. One JSON line per model. With --training, where a
training step's time goes instead (random images and boxes; MXNet's per-operator totals):

    python eval/benchmark_detection.py --backbone resnest50 --short 800 --long 1216 --torchvision
    MXNET_ENGINE_TYPE=NaiveEngine OMP_NUM_THREADS=1 python eval/benchmark_detection.py \
        --training --model mask_rcnn_fpn --backbone resnest14_small --head light --short 128 \
        --batch-size 4 --num-sample 128 --rpn-train-post-nms 300     # the instance demo's step
"""
import json
import sys

from ..argtypes import add_peer_python, command_parser, positive_int
from ..runtime import quiet_native_logs


def main(argv=None):
    quiet_native_logs()
    parser = command_parser(__doc__)
    parser.add_argument('--backbone', default='resnest50',
                        help='a trunk GluonCV publishes faster_rcnn_fpn_syncbn_*_coco for')
    parser.add_argument('--short', type=positive_int, default=800)
    parser.add_argument('--long', type=positive_int, default=1216)
    parser.add_argument('--repeats', type=positive_int, default=3)
    parser.add_argument('--torchvision', action='store_true',
                        help="also time torchvision's fasterrcnn_resnet50_fpn (random weights) "
                             "in the peers' environment")
    add_peer_python(parser, 'torchvision')
    parser.add_argument('--training', action='store_true',
                        help="profile a training step at --short px (square) instead")
    parser.add_argument('--model', default='mask_rcnn_fpn', help='--training: the detector')
    parser.add_argument('--head', default='light', help='--training: gluoncv or light')
    parser.add_argument('--batch-size', type=positive_int, default=4)
    parser.add_argument('--num-sample', type=positive_int, default=512,
                        help='--training: RoIs sampled per image')
    parser.add_argument('--rpn-train-post-nms', type=positive_int, default=2000)
    parser.add_argument('--steps', type=positive_int, default=10)
    args = parser.parse_args(argv)
    from ..analysis.detection_speed import detection_speed, training_step_profile
    try:
        if args.training:
            records = [training_step_profile(
                args.model, args.backbone, args.head, args.short, args.batch_size,
                steps=args.steps, num_sample=args.num_sample,
                rpn_train_post_nms=args.rpn_train_post_nms)]
        else:
            records = detection_speed(args.backbone, (args.short, args.long),
                                      repeats=args.repeats, peer_python=args.peer_python
                                      if args.torchvision else None)
    except (FileNotFoundError, RuntimeError, ValueError) as err:
        sys.exit('error: %s' % err)
    for record in records:
        print(json.dumps(record), flush=True)


if __name__ == '__main__':
    main()
