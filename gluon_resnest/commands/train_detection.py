"""Train Faster or Mask R-CNN with FPN on a ResNeSt (or any zoo) backbone, on one process or
many, with the paper's 1x recipe by default:

    python train/train_detection.py --layout coco --data-root ~/data/coco \\
        --model mask_rcnn_fpn --backbone resnest50 --pretrained-base imagenet
    horovodrun -np 8 -H localhost:8 python train/train_detection.py ...
    python train/train_detection.py --layout coco-json --data-root images/ \\
        --train-annotations train.json --val-annotations val.json --norm bn
"""
from ..detection.task import DetectionTask
from ..engine.cli import training_command


def main(argv=None):
    training_command(DetectionTask(), __doc__, argv)


if __name__ == '__main__':
    main()
