"""The main job: Fashion-MNIST to RecordIO (a class-balanced validation split held out of the
training images), 2-process Horovod training of a small ResNeSt with the best epoch chosen on
validation, one evaluation of that checkpoint on the test set, export for deployment, and a
summary.

    python train/fashion_mnist.py                 # defaults: 8-16 minutes on 2 CPU cores
    python train/fashion_mnist.py --longer        # the longer setting (see README)

Any other train/train.py flag (e.g. --autoaugment, --dropblock-prob 0) is passed through.
"""
import json
import os
import subprocess
import sys

from gluon_resnest.runtime import quiet_native_logs
from gluon_resnest import export_model, list_models
from gluon_resnest.analysis.accuracy import evaluate_records, load_network
from gluon_resnest.argtypes import command_parser, positive_int
from gluon_resnest.engine.checkpoint import RunClock, read_meta, remove_run, write_json
from gluon_resnest.engine.cli import config_from_args, config_parser, exit_interrupted
from gluon_resnest.classification.task import TrainConfig
from gluon_resnest.launch import launch_training
from .fashion_mnist_data import DEFAULT_SOURCE, build_fashion_mnist

# model, epochs, weight decay and save dir of the default run and of the longer setting
# (--longer); 5e-4 is the usual decay for 28-32 px datasets, the paper's 1e-4 is ImageNet's
DEFAULT = dict(model='resnest14_small', epochs=7, wd=1e-4,
               save_dir=os.path.join('runs', 'fashion-mnist'))
LONGER = dict(model='resnest14_small_s1', epochs=60, wd=5e-4,
              save_dir=os.path.join('runs', 'fashion-mnist-longer'))


def training_config(args, extra):
    """The TrainConfig of the main job's ranks: its settings, with any train/train.py flag of
    ``extra`` on top; checked here, so a bad value is one line from this process, not a
    traceback from inside horovodrun."""
    rec = {split: os.path.join(args.data_dir, split + '.rec') for split in ('train', 'val')}
    settings = dict(model=args.model, classes=10, rec_train=rec['train'], rec_val=rec['val'],
                    save_dir=args.save_dir, epochs=args.epochs, batch_size=args.batch_size,
                    base_lr=args.base_lr, wd=args.wd, warmup_epochs=1,
                    mixup_alpha=args.mixup_alpha, min_scale=args.min_scale, jitter=args.jitter,
                    lighting=args.lighting, workers=2, resume=True)
    parser = config_parser(TrainConfig, 'train/train.py flags passed through by the main job',
                           defaults=settings)
    cfg = config_from_args(parser.parse_args(extra), TrainConfig)
    try:
        cfg.validate()
    except ValueError as err:
        sys.exit('error: %s' % err)
    return cfg


def parse_args(argv=None):
    """(args, flags passed through to train/train.py)."""
    parser = command_parser(__doc__)
    parser.add_argument('--source', default=DEFAULT_SOURCE,
                        help='folder of the raw Fashion-MNIST idx files')
    parser.add_argument('--data-dir', default=os.path.join('data', 'fashion-mnist'))
    parser.add_argument('--longer', action='store_true',
                        help='the longer setting: %(model)s for %(epochs)d epochs' % LONGER)
    parser.add_argument('--model', default=None, choices=list_models(), metavar='NAME',
                        help='default: %s (%s with --longer)' % (DEFAULT['model'],
                                                                 LONGER['model']))
    parser.add_argument('--save-dir', default=None, help='default: %s (%s with --longer)' % (
        DEFAULT['save_dir'], LONGER['save_dir']))
    parser.add_argument('--np', type=positive_int, default=2, help='Horovod processes')
    parser.add_argument('--epochs', type=positive_int, default=None,
                        help='default: %d (%d with --longer)'
                        % (DEFAULT['epochs'], LONGER['epochs']))
    parser.add_argument('--batch-size', type=positive_int, default=128, help='per process')
    parser.add_argument('--base-lr', type=float, default=0.2)
    parser.add_argument('--wd', type=float, default=None, help='weight decay; default: %g (%g '
                        'with --longer)' % (DEFAULT['wd'], LONGER['wd']))
    parser.add_argument('--mixup-alpha', type=float, default=0.0,
                        help='mixup needs long schedules; the paper uses 0.2')
    parser.add_argument('--min-scale', type=float, default=0.8,
                        help='random resized crop area range: 28 px images want little cropping')
    parser.add_argument('--jitter', type=float, default=0.0,
                        help='color jitter (grayscale images: brightness/contrast only matter)')
    parser.add_argument('--lighting', type=float, default=0.0, help='PCA lighting noise')
    parser.add_argument('--fresh', action='store_true', help='discard earlier checkpoints')
    parser.add_argument('--threaded-engine', action='store_true',
                        help="MXNet's default threaded engine for the ranks: its oneDNN kernels "
                             "make runs differ in the last bits; by default the ranks use the "
                             "naive engine, so a run (resumed or not) replays exactly")
    args, extra = parser.parse_known_args(argv)
    for key, value in (LONGER if args.longer else DEFAULT).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.save_dir = os.path.abspath(args.save_dir)
    return args, extra


def main(argv=None):
    quiet_native_logs()  # MXNet's C++ notices would break the progress bars
    args, extra = parse_args(argv)
    training_config(args, extra)  # bad flags: an error before the data are built
    if args.fresh:
        try:
            remove_run(args.save_dir)
        except FileExistsError as err:
            sys.exit('error: %s' % err)
    print(json.dumps(run_main_job(args, extra), indent=1))


def _say(message):
    print(message, flush=True)


def run_main_job(args, extra, log=_say):
    """Records, training under horovodrun, one test evaluation, export; returns the summary
    (also written to ``args.save_dir/summary.json``). Exits with a message if training fails.
    Its wall times count every invocation of the run (an interrupted run resumed)."""
    with RunClock(args.save_dir) as clock:
        return _main_job(args, extra, log, clock)


def _main_job(args, extra, log, clock):
    log('[1/4] Fashion-MNIST -> RecordIO in %s (train / validation / test)' % args.data_dir)
    rec = build_fashion_mnist(args.data_dir, args.source)

    log('[2/4] training %s on %d process(es), %d epochs; best epoch chosen on validation'
        % (args.model, args.np, args.epochs))
    # the naive engine: bitwise reproducible, no slower for this model here
    try:
        launch_training('classification', training_config(args, extra), args.np,
                        os.path.join(args.save_dir, 'ranks.log'),
                        naive_engine=not args.threaded_engine)
    except FileNotFoundError as err:
        sys.exit('error: %s' % err)
    except subprocess.CalledProcessError as err:
        sys.exit('error: training failed (exit status %d)' % err.returncode)
    except KeyboardInterrupt:
        exit_interrupted(args.save_dir)
    train_seconds = clock.seconds()
    clock.save()

    log('[3/4] evaluating the checkpoint chosen on validation on the test set (its only use)')
    best = os.path.join(args.save_dir, 'best')
    net, info, classes = load_network(checkpoint=best)
    # the preprocessing the run validated with (a model may train at another size than its
    # ImageNet crop, e.g. FBNet at 32 px)
    meta = read_meta(best)
    config = meta['config']
    size = config.get('input_size') or info.input_size
    test = evaluate_records(net, info, rec['test'], classes, batch_size=256, crop=size,
                            crop_ratio=config.get('crop_ratio') or info.crop_ratio)

    log('[4/4] exporting for deployment')
    prefix = os.path.join(args.save_dir, 'deploy', args.model)
    sym_file, params_file = export_model(net, prefix, (1, 3, size, size))
    history = [json.loads(line) for line in open(os.path.join(args.save_dir, 'metrics.jsonl'))]
    chosen = history[meta['epoch']]
    summary = dict(val_top1=round(chosen['val_top1'], 2), selected_epoch=chosen['epoch'],
                   test_top1=round(test['top1'], 2), test_top5=round(test['top5'], 2),
                   test_samples=test['samples'], epochs=len(history),
                   train_img_per_s=round(history[-1]['img_per_s'], 1),
                   wall_seconds=round(clock.seconds(), 1), invocations=clock.invocations,
                   train_seconds=round(train_seconds, 1), processes=args.np, model=args.model,
                   checkpoints=os.path.join(args.save_dir, 'best'),
                   curves=os.path.join(args.save_dir, 'curves.png'),
                   metrics=os.path.join(args.save_dir, 'metrics.jsonl'),
                   symbol=sym_file, params=params_file)
    write_json(os.path.join(args.save_dir, 'summary.json'), summary)
    return summary


if __name__ == '__main__':
    main()
