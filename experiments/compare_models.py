"""Zoo models (and training recipes) compared on the main job over seeds: each trained by the
main job (best epoch on validation, the test set read once per run); writes a table and a plot
of mean ± std validation and test top-1 and training img/s, with each model's parameters and
FLOPs at its input size. Choose by the validation column: the test column is for reporting.

By default the paper's radix ablation (Table 5: 0s1x64d, 1s1x64d, 2s1x64d, 4s1x64d) in
miniature: the main job's model with radix 0 (ResNet-D), 1, 2 and 4 at matched FLOPs.

    python train/compare_models.py                       # the radix ablation, 3 seeds
    python train/compare_models.py --epochs 3 --seeds 0,1
    python train/compare_models.py --models fbnetv2_f1,sa_fbnetv2_f1 --input-size 32 \\
        --crop-ratio 1 --dropblock-prob 0 --save-dir runs/compare-fbnet
    python train/compare_models.py --models resnest14_small --recipe plain= \\
        --recipe erasing='--random-erasing 0.5' --recipe ema='--ema-decay 0.998'

Re-running resumes: finished runs are read back, an interrupted one continues from its last
epoch. Any other main-job or train/train.py flag is passed through.
"""
import argparse
import json
import os
import shlex
import sys

from gluon_resnest.runtime import quiet_native_logs
from gluon_resnest import get_model, get_model_info, list_models
from gluon_resnest.analysis import count_flops, count_params
from gluon_resnest.analysis.seeds import mean_std
from gluon_resnest.argtypes import command_parser, positive_int, seed_list
from gluon_resnest.engine.checkpoint import write_json, write_text
from gluon_resnest.engine.progress import save_figure
from . import main_job as fashion_mnist

# the radix ablation: the zoo model of the main job's size with radix 0, 1, 2 and 4
RADIX_MODELS = ('resnetd14_small', 'resnest14_small_radix1', 'resnest14_small',
                'resnest14_small_radix4')
METRICS = ('val_top1', 'test_top1', 'train_img_per_s')


def _models(text):
    names = tuple(name for name in text.split(',') if name)
    unknown = [name for name in names if name not in list_models()]
    if unknown or not names:
        raise argparse.ArgumentTypeError('%r: zoo model names, comma-separated (unknown: %s)'
                                         % (text, ', '.join(unknown) or 'none given'))
    return names


def _recipe(text):
    """'LABEL=FLAGS' -> (label, [flags])."""
    label, sep, flags = text.partition('=')
    if not sep or not label or not label.replace('_', '').replace('-', '').isalnum():
        raise argparse.ArgumentTypeError(
            '%r: a recipe is LABEL=FLAGS (LABEL: letters, digits, - or _; FLAGS: main-job or '
            'train/train.py flags, possibly none), e.g. ema=\'--ema-decay 0.998\'' % text)
    return label, shlex.split(flags)


def arms(args):
    """{label: (model, flags)}: every model with every recipe (labelled ``model+recipe``; the
    model's name alone when no recipe is given), in the order they run within a seed."""
    if not args.recipes:
        return {model: (model, []) for model in args.models}
    return {'%s+%s' % (model, label): (model, flags) for model in args.models
            for label, flags in args.recipes}


def parse_args(argv=None):
    parser = command_parser(__doc__)
    parser.add_argument('--models', type=_models, default=RADIX_MODELS,
                        help='default: the radix ablation (%s)' % ', '.join(RADIX_MODELS))
    parser.add_argument('--recipe', dest='recipes', type=_recipe, action='append', default=[],
                        metavar='LABEL=FLAGS',
                        help='a training recipe to compare (repeat the flag): its label and the '
                             'main-job flags it adds, e.g. ema=\'--ema-decay 0.998\'; every '
                             'model runs with every recipe')
    parser.add_argument('--seeds', type=seed_list, default=(0, 1, 2))
    parser.add_argument('--save-dir', default=None,
                        help='default: runs/radix-ablation (runs/compare with --models)')
    parser.add_argument('--epochs', type=positive_int, default=None,
                        help='default: the main job\'s (%d)' % fashion_mnist.DEFAULT['epochs'])
    args, extra = parser.parse_known_args(argv)
    labels = [label for label, _ in args.recipes]
    if len(set(labels)) < len(labels):
        parser.error('--recipe labels must differ, got %s' % ', '.join(labels))
    if args.save_dir is None:
        args.save_dir = os.path.join('runs', 'radix-ablation' if args.models == RADIX_MODELS
                                     and not args.recipes else 'compare')
    args.save_dir = os.path.abspath(args.save_dir)
    return args, extra


def model_costs(name, size):
    """(parameters, FLOPs) of a zoo model for 10 classes at ``size`` px (the paper's
    convention: multiply-adds of convolutions, dense layers and pooling)."""
    net = get_model(name, classes=10)
    net.initialize()
    return count_params(net), count_flops(net, (1, 3, size, size))


def run_comparison(args, extra, log=print):
    """Every (seed, arm) run in turn (arms alternating within a seed, so a partial table stays
    balanced); ``comparison.json`` is rewritten after each run. Every run's flags are checked
    before the first one trains. Returns the comparison."""
    plan = arms(args)
    jobs = []
    for seed in args.seeds:
        for label, (model, flags) in plan.items():
            job_argv = ['--model', model, '--save-dir',
                        os.path.join(args.save_dir, '%s-seed%d' % (label, seed)),
                        '--seed', str(seed)] + (['--epochs', str(args.epochs)] if args.epochs
                                                else []) + extra + flags
            job_args, job_extra = fashion_mnist.parse_args(job_argv)
            fashion_mnist.training_config(job_args, job_extra)
            _claim(job_args.save_dir, model, flags)
            jobs.append((seed, label, model, job_args, job_extra))
    rows, result, costs = [], None, {}
    for seed, label, model, job_args, job_extra in jobs:
        if model not in costs:
            costs[model] = model_costs(model, _input_size(extra + plan[label][1]) or
                                       get_model_info(model).input_size)
        log('%s, seed %d' % (label, seed))
        summary = _finished(job_args) or fashion_mnist.run_main_job(job_args, job_extra,
                                                                    log=log)
        rows.append(dict(arm=label, model=model, seed=seed, params=costs[model][0],
                         flops=costs[model][1], **{key: summary[key] for key in METRICS}))
        result = dict(runs=rows, seeds=list(args.seeds),
                      recipes={label: flags for label, (_, flags) in plan.items()},
                      mean_std=mean_std(rows, 'arm', list(plan), METRICS),
                      costs={m: dict(params=p, flops=f) for m, (p, f) in costs.items()})
        write_json(os.path.join(args.save_dir, 'comparison.json'), result)
    plot_comparison(result, os.path.join(args.save_dir, 'comparison.png'))
    return result


ARM_FILE = 'arm.json'


def _claim(run_dir, model, flags):
    """Record which model and recipe flags ``run_dir`` trains (``arm.json``), or exit naming
    both when the folder already holds a run of other flags (a label reused for another
    recipe would otherwise read that run back)."""
    path = os.path.join(run_dir, ARM_FILE)
    mine = dict(model=model, flags=flags)
    if os.path.isfile(path):
        with open(path) as f:
            saved = json.load(f)
        if saved != mine:
            sys.exit('error: %s holds a run of %s with flags %s, this comparison gives it %s '
                     'with flags %s: pass another label or --save-dir'
                     % (run_dir, saved.get('model'), ' '.join(saved.get('flags', [])) or
                        '(none)', model, ' '.join(flags) or '(none)'))
        return
    os.makedirs(run_dir, exist_ok=True)
    write_json(path, mine)


def _input_size(extra):
    """The --input-size among the flags passed through to the trainer, else None."""
    parser = command_parser(None, add_help=False)
    parser.add_argument('--input-size', type=int)
    return parser.parse_known_args(extra)[0].input_size


def _finished(job_args):
    """The summary of a run that already completed with these settings, else None (its test
    evaluation is not repeated)."""
    path = os.path.join(job_args.save_dir, 'summary.json')
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        summary = json.load(f)
    done = summary.get('model') == job_args.model and summary.get('epochs') == job_args.epochs
    return summary if done else None


def markdown_table(result):
    lines = ['| model | recipe | params | MFLOPs | runs | val top-1 | test top-1 | train img/s |',
             '|---|---|---|---|---|---|---|---|']
    models = {row['arm']: row['model'] for row in result['runs']}
    for arm, row in result['mean_std'].items():
        cost = result['costs'][models[arm]]
        recipe = ' '.join(result['recipes'][arm]) or '-'
        lines.append('| `%s` | %s | %.3fM | %.1f | %d | %s | %s | %s |' % (
            arm, recipe, cost['params'] / 1e6, cost['flops'] / 1e6, row['runs'],
            *('%.2f ± %.2f' % tuple(row[key]) for key in METRICS)))
    return '\n'.join(lines)


def plot_comparison(result, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    models = list(result['mean_std'])
    fig, axes = plt.subplots(1, 2, figsize=(4 + 1.5 * len(models), 3.5))
    for key, label in (('val_top1', 'validation'), ('test_top1', 'test (read once per run)')):
        axes[0].errorbar(models, [result['mean_std'][m][key][0] for m in models],
                         yerr=[result['mean_std'][m][key][1] for m in models], marker='o',
                         capsize=4, label=label)
    axes[0].set_ylabel('top-1 (%)')
    axes[0].legend()
    speed = [result['mean_std'][m]['train_img_per_s'] for m in models]
    axes[1].bar(models, [m for m, _ in speed], yerr=[s for _, s in speed], capsize=4,
                color='C2')
    axes[1].set_ylabel('training img/s')
    for ax in axes:
        ax.tick_params(axis='x', labelrotation=20)
        ax.grid(alpha=0.3)
    save_figure(fig, path)


def main(argv=None):
    quiet_native_logs()  # MXNet's C++ notices would break the progress bars
    args, extra = parse_args(argv)
    result = run_comparison(args, extra)
    table = markdown_table(result)
    write_text(os.path.join(args.save_dir, 'comparison.md'), table + '\n')
    sys.stdout.write(table + '\n')
