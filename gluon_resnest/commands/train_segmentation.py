"""Train DeepLabV3 on a ResNeSt (or any zoo) backbone, on one process or many:

    python train/train_segmentation.py --dataset ade20k --data-root ~/data/ade --classes 150 \
        --backbone resnest50 --pretrained-base imagenet --norm frozen
    horovodrun -np 8 -H localhost:8 python train/train_segmentation.py ...
"""
from ..engine.cli import training_command
from ..segmentation.task import SegmentationTask


def main(argv=None):
    training_command(SegmentationTask(), __doc__, argv)


if __name__ == '__main__':
    main()
