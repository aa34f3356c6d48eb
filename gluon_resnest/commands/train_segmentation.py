"""Train DeepLabV3 on a ResNeSt (or any zoo) backbone, on one process or many:

    python train/train_segmentation.py --dataset ade20k --data-root ~/data/ade --classes 150 \
        --backbone resnest50 --pretrained-base imagenet --norm frozen
    horovodrun -np 8 -H localhost:8 python train/train_segmentation.py ...
"""
import sys

from ..runtime import quiet_native_logs
from ..segmentation.train import SegTrainConfig, train_segmentation
from ..zoo.store import PretrainedWeightsError
from ..training.cli import (config_from_args, config_parser, deliver_interrupts,
                            exit_interrupted)


def main(argv=None):
    quiet_native_logs()  # MXNet's C++ notices would break the progress bars
    args = config_parser(__doc__.split('\n\n')[0], config=SegTrainConfig).parse_args(argv)
    deliver_interrupts()
    try:
        _, summary = train_segmentation(config_from_args(args, SegTrainConfig))
    except KeyboardInterrupt:
        exit_interrupted(args.save_dir)
    except (ValueError, OSError, FloatingPointError,
            PretrainedWeightsError) as err:  # data errors are ValueErrors
        sys.exit('error: %s' % err)
    if summary['final']:
        print('best val mIoU %.2f%%, checkpoints in %s' % (summary['best_miou'],
                                                           summary['save_dir']))


if __name__ == '__main__':
    main()
