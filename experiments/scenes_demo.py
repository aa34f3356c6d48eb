"""The Fashion-MNIST scenes demo: build scenes, pretrain the backbone on the garments behind the
training scenes (as ImageNet pretraining does for real segmentation), train DeepLabV3 under
horovodrun (model selected on the validation scenes), evaluate the selected checkpoint once on
the test scenes (single- and multi-scale), export it, and summarize; and the ResNeSt vs ResNet-D
comparison over seeds."""
import json
import os
import time

from gluon_resnest.analysis.seeds import mean_std
from gluon_resnest.engine.checkpoint import RunClock, write_json
from gluon_resnest.engine.distributed import rank_env, run_ranks
from gluon_resnest.launch import launch_training, rank_command
from .fashion_mnist_data import DEFAULT_SOURCE
from gluon_resnest.zoo.registry import get_model_info
from gluon_resnest.segmentation.data import open_dataset
from gluon_resnest.segmentation.predict import prediction_figure
from .scenes import SCENE_CLASSES, SCENE_COUNTS, build_pretraining_records, build_scenes

__all__ = ['DEMO', 'PRETRAIN', 'demo_config', 'run_demo', 'compare_backbones',
           'compare_over_seeds']

# the demo's recipe: 64 px scenes, a small trunk at output stride 16 (8 px features with its
# stride-2 stem), a 48-channel head with small ASPP rates (12/24/36 would look past an 8 px map)
DEMO = dict(backbone='resnest14_small', output_stride=16, aspp_rates='2,4,6', head_channels=48,
            base_size=64, crop_size=64, min_scale=0.75, max_scale=1.5, epochs=14, batch_size=16,
            base_lr=0.02, head_lr_mult=10.0, warmup_epochs=0)
# backbone pretraining on the 28 px garments: the main job's recipe, a short schedule (without
# DropBlock, a regularizer for long schedules). Both lengths matter: 3 + 7 epochs reached 53.3%
# test mIoU, 6 + 14 reach 62.2% (README) within 2.5x the main job's wall time.
PRETRAIN = dict(epochs=6, batch_size=128, base_lr=0.2, wd=1e-4, warmup_epochs=0, mixup_alpha=0,
                min_scale=0.8, jitter=0, lighting=0, dropblock_prob=0)


def demo_config(data_root, save_dir, seed=0, progress=True, **overrides):
    """The SegTrainConfig of the demo (``overrides`` replace DEMO's values)."""
    from gluon_resnest.segmentation.task import SegTrainConfig
    return SegTrainConfig(dataset='voc', data_root=data_root, classes=len(SCENE_CLASSES),
                          train_split='train', val_split='val', save_dir=save_dir, seed=seed,
                          workers=1, resume=True, progress=progress, **dict(DEMO, **overrides))


def _pretrain(records, save_dir, backbone, processes, seed, progress, pretrain=None):
    """Classification pretraining of ``backbone`` (model chosen on the held-out garments;
    ``pretrain`` overrides PRETRAIN's values); returns the chosen checkpoint folder."""
    from gluon_resnest.classification.task import TrainConfig
    cfg = TrainConfig(model=backbone, classes=10, rec_train=records['train'],
                      rec_val=records['val'], save_dir=save_dir, seed=seed, workers=2,
                      resume=True, progress=progress, **dict(PRETRAIN, **(pretrain or {})))
    launch_training('classification', cfg, processes, os.path.join(save_dir, 'ranks.log'),
                    naive_engine=True)
    return os.path.join(save_dir, 'best')


def _train(data_root, records, save_dir, processes, seed, progress, overrides, pretrain=None):
    backbone = overrides.get('backbone', DEMO['backbone'])
    base = _pretrain(records, os.path.join(save_dir, 'pretrain'), backbone, processes, seed,
                     progress, pretrain)
    cfg = demo_config(data_root, save_dir, seed, progress, pretrained_base=base, **overrides)
    launch_training('segmentation', cfg, processes, os.path.join(save_dir, 'ranks.log'),
                    naive_engine=True)


def _test(save_dir, data_root, processes, multi_scale=True, progress=False):
    """Scores of the checkpoint chosen on validation (``best/``) on the test scenes, the only
    time the test split is read: single-scale and (``multi_scale``) multi-scale with flips,
    each split across ``processes`` ranks (eval/evaluate_segmentation.py)."""
    runs = [('single_scale', [])] + ([('multi_scale_flip', ['--multi-scale'])]
                                     if multi_scale else [])
    results = {}
    for name, flags in runs:
        out = os.path.join(save_dir, 'test-%s.json' % name)
        flags += ['--checkpoint', os.path.join(save_dir, 'best'), '--dataset', 'voc',
                  '--data-root', data_root, '--split', 'test', '--batch-size', '50',
                  '--out', out] + ([] if progress else ['--no-progress'])
        run_ranks(rank_command('gluon_resnest.commands.evaluate_segmentation', flags,
                               processes), rank_env(processes, naive_engine=True),
                  os.path.join(save_dir, 'ranks.log'), processes)
        with open(out) as f:
            results[name] = json.load(f)
    return results


def run_demo(data_dir, save_dir, processes=2, seed=0, progress=True, log=print,
             scene_counts=SCENE_COUNTS, pretrain=None, source=DEFAULT_SOURCE, **overrides):
    """The whole demo; returns the summary dict (also written to ``save_dir/summary.json``).
    ``overrides`` replace DEMO's training settings, ``pretrain`` PRETRAIN's; ``scene_counts``
    (train, val, test) and ``source`` (Fashion-MNIST's idx files) make smaller runs. Its wall
    times count every invocation of the run (an interrupted run resumed)."""
    with RunClock(save_dir) as clock:
        return _demo(data_dir, save_dir, processes, seed, progress, log, scene_counts, pretrain,
                     source, overrides, clock)


def _demo(data_dir, save_dir, processes, seed, progress, log, scene_counts, pretrain, source,
          overrides, clock):
    log('[1/4] Fashion-MNIST scenes (VOC layout) in %s' % data_dir)
    build_scenes(data_dir, counts=scene_counts, source=source)
    records = build_pretraining_records(os.path.join(data_dir, 'pretrain'), source=source)
    log('[2/4] pretraining %s on the training garments, then DeepLabV3 on the training scenes '
        '(%d process(es)); models chosen on validation' % (
            overrides.get('backbone', DEMO['backbone']), processes))
    _train(data_dir, records, save_dir, processes, seed, progress, overrides, pretrain)
    train_seconds = clock.seconds()
    clock.save()
    log('[3/4] evaluating the chosen checkpoint once on the test scenes (single- and '
        'multi-scale)')
    test = _test(save_dir, data_dir, processes, progress=progress)
    log('[4/4] exporting for deployment')
    from gluon_resnest.segmentation.deploy import export_segmentation
    from gluon_resnest.segmentation.evaluate import load_segmentation, segmentation_meta
    net, config = load_segmentation(os.path.join(save_dir, 'best'))
    prefix = os.path.join(save_dir, 'deploy', 'deeplabv3_' + config['backbone'])
    sym, params = export_segmentation(net, prefix, (1, 3, 64, 64),
                                      meta=segmentation_meta(config))
    # what the chosen checkpoint does on test scenes, beside their ground truth
    info = get_model_info(config['backbone'])
    picture = prediction_figure(net, open_dataset('voc', data_dir, 'test', len(SCENE_CLASSES)),
                                os.path.join(save_dir, 'test-scenes.png'), info.mean, info.std,
                                len(SCENE_CLASSES), net.trunk.output_stride)
    with open(os.path.join(save_dir, 'metrics.jsonl')) as f:
        history = [json.loads(line) for line in f]
    best = max(history, key=lambda h: h['val_miou'])
    summary = dict(
        backbone=config['backbone'], seed=seed, processes=processes, epochs=len(history),
        selected_epoch=best['epoch'], val_miou=round(best['val_miou'], 2),
        test_miou=round(test['single_scale']['miou'], 2),
        test_pixel_acc=round(test['single_scale']['pixel_acc'], 2),
        test_miou_multi_scale_flip=round(test['multi_scale_flip']['miou'], 2),
        test_iou_per_class=dict(zip(SCENE_CLASSES, [None if v is None else round(v, 1)
                                                    for v in test['single_scale']['iou']])),
        train_img_per_s=round(history[-1]['img_per_s'], 1),
        train_seconds=round(train_seconds, 1), wall_seconds=round(clock.seconds(), 1),
        invocations=clock.invocations,
        checkpoint=os.path.join(save_dir, 'best'), symbol=sym, params=params,
        curves=os.path.join(save_dir, 'curves.png'), test_scenes_picture=picture)
    write_json(os.path.join(save_dir, 'summary.json'), summary)
    return summary


def compare_over_seeds(save_root, backbones, seeds, run_one, metrics, log=print):
    """``run_one(backbone, seed, save_dir)`` (a dict of ``metrics``) for each seed and backbone,
    each run in its own folder (resumable), backbones alternating so a partial table stays
    balanced; the table {backbone: {metric: [mean, std]}} is rewritten to
    ``save_root/comparison.json`` after every run and returned with the runs."""
    rows = []
    for seed in seeds:
        for backbone in backbones:
            save_dir = os.path.join(save_root, '%s-seed%d' % (backbone, seed))
            log('training %s, seed %d -> %s' % (backbone, seed, save_dir))
            tic = time.time()
            rows.append(dict(run_one(backbone, seed, save_dir), backbone=backbone, seed=seed,
                             seconds=time.time() - tic))
            result = dict(runs=rows, mean_std=mean_std(rows, 'backbone', backbones, metrics),
                          seeds=list(seeds))
            write_json(os.path.join(save_root, 'comparison.json'), result)
    return result


def compare_backbones(data_dir, save_root, backbones=('resnest14_small', 'resnetd14_small'),
                      seeds=(0, 1, 2), processes=2, log=print, pretrain=None, **overrides):
    """The demo's training for each seed and backbone (:func:`compare_over_seeds`), test
    scenes evaluated once per run at single scale. ``pretrain`` and ``overrides`` replace
    PRETRAIN's and DEMO's values."""
    build_scenes(data_dir)
    records = build_pretraining_records(os.path.join(data_dir, 'pretrain'))

    def run_one(backbone, seed, save_dir):
        _train(data_dir, records, save_dir, processes, seed, False,
               dict(overrides, backbone=backbone), pretrain)
        test = _test(save_dir, data_dir, processes, multi_scale=False)
        with open(os.path.join(save_dir, 'metrics.jsonl')) as f:
            history = [json.loads(line) for line in f]
        return dict(val_miou=max(h['val_miou'] for h in history),
                    test_miou=test['single_scale']['miou'], img_per_s=history[-1]['img_per_s'])

    return compare_over_seeds(save_root, backbones, seeds, run_one,
                              ('val_miou', 'test_miou', 'img_per_s'), log)
