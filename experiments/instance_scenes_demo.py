"""Instance segmentation demo on Fashion-MNIST instance scenes: build the scenes (COCO layout),
pretrain a small ResNeSt on the garments, train Mask R-CNN with FPN under horovodrun, evaluate
the test scenes once (box and mask AP), draw them, export, and print a summary:

    python train/instance_demo.py                              # make instance-demo
    python train/instance_demo.py --compare --seeds 0,1,2      # ResNeSt vs ResNet-D

Re-running resumes; --fresh starts over.
"""
import argparse
import json
import os
import subprocess
import sys

from gluon_resnest import list_models
from gluon_resnest.argtypes import positive_int, seed_list
from gluon_resnest.engine.checkpoint import remove_run
from gluon_resnest.engine.cli import exit_interrupted
from gluon_resnest.runtime import quiet_native_logs
from .instance_demo import INSTANCE_DEMO, compare_instance_backbones, run_instance_demo
from .scenes_demo import PRETRAIN


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--data-dir', default=os.path.join('data', 'fashion-mnist-instances'))
    parser.add_argument('--save-dir', default=None, help='default: runs/instances (runs/'
                        'instances-compare with --compare)')
    parser.add_argument('--backbone', default=INSTANCE_DEMO['backbone'], choices=list_models(),
                        metavar='NAME')
    parser.add_argument('--epochs', type=positive_int, default=INSTANCE_DEMO['epochs'],
                        help='Mask R-CNN epochs')
    parser.add_argument('--pretrain-epochs', type=positive_int, default=PRETRAIN['epochs'],
                        help="epochs of the backbone's classification pretraining")
    parser.add_argument('--np', type=positive_int, default=2, help='Horovod processes')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--compare', action='store_true',
                        help='ResNeSt vs ResNet-D of the same size, over --seeds')
    parser.add_argument('--seeds', type=seed_list, default=(0, 1, 2))
    parser.add_argument('--fresh', action='store_true', help='discard earlier checkpoints')
    args = parser.parse_args(argv)
    if args.save_dir is None:
        args.save_dir = os.path.join('runs', 'instances-compare' if args.compare
                                     else 'instances')
    args.save_dir = os.path.abspath(args.save_dir)
    return args


def main(argv=None):
    quiet_native_logs()  # MXNet's C++ notices would break the progress bars
    args = parse_args(argv)
    pretrain = dict(epochs=args.pretrain_epochs)
    try:
        if args.fresh:
            remove_run(args.save_dir)
        if args.compare:
            result = compare_instance_backbones(args.data_dir, args.save_dir, seeds=args.seeds,
                                                processes=args.np, pretrain=pretrain,
                                                epochs=args.epochs)
            print(json.dumps(result['mean_std'], indent=1))
        else:
            summary = run_instance_demo(args.data_dir, args.save_dir, args.np, args.seed,
                                        pretrain=pretrain, backbone=args.backbone,
                                        epochs=args.epochs)
            print(json.dumps(summary, indent=1))
    except KeyboardInterrupt:
        exit_interrupted(args.save_dir)
    except subprocess.CalledProcessError as err:
        sys.exit('error: training failed (exit status %d); its output is above'
                 % err.returncode)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        sys.exit('error: %s' % err)


if __name__ == '__main__':
    main()
