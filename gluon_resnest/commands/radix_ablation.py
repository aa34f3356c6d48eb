"""The paper's radix ablation (Table 5: 0s1x64d, 1s1x64d, 2s1x64d, 4s1x64d) in miniature: the main
job's model with radix 0 (ResNet-D), 1, 2 and 4 at matched FLOPs, each trained by the main job
(best epoch on validation, test set read once per run) over several seeds; writes a table and a
plot of mean ± std validation and test top-1 and training img/s.

    python train/radix_ablation.py                       # 4 radices x 3 seeds, main job defaults
    python train/radix_ablation.py --epochs 3 --seeds 0,1

Re-running resumes: finished runs are read back, an interrupted one continues from its last
epoch. Any other main-job or train/train.py flag is passed through.
"""
import argparse
import json
import os
import sys

from ..analysis import count_flops, count_params
from ..analysis.seeds import mean_std
from ..argtypes import int_list, positive_int, seed_list
from ..training.checkpoint import write_json, write_text
from ..training.loop import save_figure
from . import fashion_mnist

# radix -> the zoo model of the main job's size with that radix
RADIX_MODELS = {0: 'resnetd14_small', 1: 'resnest14_small_radix1', 2: 'resnest14_small',
                4: 'resnest14_small_radix4'}
METRICS = ('val_top1', 'test_top1', 'train_img_per_s')


def _radices(text):
    return int_list(text, RADIX_MODELS, 'radices')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--radices', type=_radices, default=(0, 1, 2, 4))
    parser.add_argument('--seeds', type=seed_list, default=(0, 1, 2))
    parser.add_argument('--save-dir', default=os.path.join('runs', 'radix-ablation'))
    parser.add_argument('--epochs', type=positive_int, default=None,
                        help='default: the main job\'s (%d)' % fashion_mnist.DEFAULT['epochs'])
    args, extra = parser.parse_known_args(argv)
    args.save_dir = os.path.abspath(args.save_dir)
    return args, extra


def model_costs(name):
    """(parameters, multiply-adds) of a zoo model at 28 px, 10 classes."""
    from .. import get_model
    net = get_model(name, classes=10)
    net.initialize()
    return count_params(net), count_flops(net, (1, 3, 28, 28))


def run_ablation(args, extra, log=print):
    """Every (seed, radix) run in turn (radices alternating within a seed, so a partial table
    stays balanced); ``ablation.json`` is rewritten after each run. Returns its content."""
    costs = {r: model_costs(RADIX_MODELS[r]) for r in args.radices}
    rows, result = [], None
    for seed in args.seeds:
        for radix in args.radices:
            model = RADIX_MODELS[radix]
            job_argv = ['--model', model, '--save-dir',
                        os.path.join(args.save_dir, '%s-seed%d' % (model, seed)),
                        '--seed', str(seed)] + (['--epochs', str(args.epochs)] if args.epochs
                                                else []) + extra
            job_args, job_extra = fashion_mnist.parse_args(job_argv)
            fashion_mnist.check_training_flags(job_args, job_extra)
            log('radix %d (%s), seed %d' % (radix, model, seed))
            summary = _finished(job_args) or fashion_mnist.run_main_job(job_args, job_extra,
                                                                        log=log)
            rows.append(dict(radix=radix, model=model, seed=seed, params=costs[radix][0],
                             flops=costs[radix][1],
                             **{key: summary[key] for key in METRICS}))
            result = dict(runs=rows, seeds=list(args.seeds),
                          mean_std=mean_std(rows, 'radix', args.radices, METRICS),
                          costs={r: dict(model=RADIX_MODELS[r], params=p, flops=f)
                                 for r, (p, f) in costs.items()})
            write_json(os.path.join(args.save_dir, 'ablation.json'), result)
    plot_ablation(result, os.path.join(args.save_dir, 'ablation.png'))
    return result


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
    lines = ['| radix | model | params | MFLOPs (28 px) | runs | val top-1 | test top-1 | '
             'train img/s |', '|---|---|---|---|---|---|---|---|']
    for radix, row in result['mean_std'].items():
        cost = result['costs'][radix]
        lines.append('| %s | `%s` | %.3fM | %.1f | %d | %s | %s | %s |' % (
            radix, cost['model'], cost['params'] / 1e6, cost['flops'] / 1e6, row['runs'],
            *('%.2f ± %.2f' % tuple(row[key]) for key in METRICS)))
    return '\n'.join(lines)


def plot_ablation(result, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    radices = list(result['mean_std'])
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for key, label in (('val_top1', 'validation'), ('test_top1', 'test (read once per run)')):
        means = [result['mean_std'][r][key][0] for r in radices]
        stds = [result['mean_std'][r][key][1] for r in radices]
        axes[0].errorbar([str(r) for r in radices], means, yerr=stds, marker='o', capsize=4,
                         label=label)
    axes[0].set_ylabel('top-1 (%)')
    axes[0].legend()
    speed = [result['mean_std'][r]['train_img_per_s'] for r in radices]
    axes[1].bar([str(r) for r in radices], [m for m, _ in speed], yerr=[s for _, s in speed],
                capsize=4, color='C2')
    axes[1].set_ylabel('training img/s')
    for ax in axes:
        ax.set_xlabel('radix (0 = ResNet-D)')
        ax.grid(alpha=0.3)
    save_figure(fig, path)


def main(argv=None):
    args, extra = parse_args(argv)
    result = run_ablation(args, extra)
    table = markdown_table(result)
    write_text(os.path.join(args.save_dir, 'ablation.md'), table + '\n')
    sys.stdout.write(table + '\n')
