"""The engine's loop, hooks, checkpoints and run folders, once, with a tiny task (every task
gets them from here; the tasks' own tests cover what they add)."""
import json
import os

import mxnet as mx
import numpy as np
import pytest

from gluon_resnest.engine import loop
from gluon_resnest.engine.checkpoint import read_meta
from gluon_resnest.engine.hooks import DropBlockRamp, MovingAverage, SteadyRate
from helpers import ROOT, KilledAfterCheckpoint, killed_after_first_checkpoint
from toy_task import ToyConfig, ToyTask


def quiet(*args):
    pass


def run(tmp_path, name='run', hooks=None, **kwargs):
    cfg = ToyConfig(save_dir=str(tmp_path / name), progress=False, **kwargs)
    return loop.train(ToyTask(), cfg, log=quiet, hooks=hooks)


def params(net):
    return {k: v.data().asnumpy() for k, v in net._collect_params_with_prefix().items()}





@pytest.mark.parametrize('ema', [0.0, 0.9])
def test_a_resumed_run_is_bitwise_the_uninterrupted_one(tmp_path, ema):
    """Killed after its first checkpoint and started again with the same command, a run ends
    with the very weights (and moving average) of one that was never stopped."""
    full, summary = run(tmp_path, 'full', epochs=3, ema_decay=ema)
    with killed_after_first_checkpoint(), pytest.raises(KilledAfterCheckpoint):
        run(tmp_path, 'split', epochs=3, ema_decay=ema)
    os.makedirs(str(tmp_path / 'split' / '.tmp-partial'))  # what a kill while writing leaves
    resumed, again = run(tmp_path, 'split', epochs=3, ema_decay=ema)
    assert [h['epoch'] for h in again['history']] == [1, 2, 3]
    a, b = params(full), params(resumed)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert [h['val_acc'] for h in again['history']] == [h['val_acc'] for h in summary['history']]
    if ema:
        saved = [mx.nd.load(str(tmp_path / name / 'epoch-0002' / 'ema.params'))
                 for name in ('full', 'split')]
        for key in saved[0]:
            np.testing.assert_array_equal(saved[0][key].asnumpy(), saved[1][key].asnumpy())
        assert read_meta(str(tmp_path / 'split' / 'epoch-0002'))['ema_updates'] == 3 * 6


def test_the_record_the_checkpoint_and_the_files_of_a_run(tmp_path):
    """Per epoch: the training loss, each logged value averaged over the samples, the task's
    scores, the learning rate and rates; checkpoints record their task and the selection; the
    best epoch on the task's metric is in best/."""
    _, summary = run(tmp_path, epochs=3, keep=1)
    history = summary['history']
    assert [json.loads(line) for line in open(str(tmp_path / 'run' / 'metrics.jsonl'))] == \
        history
    first = history[0]
    for key in ('train_loss', 'train_margin', 'val_acc', 'lr', 'img_per_s', 'epoch_seconds',
                'img_per_s_steady'):
        assert key in first and np.isfinite(first[key]), key
    assert summary['best_acc'] == max(h['val_acc'] for h in history)
    assert summary['task'] == 'toy' and summary['classes'] == 3
    meta = read_meta(str(tmp_path / 'run' / 'epoch-0002'))
    assert meta['task'] == 'toy' and meta['config']['epochs'] == 3
    assert meta['best_acc'] == summary['best_acc'] and meta['val_acc'] == history[2]['val_acc']
    best = read_meta(str(tmp_path / 'run' / 'best'))
    assert history[best['epoch']]['val_acc'] == summary['best_acc']
    folders = sorted(os.listdir(str(tmp_path / 'run')))
    assert folders == ['best', 'curves.png', 'epoch-0002', 'metrics.jsonl']  # --keep 1


def test_the_loss_is_averaged_over_samples_and_the_schedule_scales_with_the_batch(tmp_path):
    """The lr of the first epoch's end: cosine after warm-up over 1 epoch, from base_lr x
    global batch / the task's reference batch (8); each epoch's loss is the sample-weighted
    mean of the batches' means."""
    _, summary = run(tmp_path, epochs=2, batch_size=4, base_lr=0.2, warmup_epochs=1)
    peak = 0.2 * 4 / 8.0
    assert summary['history'][0]['lr'] == pytest.approx(peak, rel=1e-6)
    assert summary['history'][1]['lr'] == pytest.approx(0.0, abs=1e-9)


def test_a_nan_loss_stops_naming_the_step_and_writes_no_checkpoint_for_it(tmp_path):
    with pytest.raises(FloatingPointError, match='at epoch 2, iteration 3; no checkpoint was '
                                                 'written for this epoch'):
        run(tmp_path, epochs=3, nan_at=6 + 2)  # 6 steps an epoch
    assert sorted(d for d in os.listdir(str(tmp_path / 'run')) if d.startswith('epoch')) == \
        ['epoch-0000']


def test_one_run_per_folder(tmp_path):
    """The same command resumes; other values are refused naming them; --resume takes other
    values but not another task; --fresh starts over."""
    run(tmp_path, epochs=1)
    _, summary = run(tmp_path, epochs=1)  # the same command: nothing left to do
    assert [h['epoch'] for h in summary['history']] == [1]
    with pytest.raises(ValueError, match=r'holds another run \(--base-lr 0.5 there, 0.1 here\)'):
        run(tmp_path, epochs=1, base_lr=0.1)
    _, summary = run(tmp_path, epochs=2, base_lr=0.1, resume=True)
    assert [h['epoch'] for h in summary['history']] == [1, 2]
    _, summary = run(tmp_path, epochs=1, fresh=True)
    assert [h['epoch'] for h in summary['history']] == [1]

    class OtherTask(ToyTask):
        name = 'other'
    cfg = ToyConfig(save_dir=str(tmp_path / 'run'), progress=False, epochs=1, resume=True)
    with pytest.raises(ValueError, match='holds a toy run, this command trains other'):
        loop.train(OtherTask(), cfg, log=quiet)
    with pytest.raises(ValueError, match='--fresh deletes the run that --resume continues'):
        run(tmp_path, fresh=True, resume=True)


def test_a_damaged_newest_checkpoint_is_named_and_the_one_before_used(tmp_path):
    run(tmp_path, epochs=2)
    newest = tmp_path / 'run' / 'epoch-0001' / 'model.params'
    newest.write_bytes(newest.read_bytes()[:100])
    said = []
    cfg = ToyConfig(save_dir=str(tmp_path / 'run'), progress=False, epochs=3, resume=True)
    _, summary = loop.train(ToyTask(), cfg, log=said.append)
    assert any('checkpoint %s cannot be used' % newest.parent in line for line in said), said
    assert any('(epoch 1 done)' in line for line in said), said
    assert [h['epoch'] for h in summary['history']] == [1, 2, 3]


def test_hooks(tmp_path):
    """The moving average is what is validated and selected (the weights' score kept beside
    it); the DropBlock ramp refuses a network without DropBlock; the steady rate is recorded."""
    _, summary = run(tmp_path, epochs=2, hooks=[MovingAverage(0.5), SteadyRate()])
    for record in summary['history']:
        assert 'val_acc_weights' in record and record['img_per_s_steady'] > 0
    best = str(tmp_path / 'run' / 'best')
    epoch = read_meta(best)['epoch']
    average = mx.nd.load(str(tmp_path / 'run' / ('epoch-%04d' % epoch) / 'ema.params'))
    kept = mx.nd.load(os.path.join(best, 'model.params'))
    for key in average:
        np.testing.assert_array_equal(average[key].asnumpy(), kept[key].asnumpy())
    with pytest.raises(ValueError, match='has no DropBlock layers'):
        run(tmp_path, 'ramp', hooks=[DropBlockRamp(0.1)])
    assert not os.path.exists(str(tmp_path / 'ramp'))  # refused before the folder was made


def test_config_file_round_trip_and_unknown_fields(tmp_path):
    from gluon_resnest.engine.config import load_config, save_config
    cfg = ToyConfig(epochs=5, ema_decay=0.9)
    path = str(tmp_path / 'run.json')
    save_config(path, 'toy', cfg)
    assert load_config(path, ToyConfig) == cfg
    saved = json.load(open(path))
    saved['config']['epoch'] = 3
    json.dump(saved, open(path, 'w'))
    with pytest.raises(ValueError, match='unknown fields epoch for ToyConfig'):
        load_config(path, ToyConfig)


def test_a_task_config_gives_shared_fields_its_own_defaults():
    from gluon_resnest.classification.task import TrainConfig
    from gluon_resnest.segmentation.task import SegTrainConfig
    assert (TrainConfig.epochs, TrainConfig.base_lr, TrainConfig.keep) == (270, 0.1, 3)
    assert (SegTrainConfig.epochs, SegTrainConfig.base_lr, SegTrainConfig.keep) == (120, 0.01, 2)
    assert ToyConfig().workers == 0 and ToyConfig().wd == 1e-4  # the rest is RunConfig's


def test_the_engine_reads_no_task_s_own_config_fields():
    """The engine knows the fields every run shares (RunConfig); a task's own (a dataset, a
    DropBlock rate, ...) reach the engine only through the task (its identity, its hooks)."""
    import dataclasses
    import glob
    import re
    from gluon_resnest.classification.task import TrainConfig
    from gluon_resnest.detection.config import DetTrainConfig
    from gluon_resnest.engine.config import RunConfig
    from gluon_resnest.segmentation.task import SegTrainConfig
    shared = {f.name for f in dataclasses.fields(RunConfig)}
    own = {f.name for config in (TrainConfig, SegTrainConfig, DetTrainConfig)
           for f in dataclasses.fields(config)} - shared
    engine = os.path.join(ROOT, 'gluon_resnest', 'engine')
    for path in glob.glob(os.path.join(engine, '*.py')):
        source = open(path).read()
        for name in own:
            assert not re.search(r"(cfg\.%s\b|'%s')" % (name, name), source), (path, name)
