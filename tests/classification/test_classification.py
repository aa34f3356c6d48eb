"""The classification task: its data, recipe, configuration checks, resume with its data
pipelines, and its trainer on one process and under horovodrun."""
import json
import math
import os
import shutil
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

from gluon_resnest.classification.task import TrainConfig, count_correct, train
from gluon_resnest.classification import recipe
from gluon_resnest.engine.checkpoint import read_meta
from gluon_resnest.classification.data import RecordDataset, RecordError
from helpers import (KilledAfterCheckpoint, ROOT, killed_after_first_checkpoint,
                     require_horovodrun, structural_params)


def _config(tiny_rec, save_dir, **kwargs):
    base = dict(model='resnest14_small', rec_train=tiny_rec[0], rec_val=tiny_rec[1], classes=4,
                save_dir=str(save_dir), epochs=2, batch_size=8, input_size=32, crop_ratio=1.0,
                warmup_epochs=1, workers=0, progress=False, mixup_alpha=0.2,
                dropblock_prob=0.1, autoaugment=True)
    base.update(kwargs)
    return TrainConfig(**base)





def test_the_training_command_under_horovodrun(tiny_rec, tmp_path):
    launcher = require_horovodrun()
    env = dict(os.environ, OMP_NUM_THREADS='1')
    cmd = [launcher, '--gloo', '-np', '2', '-H', 'localhost:2', sys.executable,
           os.path.join(ROOT, 'train', 'train.py'), '--model', 'resnest14_small',
           '--classes', '4', '--rec-train', tiny_rec[0], '--rec-val', tiny_rec[1],
           '--input-size', '32', '--crop-ratio', '1', '--epochs', '1', '--batch-size', '8',
           '--workers', '1', '--save-dir', str(tmp_path / 'run'), '--no-progress']
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    metrics = [json.loads(line) for line in open(str(tmp_path / 'run' / 'metrics.jsonl'))]
    assert len(metrics) == 1 and math.isfinite(metrics[0]['train_loss'])
    assert os.path.isfile(str(tmp_path / 'run' / 'epoch-0000' / 'model.params'))
    assert os.path.isfile(str(tmp_path / 'run' / 'curves.png'))


@pytest.mark.slow
def test_benchmark_sets_the_trainer_beside_its_model_alone(tiny_rec):
    require_horovodrun()
    base = [sys.executable, os.path.join(ROOT, 'eval', 'benchmark.py'), '--model',
            'resnest14_small', '--mode', 'training', '--train-size', '32', '--train-batch-size',
            '4', '--classes', '4', '--train-repeats', '2', '--no-peak', '--compare', 'trainer']
    missing = subprocess.run(base, capture_output=True, text=True, timeout=300)
    assert missing.returncode != 0 and '--compare trainer needs --rec-train' in missing.stderr
    proc = subprocess.run(base + ['--rec-train', tiny_rec[0], '--rec-val', tiny_rec[1],
                                  '--iterations', '3', '--dropblock-prob', '0.1'],
                          capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r['impl'] for r in records] == ['gluon_resnest', 'trainer', 'trainer']
    alone, trainer = records[1:]
    assert alone['processes'] == trainer['processes'] == 2 and len(alone['per_process']) == 2
    assert alone['img_per_s'] == pytest.approx(sum(alone['per_process']), rel=1e-6)
    assert trainer['iterations'] == 3 and trainer['img_per_s'] > 0
    assert trainer['of_model_alone'] == pytest.approx(
        trainer['img_per_s'] / alone['img_per_s'], abs=1e-3)


@pytest.mark.parametrize('pipeline, extra', [
    ('workers', {}), ('memory', {}), ('memory', dict(random_erasing=0.5, ema_decay=0.9))])
def test_resume_equals_an_uninterrupted_run(tiny_rec, tmp_path, pipeline, extra):
    # per image with AutoAugment; in memory with the batch jitter and lighting (and random
    # erasing and a moving average of the weights)
    options = dict(pipeline=pipeline, autoaugment=pipeline == 'workers', **extra)
    full, _ = train(_config(tiny_rec, tmp_path / 'full', **options), log=lambda *_: None)
    with killed_after_first_checkpoint(), pytest.raises(KilledAfterCheckpoint):
        train(_config(tiny_rec, tmp_path / 'split', **options), log=lambda *_: None)
    # what a kill during the next checkpoint would leave behind must be ignored
    os.makedirs(str(tmp_path / 'split' / '.tmp-partial'))
    os.makedirs(str(tmp_path / 'split' / 'epoch-0007'))  # no meta.json: incomplete
    resumed, summary = train(_config(tiny_rec, tmp_path / 'split', resume=True, **options),
                             log=lambda *_: None)
    assert [h['epoch'] for h in summary['history']] == [1, 2]
    a, b = structural_params(full), structural_params(resumed)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-4, atol=1e-5, err_msg=k)
    if extra.get('ema_decay'):  # the average resumes too, and best/ holds the average
        a, b = (mx.nd.load(str(tmp_path / run / 'epoch-0001' / 'ema.params'))
                for run in ('full', 'split'))
        assert a.keys() == b.keys() == structural_params(full).keys()
        for k in a:
            np.testing.assert_allclose(a[k].asnumpy(), b[k].asnumpy(), rtol=1e-4, atol=1e-5,
                                       err_msg=k)
        assert read_meta(str(tmp_path / 'split' / 'epoch-0001'))['ema_updates'] == \
            2 * (48 // 8)


def test_with_a_moving_average_best_holds_the_average_it_validated(tiny_rec, tmp_path):
    """--ema-decay: the validation top-1 recorded (and selected on) is the average's: best/'s
    weights, evaluated independently, give it; the weights' own score is recorded beside it."""
    from gluon_resnest.analysis.accuracy import load_network
    from gluon_resnest.classification.task import evaluate
    from gluon_resnest.classification.memory_data import evaluation_loader
    cfg = _config(tiny_rec, tmp_path / 'run', pipeline='memory', autoaugment=False,
                  ema_decay=0.9, epochs=2)
    _, summary = train(cfg, log=lambda *_: None)
    best = str(tmp_path / 'run' / 'best')
    chosen = summary['history'][read_meta(best)['epoch']]
    assert 'val_top1_weights' in chosen
    # the training rate after each epoch's first step (eval/benchmark.py --compare trainer)
    assert all(h['img_per_s_steady'] > 0 for h in summary['history'])
    net, info, _ = load_network(checkpoint=best)
    loader = evaluation_loader(RecordDataset(tiny_rec[1], classes=4), 8, info.mean, info.std,
                               32, 1.0)
    assert evaluate(net, loader, mx.cpu())['top1'] == pytest.approx(chosen['val_top1'])
    epoch_folder = str(tmp_path / 'run' / ('epoch-%04d' % read_meta(best)['epoch']))
    saved = mx.nd.load(os.path.join(epoch_folder, 'ema.params'))
    kept = mx.nd.load(os.path.join(best, 'model.params'))
    for key in saved:
        assert np.array_equal(saved[key].asnumpy(), kept[key].asnumpy()), key
    raw = mx.nd.load(os.path.join(epoch_folder, 'model.params'))
    assert any(not np.array_equal(raw[k].asnumpy(), kept[k].asnumpy()) for k in raw)


def test_label_smoothing_and_mixup_targets_by_hand():
    labels = mx.nd.array([0, 2])
    smooth = recipe.smooth_labels(labels, 4, 0.1).asnumpy()
    np.testing.assert_allclose(smooth, [[0.925, 0.025, 0.025, 0.025],
                                        [0.025, 0.025, 0.925, 0.025]], rtol=1e-6)
    data = mx.nd.array([[1.0, 2.0], [3.0, 5.0]])
    mixed, targets = recipe.mixup(data, mx.nd.array(smooth), 0.7)
    np.testing.assert_allclose(mixed.asnumpy(), [[0.7 * 1 + 0.3 * 3, 0.7 * 2 + 0.3 * 5],
                                                 [0.7 * 3 + 0.3 * 1, 0.7 * 5 + 0.3 * 2]],
                               rtol=1e-6)
    np.testing.assert_allclose(targets.asnumpy()[0], [0.655, 0.025, 0.295, 0.025], rtol=1e-5)
    assert recipe.mixup_lambda(np.random.RandomState(0), 0.0) == 1.0
    from gluon_resnest.engine.hooks import dropblock_prob_at
    assert dropblock_prob_at(0, 10, 0.1) == 0.0
    assert dropblock_prob_at(9, 10, 0.1) == pytest.approx(0.1)


def test_top_k_counts():
    logits = mx.nd.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5]])
    assert count_correct(logits, mx.nd.array([1, 1, 0]), k=2) == (1, 2)


@pytest.mark.parametrize('change, error, message', [
    (dict(batch_size=0), ValueError, '--batch-size must be a positive integer'),
    (dict(epochs=-1), ValueError, '--epochs must be a positive integer'),
    (dict(model='resnest5O'), ValueError, 'unknown model'),
    (dict(classes=2), RecordError, 'labels must lie in 0..1'),
    (dict(classes=2, autoaugment=False, pipeline='memory'), RecordError,
     'labels must lie in 0..1'),
    (dict(pipeline='gpu'), ValueError, "--pipeline 'gpu': allowed auto, memory, workers"),
    (dict(pipeline='memory'), ValueError, '--autoaugment runs per image'),
    (dict(rec_train='/nonexistent/train.rec'), FileNotFoundError, 'RecordIO file'),
])
def test_bad_configuration(tiny_rec, tmp_path, change, error, message):
    with pytest.raises(error, match=message):
        train(_config(tiny_rec, tmp_path, **dict(dict(epochs=1), **change)), log=lambda *_: None)


def test_missing_index_and_corrupt_record(tiny_rec, tmp_path):
    rec = str(tmp_path / 'only.rec')
    shutil.copy(tiny_rec[0], rec)
    with pytest.raises(FileNotFoundError, match=r'index file \(.idx\) .*only.idx not found'):
        RecordDataset(rec)
    shutil.copy(tiny_rec[0].replace('.rec', '.idx'), rec.replace('.rec', '.idx'))
    data = bytearray(open(rec, 'rb').read())
    for i in range(40, 400):
        data[i] = 0
    open(rec, 'wb').write(bytes(data))
    with pytest.raises(RecordError, match='record 0 of .*only.rec is corrupt'):
        RecordDataset(rec).read(0)


def test_unwritable_save_dir(tiny_rec, tmp_path):
    blocker = tmp_path / 'file'
    blocker.write_text('x')
    with pytest.raises(PermissionError, match='cannot write to the save directory'):
        train(_config(tiny_rec, blocker / 'sub', epochs=1), log=lambda *_: None)


def test_im2rec_command_makes_records_the_dataset_reads(tmp_path):
    import cv2
    rng = np.random.RandomState(0)
    for label, cls in enumerate(('ant', 'bee')):
        os.makedirs(str(tmp_path / 'imgs' / cls))
        for i in range(3):
            cv2.imwrite(str(tmp_path / 'imgs' / cls / ('%d.png' % i)),
                        rng.randint(0, 255, (20, 30, 3)).astype(np.uint8))
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'train', 'im2rec.py'), '--root',
                           str(tmp_path / 'imgs'), '--prefix', str(tmp_path / 'out' / 'x')],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = RecordDataset(str(tmp_path / 'out' / 'x.rec'), classes=2)
    items = [data[i] for i in range(len(data))]
    assert len(items) == 6 and sorted(label for _, label in items) == [0, 0, 0, 1, 1, 1]
    assert items[0][0].shape == (20, 30, 3)


@pytest.mark.parametrize('field, value, message', [
    ('wd', -1e-4, '--wd must be a finite number in [0, inf), got -0.0001'),
    ('label_smoothing', 2.0, '--label-smoothing must be a finite number in [0, 1), got 2.0'),
    ('mixup_alpha', -0.2, '--mixup-alpha must be a finite number in [0, inf)'),
    ('min_scale', 0.0, '--min-scale must be a finite number in (0, 1], got 0.0'),
    ('base_lr', float('nan'), '--base-lr must be a finite number in (0, inf), got nan'),
    ('base_lr', -0.1, '--base-lr must be a finite number in (0, inf), got -0.1'),
    ('momentum', 1.5, '--momentum must be a finite number in [0, 1)'),
    ('warmup_epochs', -1, '--workers, --warmup-epochs, --max-iters and --keep must be >= 0'),
    ('random_erasing', 1.5, '--random-erasing must be a finite number in [0, 1], got 1.5'),
    ('ema_decay', 1.0, '--ema-decay must be a finite number in [0, 1), got 1.0'),
    ('pipeline', 'workers', '--random-erasing runs in the in-memory batch pipeline')])
def test_out_of_range_values_are_refused_up_front(field, value, message):
    cfg = TrainConfig(model='resnest14_small', rec_train='t.rec', rec_val='v.rec',
                      random_erasing=0.5)
    cfg.validate()
    setattr(cfg, field, value)
    with pytest.raises(ValueError) as err:
        cfg.validate()
    assert message in str(err.value)


def test_resume_follows_a_longer_schedule_and_refuses_another_model(tiny_rec, tmp_path):
    quick = dict(mixup_alpha=0.0, dropblock_prob=0.0, autoaugment=False, warmup_epochs=0,
                 max_iters=2)
    train(_config(tiny_rec, tmp_path / 'run', epochs=1, **quick), log=lambda *_: None)
    # 1 -> 3 epochs: the schedule is rebuilt for 3 (the saved one ended at learning rate 0)
    _, summary = train(_config(tiny_rec, tmp_path / 'run', epochs=3, resume=True, **quick),
                       log=lambda *_: None)
    assert [h['epoch'] for h in summary['history']] == [1, 2, 3]
    assert summary['history'][0]['lr'] == pytest.approx(0, abs=1e-6)
    # after 4 of 6 updates of a cosine from 0.1 * 8 / 256: lr (1 + cos(2 pi / 3)) / 2
    assert summary['history'][1]['lr'] == pytest.approx(0.1 * 8 / 256 * 0.25, rel=1e-4)
    for change, message in ((dict(model='resnest14_small_s1'), '--model resnest14_small, this '
                             'command has --model resnest14_small_s1'),
                            (dict(classes=3), '--classes 4, this command has --classes 3')):
        with pytest.raises(ValueError, match=message):
            train(_config(tiny_rec, tmp_path / 'run', epochs=4, resume=True,
                          **dict(quick, **change)), log=lambda *_: None)


@pytest.mark.parametrize('size', [0, -5])
def test_an_input_size_below_one_is_refused(tiny_rec, tmp_path, size):
    with pytest.raises(ValueError, match='--input-size must be a positive integer, got %d'
                                         % size):
        train(_config(tiny_rec, tmp_path / 'run', input_size=size))
    assert not os.path.exists(str(tmp_path / 'run'))
