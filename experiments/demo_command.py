"""The command line the Fashion-MNIST demos share (train/segmentation_demo.py,
train/instance_demo.py): flags, the run or the ResNeSt vs ResNet-D comparison, errors as one
line and Ctrl-C as an exit that says what is kept."""
import json
import os
import subprocess
import sys

from gluon_resnest import list_models
from gluon_resnest.argtypes import command_parser, positive_int, seed_list
from gluon_resnest.engine.checkpoint import remove_run
from gluon_resnest.engine.cli import exit_interrupted
from gluon_resnest.runtime import quiet_native_logs
from .scenes_demo import PRETRAIN

__all__ = ['demo_arguments', 'run_demo_command']


def demo_arguments(argv, doc, data_dir, save_dir, backbone, epochs, what):
    """The parsed flags; ``save_dir`` is the run's default folder (``save_dir``-compare with
    --compare), ``what`` names the trained model in the help."""
    parser = command_parser(doc)
    parser.add_argument('--data-dir', default=data_dir)
    parser.add_argument('--save-dir', default=None, help='default: %s (%s-compare with '
                        '--compare)' % (save_dir, save_dir))
    parser.add_argument('--backbone', default=backbone, choices=list_models(), metavar='NAME')
    parser.add_argument('--epochs', type=positive_int, default=epochs, help=what + ' epochs')
    parser.add_argument('--pretrain-epochs', type=positive_int, default=PRETRAIN['epochs'],
                        help="epochs of the backbone's classification pretraining on the "
                             "training garments")
    parser.add_argument('--np', type=positive_int, default=2, help='Horovod processes')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--compare', action='store_true',
                        help='ResNeSt vs ResNet-D of the same size, over --seeds')
    parser.add_argument('--seeds', type=seed_list, default=(0, 1, 2))
    parser.add_argument('--fresh', action='store_true', help='discard earlier checkpoints')
    args = parser.parse_args(argv)
    if args.save_dir is None:
        args.save_dir = save_dir + ('-compare' if args.compare else '')
    args.save_dir = os.path.abspath(args.save_dir)
    return args


def run_demo_command(args, run, compare):
    """``run(data_dir, save_dir, processes, seed, pretrain=, backbone=, epochs=)`` (the demo)
    or ``compare(data_dir, save_root, seeds=, processes=, pretrain=, epochs=)``; prints the
    summary or the table as JSON."""
    quiet_native_logs()  # MXNet's C++ notices would break the progress bars
    pretrain = dict(epochs=args.pretrain_epochs)
    try:
        if args.fresh:
            remove_run(args.save_dir)
        if args.compare:
            result = compare(args.data_dir, args.save_dir, seeds=args.seeds, processes=args.np,
                             pretrain=pretrain, epochs=args.epochs)
            print(json.dumps(result['mean_std'], indent=1))
        else:
            summary = run(args.data_dir, args.save_dir, args.np, args.seed, pretrain=pretrain,
                          backbone=args.backbone, epochs=args.epochs)
            print(json.dumps(summary, indent=1))
    except KeyboardInterrupt:
        exit_interrupted(args.save_dir)
    except subprocess.CalledProcessError as err:
        sys.exit('error: training failed (exit status %d); its output is above'
                 % err.returncode)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        sys.exit('error: %s' % err)
