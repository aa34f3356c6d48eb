"""Train a ResNeSt on RecordIO data with the paper's recipe, on one process or many:

    python train/train.py --model resnest50 --rec-train train.rec --rec-val val.rec
    horovodrun -np 8 -H localhost:8 python train/train.py --model resnest50 ...
"""
import sys

from ..runtime import quiet_native_logs
from ..training import train
from ..zoo.store import PretrainedWeightsError
from ..training.cli import (config_from_args, config_parser, deliver_interrupts,
                            exit_interrupted)


def main(argv=None):
    quiet_native_logs()  # MXNet's C++ notices would break the progress bars
    args = config_parser(__doc__.split('\n\n')[0]).parse_args(argv)
    deliver_interrupts()
    try:
        _, summary = train(config_from_args(args))
    except KeyboardInterrupt:
        exit_interrupted(args.save_dir)
    except (ValueError, OSError, FloatingPointError,
            PretrainedWeightsError) as err:  # OSError: files, disk, access
        sys.exit('error: %s' % err)
    if summary['final']:
        print('best val top-1 %.2f%%, checkpoints in %s' % (summary['best_top1'],
                                                            summary['save_dir']))


if __name__ == '__main__':
    main()
