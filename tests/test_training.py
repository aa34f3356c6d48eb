import importlib
import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
import time

import mxnet as mx
import numpy as np
import pytest


from gluon_resnest.classification.task import TrainConfig, count_correct, train
from gluon_resnest.classification import recipe
from gluon_resnest.engine.checkpoint import read_meta
from gluon_resnest.classification.data import RecordDataset, RecordError, train_transform
from gluon_resnest.engine.data import ShardSampler, _Transformed
from helpers import require_horovodrun, write_raw_fashion_mnist

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..')


def _config(tiny_rec, save_dir, **kwargs):
    base = dict(model='resnest14_small', rec_train=tiny_rec[0], rec_val=tiny_rec[1], classes=4,
                save_dir=str(save_dir), epochs=2, batch_size=8, input_size=32, crop_ratio=1.0,
                warmup_epochs=1, workers=0, progress=False, mixup_alpha=0.2,
                dropblock_prob=0.1, autoaugment=True)
    base.update(kwargs)
    return TrainConfig(**base)


def _trainable(net):
    return {k: v.data().asnumpy() for k, v in net._collect_params_with_prefix().items()}


def test_shards_are_disjoint_equal_and_cover_the_set():
    for length, size in [(48, 2), (50, 4), (7, 3)]:
        shards = [list(ShardSampler(length, r, size, seed=3)) for r in range(size)]
        assert len({len(s) for s in shards}) == 1
        flat = sum(shards, [])
        assert set(flat) == set(range(length))
        assert len(flat) - length == (-length) % size  # only the padding repeats
        evals = [list(ShardSampler(length, r, size, shuffle=False, pad=False))
                 for r in range(size)]
        assert sorted(sum(evals, [])) == list(range(length))
    sampler = ShardSampler(20, 0, 2, seed=1)
    first = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != first
    sampler.set_epoch(0)
    assert list(sampler) == first


def test_augmentation_is_a_function_of_seed_epoch_and_index(tiny_rec):
    """A resumed run (fresh transform, other history) must see the same augmented images."""
    dataset = RecordDataset(tiny_rec[0])

    def transformed(items):
        data = _Transformed(dataset, train_transform(32, (0.5,) * 3, (0.25,) * 3, 0.3, 0.4, 0.1,
                                                     autoaugment=True), seed=5)
        return {item: data[item][0].asnumpy() for item in items}
    first = transformed([(0, 1), (0, 2), (1, 1)])
    later = transformed([(1, 1), (0, 2), (0, 1)])  # another order: other generator history
    for item in first:
        np.testing.assert_array_equal(first[item], later[item])
    assert np.abs(first[(0, 1)] - first[(1, 1)]).max() > 0.1  # a new epoch, new augmentation


def test_two_horovod_processes_read_disjoint_shards_and_stay_identical(tiny_rec, tmp_path):
    launcher = require_horovodrun()
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=ROOT)
    cmd = [launcher, '--gloo', '-np', '2', '-H', 'localhost:2', sys.executable,
           os.path.join(ROOT, 'tests', 'hvd_worker.py'), tiny_rec[0], str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = [json.load(open(str(tmp_path / ('rank-%d.json' % r)))) for r in (0, 1)]
    assert [r['size'] for r in ranks] == [2, 2]
    a, b = (set(r['indices']) for r in ranks)
    assert not a & b and a | b == set(range(48))
    assert all(math.isfinite(x) for r in ranks for x in r['losses']) and ranks[0]['losses']
    assert ranks[0]['params_sha1'] == ranks[1]['params_sha1']
    # BN running statistics: each rank's own differ; after the sync both hold their mean
    own = [r['own_stats'] for r in ranks]
    assert own[0].keys() == own[1].keys() and any('running_var' in k for k in own[0])
    assert any(not np.allclose(own[0][k], own[1][k]) for k in own[0])
    for k in own[0]:
        mean = (np.array(own[0][k]) + np.array(own[1][k])) / 2
        for r in ranks:
            np.testing.assert_allclose(r['averaged_stats'][k], mean, rtol=1e-6, err_msg=k)


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
    _stop_after_one_epoch(_config(tiny_rec, tmp_path / 'split', **options))
    # what a kill during the next checkpoint would leave behind must be ignored
    os.makedirs(str(tmp_path / 'split' / '.tmp-partial'))
    os.makedirs(str(tmp_path / 'split' / 'epoch-0007'))  # no meta.json: incomplete
    resumed, summary = train(_config(tiny_rec, tmp_path / 'split', resume=True, **options),
                             log=lambda *_: None)
    assert [h['epoch'] for h in summary['history']] == [1, 2]
    a, b = _trainable(full), _trainable(resumed)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-4, atol=1e-5, err_msg=k)
    if extra.get('ema_decay'):  # the average resumes too, and best/ holds the average
        a, b = (mx.nd.load(str(tmp_path / run / 'epoch-0001' / 'ema.params'))
                for run in ('full', 'split'))
        assert a.keys() == b.keys() == _trainable(full).keys()
        for k in a:
            np.testing.assert_allclose(a[k].asnumpy(), b[k].asnumpy(), rtol=1e-4, atol=1e-5,
                                       err_msg=k)
        assert read_meta(str(tmp_path / 'split' / 'epoch-0001'))['ema_updates'] == \
            2 * (48 // 8)


def test_weight_average_follows_its_recurrence_and_swaps_in_and_out():
    """After each update the average is d_n * average + (1 - d_n) * weights, with
    d_n = min(decay, (1 + n) / (10 + n)) (computed here in NumPy from the weights each step
    had); inside ``applied()`` the network holds the average, changes made there stay in it,
    and the network gets its own weights back."""
    from gluon_resnest.engine.ema import WeightAverage
    net = mx.gluon.nn.Dense(3, in_units=4)
    net.initialize(mx.init.Normal(1.0))
    decay = 0.8
    average = WeightAverage(net, decay)
    expected = {k: v.copy() for k, v in _trainable(net).items()}
    rng = np.random.RandomState(0)
    for n in range(40):  # past n = 35, where the cap reaches the decay
        for param in net.collect_params().values():
            param.set_data(param.data() + mx.nd.array(rng.normal(size=param.shape)))
        d = min(decay, (1.0 + n) / (10.0 + n))
        weights = _trainable(net)
        expected = {k: d * expected[k] + (1 - d) * weights[k] for k in expected}
        average.update()
    assert average.rate() == decay
    own = _trainable(net)
    with average.applied():
        inside = _trainable(net)
        for k in expected:
            np.testing.assert_allclose(inside[k], expected[k], rtol=1e-5, atol=1e-6)
        net.bias.set_data(mx.nd.ones(3) * 7)
    after = _trainable(net)
    for k in own:
        np.testing.assert_array_equal(after[k], own[k])
    np.testing.assert_array_equal(average.average['bias'].asnumpy(), np.full(3, 7.0))
    with pytest.raises(ValueError, match=r'EMA decay must be in \(0, 1\), got 1.0'):
        WeightAverage(net, 1.0)


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


def _stop_after_one_epoch(cfg):
    """Train ``cfg`` but kill it (an exception) right after the first checkpoint."""
    from gluon_resnest.engine import loop
    real = loop.save_checkpoint

    class Killed(Exception):
        pass

    def save_then_die(*args, **kwargs):
        real(*args, **kwargs)
        raise Killed()
    loop.save_checkpoint = save_then_die
    try:
        with pytest.raises(Killed):
            train(cfg, log=lambda *_: None)
    finally:
        loop.save_checkpoint = real


def test_lr_schedule_warmup_end_and_end():
    from gluon_resnest.engine import schedule
    lr = schedule.scaled_lr(0.1, 512)
    assert lr == pytest.approx(0.2)
    sched = schedule.lr_schedule(lr, epochs=10, iters_per_epoch=100, warmup_epochs=5)
    assert sched(0) == pytest.approx(0.0)
    assert sched(250) == pytest.approx(0.1)       # halfway through warm-up
    assert sched(500) == pytest.approx(0.2)       # warm-up end: the peak
    assert sched(750) == pytest.approx(0.1)       # cosine midpoint
    assert sched(1000) == pytest.approx(0.0, abs=1e-12)


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


def test_no_weight_decay_on_bn_and_biases():
    import gluon_resnest as gr
    net = gr.get_model('resnest14_small', classes=3)
    from gluon_resnest.engine.schedule import exclude_from_weight_decay
    n = exclude_from_weight_decay(net)
    params = net.collect_params()
    assert n > 0
    for name, p in params.items():
        expected = 0.0 if name.endswith(('gamma', 'beta', 'bias')) else 1.0
        assert p.wd_mult == expected, name


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


def test_nan_loss_stops_without_a_checkpoint(tiny_rec, tmp_path):
    with pytest.raises(FloatingPointError, match='training loss became'):
        train(_config(tiny_rec, tmp_path, epochs=1, base_lr=1e30, warmup_epochs=0),
              log=lambda *_: None)
    assert not [d for d in os.listdir(str(tmp_path)) if d.startswith(('epoch-', '.tmp'))]


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


def test_fashion_mnist_conversion_from_raw_idx_files(tmp_path):
    from experiments.fashion_mnist_data import build_fashion_mnist, read_idx
    rng = np.random.RandomState(0)
    images = rng.randint(0, 255, (5, 28, 28)).astype(np.uint8)
    labels = np.array([3, 1, 4, 1, 5], np.uint8)
    src = write_raw_fashion_mnist(str(tmp_path / 'raw'), images, labels)
    np.testing.assert_array_equal(read_idx(os.path.join(src, 't10k-labels-idx1-ubyte')), labels)
    paths = build_fashion_mnist(str(tmp_path / 'rec'), src, install=False)
    data = RecordDataset(paths['test'], classes=10)
    image, label = data[2]
    assert label == 4 and image.shape == (28, 28, 3)
    np.testing.assert_array_equal(image.asnumpy()[..., 0], images[2])
    with pytest.raises(FileNotFoundError, match='--source DIR'):
        build_fashion_mnist(str(tmp_path / 'x'), str(tmp_path / 'empty'), install=False)


def _garments(per_class, seed=0):
    """Distinct 28 px images, ``per_class`` of each of the 10 classes, shuffled."""
    rng = np.random.RandomState(seed)
    labels = rng.permutation(np.repeat(np.arange(10), per_class)).astype(np.uint8)
    images = rng.randint(0, 255, (len(labels), 28, 28)).astype(np.uint8)
    images[:, 0, :4] = np.arange(len(labels))[:, None] // 256  # never two alike
    images[:, 0, 4:8] = np.arange(len(labels))[:, None] % 256
    return images, labels


def _record_images(path):
    data = RecordDataset(path)
    return [(data.read_numpy(i)[0][..., 0].tobytes(), data.read_numpy(i)[1])
            for i in range(len(data))]


def test_validation_split_is_balanced_disjoint_from_training_and_fixed(tmp_path):
    from experiments.fashion_mnist_data import build_fashion_mnist, validation_indices
    # Fashion-MNIST's own counts: 6,000 per class -> 500 per class, 5,000 in all
    full = np.repeat(np.arange(10), 6000)
    val = validation_indices(full)
    assert len(val) == 5000 and np.bincount(full[val]).tolist() == [500] * 10
    np.testing.assert_array_equal(val, validation_indices(np.repeat(np.arange(10), 6000)))
    # the files: 24 images per class -> 2 per class held out
    images, labels = _garments(24)
    src = write_raw_fashion_mnist(str(tmp_path / 'raw'), images, labels)
    paths = build_fashion_mnist(str(tmp_path / 'rec'), src, install=False)
    train_items, val_items = _record_images(paths['train']), _record_images(paths['val'])
    assert (len(train_items), len(val_items)) == (220, 20)
    assert sorted(label for _, label in val_items) == sorted(list(range(10)) * 2)
    train_keys, val_keys = {k for k, _ in train_items}, {k for k, _ in val_items}
    assert not train_keys & val_keys  # no validation image is trained on
    assert train_keys | val_keys == {img.tobytes() for img in images}
    split = json.load(open(str(tmp_path / 'rec' / 'split.json')))
    assert {images[i].tobytes() for i in split['val_indices']} == val_keys
    # an older folder without the split is rebuilt; a complete one is kept as it is
    mtime = os.path.getmtime(paths['train'])
    assert build_fashion_mnist(str(tmp_path / 'rec'), src, install=False) == paths
    assert os.path.getmtime(paths['train']) == mtime


def test_main_job_selects_on_validation_and_reads_the_test_set_once(tmp_path, monkeypatch):
    job = _main_job_script()
    images, labels = _garments(8)
    test_images, test_labels = _garments(2, seed=1)
    src = write_raw_fashion_mnist(str(tmp_path / 'raw'), images, labels, test_images,
                                  test_labels)
    launched, evaluated = [], []
    real_launch, real_evaluate = job.launch_training, job.evaluate_records

    def launch_training(task, cfg, *args, **kwargs):
        launched.append(cfg)
        return real_launch(task, cfg, *args, **kwargs)

    def evaluate_records(net, info, rec, *args, **kwargs):
        evaluated.append(rec)
        return real_evaluate(net, info, rec, *args, **kwargs)
    monkeypatch.setattr(job, 'launch_training', launch_training)
    monkeypatch.setattr(job, 'evaluate_records', evaluate_records)
    data_dir = str(tmp_path / 'data')
    job.main(['--source', src, '--data-dir', data_dir, '--save-dir', str(tmp_path / 'run'),
              '--np', '1', '--epochs', '2', '--batch-size', '16', '--no-progress'])
    test_rec, val_rec = os.path.join(data_dir, 'test.rec'), os.path.join(data_dir, 'val.rec')
    assert len(launched) == 1 and launched[0].rec_val == val_rec
    assert not any('test' in os.path.basename(str(value))  # the ranks' config names no test
                   for value in dataclasses.asdict(launched[0]).values())
    assert evaluated == [test_rec]  # once, after training, on the chosen checkpoint
    summary = json.load(open(str(tmp_path / 'run' / 'summary.json')))
    history = [json.loads(line) for line in open(str(tmp_path / 'run' / 'metrics.jsonl'))]
    assert summary['val_top1'] == round(max(h['val_top1'] for h in history), 2)
    assert summary['selected_epoch'] in (1, 2) and summary['test_samples'] == 20


def test_every_training_flag_says_what_it_does_in_help():
    from gluon_resnest.segmentation.task import SegTrainConfig
    from gluon_resnest.engine.cli import config_parser
    import dataclasses
    for config in (TrainConfig, SegTrainConfig):
        for field in dataclasses.fields(config):
            assert field.metadata.get('help'), (config.__name__, field.name)
        text = config_parser(config).format_help()
        for field in dataclasses.fields(config):
            assert field.metadata['help'].split()[0] in text, field.name
        assert '(default: %s)' % config.epochs in text  # defaults shown


def test_every_flag_reaches_the_trainer():
    from gluon_resnest.engine.cli import config_from_args, config_parser
    args = config_parser(TrainConfig).parse_args(['--model', 'resnest26', '--mixup-off-epochs', '3',
                                       '--no-last-gamma', '--autoaugment', '--final-drop', '0.3',
                                       '--input-size', '192'])
    cfg = config_from_args(args, TrainConfig)
    assert (cfg.model, cfg.mixup_off_epochs, cfg.last_gamma, cfg.autoaugment, cfg.final_drop,
            cfg.input_size) == ('resnest26', 3, False, True, 0.3, 192)
    import inspect
    from gluon_resnest.classification import task
    from gluon_resnest.engine import config, hooks, loop, progress
    source = ''.join(inspect.getsource(f) for f in (
        loop.train, task, loop.setup_amp, loop.check_run_identity, config.RunConfig.validate,
        progress.progress_bar, hooks))
    for name in TrainConfig.__dataclass_fields__:  # each field is read where training happens
        assert 'cfg.' + name in source or 'self.' + name in source, name


def test_every_segmentation_flag_reaches_the_trainer():
    import inspect
    from gluon_resnest.segmentation import task as seg
    from gluon_resnest.engine import config, hooks, loop, progress
    source = ''.join(inspect.getsource(f) for f in (
        loop.train, seg, loop.setup_amp, loop.check_run_identity, config.RunConfig.validate,
        progress.progress_bar, hooks))
    for name in seg.SegTrainConfig.__dataclass_fields__:
        assert 'cfg.' + name in source or 'self.' + name in source, name


def _main_job_script():
    return importlib.import_module('experiments.main_job')


def test_every_command_is_a_console_script_and_a_clone_script():
    """setup.py's console scripts and the scripts in train/ and eval/ name the same
    ``main`` functions, and each one answers --help."""
    import setuptools
    from unittest import mock
    with mock.patch.object(setuptools, 'setup') as setup:  # setup.py's arguments, not a build
        exec(compile(open(os.path.join(ROOT, 'setup.py')).read(), 'setup.py', 'exec'),
             dict(__file__=os.path.join(ROOT, 'setup.py'), __name__='setup'))
    commands = {}
    for line in setup.call_args.kwargs['entry_points']['console_scripts']:
        name, target = (part.strip() for part in line.split('='))
        assert target.endswith(':main') and name.startswith('resnest-')
        commands[name[len('resnest-'):].replace('-', '_')] = target[:-len(':main')]
    scripts = {}
    for folder in ('train', 'eval'):
        for name in os.listdir(os.path.join(ROOT, folder)):
            if name.endswith('.py'):
                scripts[name[:-3]] = open(os.path.join(ROOT, folder, name)).read()
    assert sorted(scripts) == sorted(commands)
    for command, module_name in commands.items():
        assert 'from %s import main' % module_name in scripts[command]
        # the library's commands live in the library, the experiments' beside it
        assert module_name.split('.')[0] in ('gluon_resnest', 'experiments')
        module = importlib.import_module(module_name)
        with pytest.raises(SystemExit) as stop:
            module.main(['--help'])
        assert stop.value.code == 0


def test_main_job_longer_setting_switches_model_epochs_decay_and_run_folder():
    job = _main_job_script()
    args, _ = job.parse_args([])
    assert (args.model, args.epochs, args.wd) == ('resnest14_small', 7, 1e-4)
    args, extra = job.parse_args(['--longer', '--np', '1', '--dropblock-prob', '0'])
    assert (args.model, args.epochs, args.wd) == ('resnest14_small_s1', 60, 5e-4)
    assert os.path.basename(args.save_dir) == 'fashion-mnist-longer'
    cfg = job.training_config(args, extra)  # what the ranks read
    assert (cfg.model, cfg.epochs, cfg.wd, cfg.dropblock_prob) == ('resnest14_small_s1', 60,
                                                                   5e-4, 0.0)
    args, _ = job.parse_args(['--longer', '--epochs', '3', '--save-dir', 'elsewhere'])
    assert (args.model, args.epochs, os.path.basename(args.save_dir)) == (
        'resnest14_small_s1', 3, 'elsewhere')
    with pytest.raises(SystemExit):
        job.parse_args(['--model', 'resnest_tiny'])


@pytest.mark.parametrize('flags', [['--np', '0'], ['--epochs', '-2'], ['--batch-size', 'ten']])
def test_main_job_rejects_non_positive_sizes_naming_the_flag(flags, capsys):
    with pytest.raises(SystemExit):
        _main_job_script().parse_args(flags)
    assert "argument %s: must be a positive integer, got '%s'" % tuple(flags) \
        in capsys.readouterr().err


def test_fresh_deletes_only_a_run_folder(tmp_path):
    from gluon_resnest.engine.checkpoint import remove_run
    unrelated = tmp_path / 'photos'
    os.makedirs(str(unrelated / 'album'))
    (unrelated / 'album' / 'a.jpg').write_text('x')
    with pytest.raises(SystemExit) as stop:
        _main_job_script().main(['--fresh', '--save-dir', str(unrelated)])
    assert 'does not look like a run folder' in str(stop.value.code)
    assert (unrelated / 'album' / 'a.jpg').exists()  # untouched
    run = tmp_path / 'run'
    os.makedirs(str(run / 'epoch-0000'))
    (run / 'metrics.jsonl').write_text('{}\n')
    assert remove_run(str(run)) and not run.exists()
    nested = tmp_path / 'compare'  # a folder of runs (the segmentation comparison)
    os.makedirs(str(nested / 'resnest14_small-seed0' / 'best'))
    assert remove_run(str(nested)) and not nested.exists()


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


class _Net(object):
    """Stands in for a network and a trainer: writes a file of known content."""

    def __init__(self, text):
        self.text = text

    def save_parameters(self, path):
        with open(path, 'w') as f:
            f.write(self.text)

    save_states = save_parameters


def test_a_kill_inside_the_best_update_leaves_a_run_the_next_start_repairs(tmp_path,
                                                                          monkeypatch):
    from gluon_resnest.engine import checkpoint
    folder = str(tmp_path / 'run')
    os.makedirs(folder)
    checkpoint.save_checkpoint(folder, 0, _Net('w0'), _Net('s0'), dict(val=1.0),
                               best_metric='val')
    best = os.path.join(folder, 'best')
    assert open(os.path.join(best, 'model.params')).read() == 'w0'
    assert not os.path.exists(os.path.join(best, 'trainer.states'))  # weights only
    mask = os.umask(0o022)
    os.umask(mask)
    assert os.stat(best).st_mode & 0o777 == 0o777 & ~mask  # readable by others, not 0700
    # the process is killed between moving the old best aside and moving the new one in
    real_replace, calls = os.replace, []

    def killed_at_the_second_rename(src, dst):
        calls.append(dst)
        if dst == best:
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(checkpoint.os, 'replace', killed_at_the_second_rename)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_checkpoint(folder, 1, _Net('w1'), _Net('s1'), dict(val=2.0),
                                   best_metric='val')
    monkeypatch.setattr(checkpoint.os, 'replace', real_replace)
    assert not os.path.exists(best) and os.path.isdir(best + '.old')
    os.makedirs(os.path.join(folder, '.tmp-stale'))  # e.g. a copy a full disk interrupted
    checkpoint.repair_run(folder)
    assert open(os.path.join(best, 'model.params')).read() == 'w0'
    assert sorted(os.listdir(folder)) == ['best', 'epoch-0000', 'epoch-0001']
    # and the next improvement replaces it normally
    checkpoint.save_checkpoint(folder, 2, _Net('w2'), _Net('s2'), dict(val=3.0),
                               best_metric='val')
    assert open(os.path.join(best, 'model.params')).read() == 'w2'
    assert checkpoint.read_meta(best)['best_value'] == 3.0


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


def test_loader_workers_run_on_one_thread_each():
    import cv2
    from mxnet.gluon.data import SimpleDataset
    from gluon_resnest.engine.data import make_loader
    data = SimpleDataset([(np.zeros((2, 2, 3), np.uint8), 0)] * 4)
    threads = cv2.getNumThreads()
    # the transform reports the thread count OpenCV has in the process that runs it
    loader, _ = make_loader(data, lambda image: np.float32([cv2.getNumThreads()]), 2,
                            train=False, workers=1)
    seen = [batch[0].asnumpy().ravel().tolist() for batch in loader]
    assert seen == [[1.0, 1.0], [1.0, 1.0]]
    assert cv2.getNumThreads() == threads  # the training process keeps its own


@pytest.mark.parametrize('flags, message', [
    (['--wd', '-1'], '--wd must be a finite number in [0, inf), got -1.0'),
    (['--label-smoothing', '2'], '--label-smoothing must be a finite number in [0, 1)')])
def test_main_job_checks_passed_through_flags_before_launching(flags, message, monkeypatch):
    job = _main_job_script()
    monkeypatch.setattr(job.subprocess, 'run', lambda *a, **k: pytest.fail('launched'))
    monkeypatch.setattr(job, 'build_fashion_mnist', lambda *a, **k: pytest.fail('converted'))
    with pytest.raises(SystemExit) as stop:
        job.main(flags)
    assert message in str(stop.value.code)


def test_a_ctrl_c_that_lands_in_a_destructor_is_sent_again_not_lost(monkeypatch):
    """Python drops an exception raised inside __del__ (seen: a Ctrl-C during NDArray's free let
    training continue); the handler re-sends the signal instead of raising there."""
    import signal
    import sys as _sys
    from gluon_resnest.engine import cli
    sent = []
    monkeypatch.setattr(cli.os, 'kill', lambda pid, sig: sent.append((pid, sig)))

    class Freed(object):
        def __del__(self):
            cli._interrupt(signal.SIGINT, _sys._getframe())

    Freed()  # collected at once: the handler runs inside __del__
    deadline = time.time() + 5
    while not sent and time.time() < deadline:
        time.sleep(0.01)
    assert sent == [(os.getpid(), signal.SIGINT)]
    with pytest.raises(KeyboardInterrupt):  # anywhere else: Ctrl-C as usual
        cli._interrupt(signal.SIGINT, _sys._getframe())


@pytest.mark.slow
@pytest.mark.parametrize('signame', ['SIGINT', 'SIGTERM'])
def test_ctrl_c_or_sigterm_gives_one_line_and_the_same_command_resumes(tiny_rec, tmp_path,
                                                                       signame):
    """A one-process trainer stops the same way on Ctrl-C and on SIGTERM (which killed it
    silently before)."""
    import signal
    save_dir = str(tmp_path / 'run')
    cmd = [sys.executable, os.path.join(ROOT, 'train', 'train.py'), '--model', 'resnest14_small',
           '--classes', '4', '--rec-train', tiny_rec[0], '--rec-val', tiny_rec[1],
           '--input-size', '32', '--crop-ratio', '1', '--epochs', '200', '--batch-size', '8',
           '--workers', '0', '--save-dir', save_dir, '--no-progress', '--resume']
    # SIGINT handled as in a terminal even when the suite itself runs in the background (a
    # shell starts background jobs with SIGINT ignored, and children inherit that)
    _stop_after_first_checkpoint(cmd, save_dir, getattr(signal, signame), 120,
                                 preexec_fn=lambda: signal.signal(signal.SIGINT,
                                                                  signal.SIG_DFL))
    # what was kept is complete, and the same command continues from it
    again = subprocess.run(cmd[:cmd.index('200')] + ['2'] + cmd[cmd.index('200') + 1:],
                           capture_output=True, text=True, timeout=300,
                           env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert again.returncode == 0, again.stderr[-3000:]
    assert 'resumed from' in again.stdout


def _stop_after_first_checkpoint(cmd, save_dir, signum, wait, **popen_kwargs):
    """Start ``cmd``, send it ``signum`` once its first checkpoint is in ``save_dir`` (within
    ``wait`` s), and check it stops with one line saying what is kept, no traceback."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS='1'), **popen_kwargs)
    deadline = time.time() + wait
    while not os.path.isdir(os.path.join(save_dir, 'epoch-0000')) and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    # the shell's convention: 128 + the signal (130 after Ctrl-C, 143 after SIGTERM)
    assert proc.returncode == 128 + signum and 'Traceback' not in err, (proc.returncode,
                                                                        err[-3000:])
    assert 'interrupted: completed epochs are kept in %s' % save_dir in err


@pytest.mark.slow
@pytest.mark.parametrize('processes', [1, 2])
def test_a_terminated_main_job_stops_its_ranks_and_resumes(tmp_path, processes):
    """SIGTERM to the main job (kill, timeout, a job scheduler) reaches the training it
    launched: no rank trains on, orphaned, writing checkpoints a resumed run would race; the
    job says what is kept, and the same command continues."""
    import signal
    if processes > 1:
        require_horovodrun()
    images, labels = _garments(8)
    src = write_raw_fashion_mnist(str(tmp_path / 'raw'), images, labels, *_garments(2, seed=1))
    save_dir = str(tmp_path / 'run')
    cmd = [sys.executable, os.path.join(ROOT, 'train', 'fashion_mnist.py'), '--source', src,
           '--data-dir', str(tmp_path / 'data'), '--save-dir', save_dir, '--np', str(processes),
           '--batch-size', '16', '--no-progress', '--epochs', '400']
    _stop_after_first_checkpoint(cmd, save_dir, signal.SIGTERM, 240)

    def training():
        ps = subprocess.run(['ps', '-eo', 'args'], capture_output=True, text=True).stdout
        return [line for line in ps.splitlines() if save_dir in line]
    deadline = time.time() + 30  # Horovod gives its ranks 5 s to stop before killing them
    while training() and time.time() < deadline:
        time.sleep(0.5)
    orphans = training()
    if orphans:  # the defect: stop them, then fail
        subprocess.run(['pkill', '-f', save_dir])
    assert not orphans
    epochs = sorted(d for d in os.listdir(save_dir) if d.startswith('epoch-'))
    time.sleep(3)  # nothing writes there any more
    assert sorted(d for d in os.listdir(save_dir) if d.startswith('epoch-')) == epochs
    done = int(epochs[-1].split('-')[1]) + 1
    again = subprocess.run(cmd[:-1] + [str(done + 1)], capture_output=True, text=True,
                           timeout=600, env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.load(open(os.path.join(save_dir, 'summary.json')))['invocations'] == 2


def test_a_checkpoint_that_cannot_be_written_names_its_folder_and_leaves_nothing(tmp_path):
    import mxnet as mx
    from gluon_resnest.engine import checkpoint

    class FullDisk(_Net):
        def save_parameters(self, path):
            raise mx.base.MXNetError('[12:00:00] src/io/local_filesys.cc:209: Check failed: '
                                     'FileStream.Write incomplete')

    folder = str(tmp_path / 'run')
    os.makedirs(folder)
    with pytest.raises(OSError, match='cannot write the checkpoint .*epoch-0000 .*FileStream'):
        checkpoint.save_checkpoint(folder, 0, FullDisk('w'), _Net('s'), dict(val=1.0),
                                   best_metric='val')
    assert os.listdir(folder) == []


@pytest.mark.slow
def test_model_comparison_trains_each_model_by_the_main_job_and_tabulates(tmp_path,
                                                                         monkeypatch):
    from experiments import compare_models, main_job as fashion_mnist
    images, labels = _garments(8)
    test_images, test_labels = _garments(2, seed=1)
    src = write_raw_fashion_mnist(str(tmp_path / 'raw'), images, labels, test_images,
                                  test_labels)
    save_dir = tmp_path / 'ablation'
    argv = ['--models', 'resnetd14_small,resnest14_small_radix4', '--seeds', '3', '--epochs',
            '1', '--save-dir', str(save_dir), '--source', src, '--data-dir',
            str(tmp_path / 'data'), '--np', '1', '--batch-size', '16', '--no-progress']
    compare_models.main(argv)
    result = json.load(open(str(save_dir / 'comparison.json')))
    assert [(r['model'], r['seed']) for r in result['runs']] == [
        ('resnetd14_small', 3), ('resnest14_small_radix4', 3)]
    for row in result['runs']:  # each row is what that run's main job measured
        summary = json.load(open(str(save_dir / ('%s-seed3' % row['model']) / 'summary.json')))
        assert row['test_top1'] == summary['test_top1'] and summary['epochs'] == 1
        assert row['val_top1'] == summary['val_top1']
    # the radix ablation at matched FLOPs: the split convolution of radix r has r x the groups
    # and outputs, so only the attention's few multiply-adds separate radix 4 from ResNet-D;
    # its parameters do grow
    (p0, f0), (p4, f4) = [(result['costs'][m]['params'], result['costs'][m]['flops'])
                          for m in ('resnetd14_small', 'resnest14_small_radix4')]
    assert f0 < f4 < 1.02 * f0 and p4 > 1.1 * p0
    assert os.path.isfile(str(save_dir / 'comparison.png'))
    table = open(str(save_dir / 'comparison.md')).read().splitlines()
    assert len(table) == 4 and '`resnest14_small_radix4`' in table[3]
    # run again: finished runs are read back, nothing is trained or tested again
    monkeypatch.setattr(fashion_mnist, 'run_main_job', lambda *a, **k: pytest.fail('rerun'))
    compare_models.main(argv)
    assert json.load(open(str(save_dir / 'comparison.json')))['runs'] == result['runs']
    # the default is the radix ablation, in its own folder
    args, _ = compare_models.parse_args([])
    assert args.models == compare_models.RADIX_MODELS and args.save_dir.endswith(
        'radix-ablation')


@pytest.mark.slow
def test_recipe_comparison_trains_each_recipe_with_its_flags(tmp_path, capsys):
    """--recipe LABEL=FLAGS: every model runs with every recipe's flags (read back from what
    each run's trainer recorded), the table names them, and a label reused for other flags is
    refused before anything trains."""
    from experiments import compare_models
    images, labels = _garments(8)
    src = write_raw_fashion_mnist(str(tmp_path / 'raw'), images, labels, *_garments(2, seed=1))
    save_dir = tmp_path / 'recipes'
    common = ['--models', 'resnetd14_small', '--seeds', '0', '--epochs', '1', '--save-dir',
              str(save_dir), '--source', src, '--data-dir', str(tmp_path / 'data'), '--np', '1',
              '--batch-size', '16', '--no-progress']
    compare_models.main(common + ['--recipe', 'plain=', '--recipe',
                                  'erasing=--random-erasing 0.5 --ema-decay 0.9'])
    result = json.load(open(str(save_dir / 'comparison.json')))
    assert [r['arm'] for r in result['runs']] == ['resnetd14_small+plain',
                                                  'resnetd14_small+erasing']
    for arm, erasing, ema in (('plain', 0.0, 0.0), ('erasing', 0.5, 0.9)):
        config = read_meta(str(save_dir / ('resnetd14_small+%s-seed0' % arm) / 'best'))['config']
        assert (config['random_erasing'], config['ema_decay']) == (erasing, ema), arm
    table = open(str(save_dir / 'comparison.md')).read()
    assert '| `resnetd14_small+erasing` | --random-erasing 0.5 --ema-decay 0.9 |' in table
    with pytest.raises(SystemExit, match='holds a run of resnetd14_small with flags '
                                         '--random-erasing 0.5 --ema-decay 0.9, this '
                                         'comparison gives it resnetd14_small with flags '
                                         '--ema-decay 0.99'):
        compare_models.main(common + ['--recipe', 'erasing=--ema-decay 0.99'])
    for bad in ('noequals', '=--wd 1', 'a b=--wd 1'):
        with pytest.raises(SystemExit):
            compare_models.parse_args(['--recipe', bad])
        assert 'a recipe is LABEL=FLAGS' in capsys.readouterr().err


@pytest.mark.slow
def test_a_killed_and_resumed_default_run_is_bitwise_identical_under_the_naive_engine(
        tiny_rec, tmp_path):
    """README: with MXNET_ENGINE_TYPE=NaiveEngine a run with the default settings (data
    workers, DropBlock, mixup, label smoothing) killed after its first epoch and resumed ends
    with exactly the parameters of an uninterrupted one. (With MXNet's default threaded engine
    its oneDNN kernels differ in the last bits from run to run; see README.)"""
    import signal
    import time
    env = dict(os.environ, MXNET_ENGINE_TYPE='NaiveEngine', OMP_NUM_THREADS='2')

    def command(save_dir):
        return [sys.executable, os.path.join(ROOT, 'train', 'train.py'), '--model',
                'resnest14_small', '--classes', '4', '--rec-train', tiny_rec[0], '--rec-val',
                tiny_rec[1], '--input-size', '32', '--crop-ratio', '1', '--epochs', '3',
                '--batch-size', '8', '--save-dir', save_dir, '--no-progress', '--resume']
    full, split = str(tmp_path / 'full'), str(tmp_path / 'split')
    subprocess.run(command(full), env=env, check=True, capture_output=True, timeout=600)
    proc = subprocess.Popen(command(split), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while not os.path.isdir(os.path.join(split, 'epoch-0000')) and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the process and its data workers, mid-epoch 2
    proc.wait()
    assert not os.path.isdir(os.path.join(split, 'epoch-0002'))
    again = subprocess.run(command(split), env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and 'resumed from' in again.stdout, again.stderr[-2000:]
    a = mx.nd.load(os.path.join(full, 'epoch-0002', 'model.params'))
    b = mx.nd.load(os.path.join(split, 'epoch-0002', 'model.params'))
    assert a.keys() == b.keys()
    for key in a:
        assert np.array_equal(a[key].asnumpy(), b[key].asnumpy()), key


def test_main_job_trains_evaluates_and_exports_other_families_at_their_training_size(tmp_path):
    """FBNet needs at least 32 px: the main job passes --input-size through, validates, tests
    and exports at that size (the test set still read once)."""
    from experiments import main_job as fashion_mnist
    images, labels = _garments(12)
    src = write_raw_fashion_mnist(str(tmp_path / 'raw'), images, labels, *_garments(2, seed=1))
    summary = fashion_mnist.run_main_job(*fashion_mnist.parse_args(
        ['--source', src, '--data-dir', str(tmp_path / 'data'), '--save-dir',
         str(tmp_path / 'run'), '--model', 'sa_fbnetv2_f1', '--np', '1', '--epochs', '1',
         '--batch-size', '8', '--no-progress', '--input-size', '32', '--crop-ratio', '1',
         '--dropblock-prob', '0', '--max-iters', '2']), log=lambda *_: None)
    assert summary['test_samples'] == 20 and summary['model'] == 'sa_fbnetv2_f1'
    sym = mx.sym.load(summary['symbol'])
    _, out_shapes, _ = sym.infer_shape(data=(1, 3, 32, 32))
    assert out_shapes == [(1, 10)]
    assert summary['invocations'] == 1


def test_run_clock_counts_every_invocation_of_a_run(tmp_path, monkeypatch):
    """summary.json's wall_seconds after a resume: the interrupted invocation's time counts,
    the time between invocations does not."""
    from gluon_resnest.engine import checkpoint
    now = [1000.0]
    monkeypatch.setattr(checkpoint.time, 'time', lambda: now[0])
    with pytest.raises(KeyboardInterrupt):
        with checkpoint.RunClock(str(tmp_path / 'run')):
            now[0] += 30.0
            raise KeyboardInterrupt  # Ctrl-C
    now[0] += 500.0  # nothing running
    with checkpoint.RunClock(str(tmp_path / 'run')) as clock:
        now[0] += 12.0
        assert clock.seconds() == 42.0 and clock.invocations == 2
    assert json.load(open(str(tmp_path / 'run' / 'wall_seconds.json'))) == dict(
        wall_seconds=42.0, invocations=2)
    # a folder holding only the clock is a run folder: --fresh may delete it
    assert checkpoint.remove_run(str(tmp_path / 'run'))


def _train_command(tiny_rec, save_dir, *extra):
    return [sys.executable, os.path.join(ROOT, 'train', 'train.py'), '--model', 'resnest14_small',
            '--classes', '4', '--rec-train', tiny_rec[0], '--rec-val', tiny_rec[1],
            '--input-size', '32', '--crop-ratio', '1', '--epochs', '4', '--batch-size', '4',
            '--workers', '0', '--save-dir', save_dir, '--no-progress'] + list(extra)


@pytest.mark.slow
def test_the_same_command_after_a_kill_resumes_and_another_run_is_refused(tiny_rec, tmp_path):
    """kill -9 during epoch 3 of 4, then the same command (without --resume) continues from the
    newest checkpoint; a command for another run into that folder is refused without touching
    it; --fresh starts over."""
    import signal
    save_dir = str(tmp_path / 'run')
    command = _train_command(tiny_rec, save_dir)
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not os.path.isdir(os.path.join(save_dir, 'epoch-0001')) and time.time() < deadline:
        assert proc.poll() is None, 'training ended before it could be killed'
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = sorted(d for d in os.listdir(save_dir) if d.startswith('epoch-'))
    assert done and done[-1] != 'epoch-0003', done  # killed before the last epoch ended
    kept = int(done[-1][len('epoch-'):]) + 1  # epochs completed before the kill
    other = subprocess.run(_train_command(tiny_rec, save_dir, '--base-lr', '0.05'),
                           capture_output=True, text=True, timeout=300)
    assert other.returncode != 0 and 'Traceback' not in other.stderr
    assert '--base-lr 0.1 there, 0.05 here' in other.stderr and '--resume' in other.stderr \
        and '--fresh' in other.stderr, other.stderr[-2000:]
    assert sorted(d for d in os.listdir(save_dir) if d.startswith('epoch-')) == done
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert 'resumed from %s (epoch %d done)' % (os.path.join(save_dir, done[-1]), kept) \
        in again.stdout, again.stdout[-2000:]
    history = [json.loads(line) for line in open(os.path.join(save_dir, 'metrics.jsonl'))]
    assert [h['epoch'] for h in history] == [1, 2, 3, 4]
    fresh = subprocess.run(_train_command(tiny_rec, save_dir, '--base-lr', '0.05', '--fresh',
                                          '--epochs', '1'),
                           capture_output=True, text=True, timeout=300)
    assert fresh.returncode == 0 and 'resumed' not in fresh.stdout, fresh.stderr[-2000:]
    history = [json.loads(line) for line in open(os.path.join(save_dir, 'metrics.jsonl'))]
    assert [h['epoch'] for h in history] == [1]
    assert sorted(d for d in os.listdir(save_dir) if d.startswith('epoch-')) == ['epoch-0000']
    both = subprocess.run(command + ['--fresh', '--resume'], capture_output=True, text=True,
                          timeout=300)
    assert both.returncode != 0 and '--fresh deletes the run that --resume continues' in \
        both.stderr


def test_resume_skips_a_damaged_newest_checkpoint_and_names_it(tiny_rec, tmp_path):
    quick = dict(autoaugment=False, mixup_alpha=0.0, max_iters=2)
    train(_config(tiny_rec, tmp_path / 'run', epochs=2, **quick), log=lambda *a: None)
    newest = tmp_path / 'run' / 'epoch-0001' / 'model.params'
    data = newest.read_bytes()
    newest.write_bytes(data[:len(data) // 2])
    said = []
    _, summary = train(_config(tiny_rec, tmp_path / 'run', epochs=3, resume=True, **quick),
                       log=said.append)
    assert any('checkpoint %s cannot be used' % newest.parent in line and
               'not a readable .params file' in line for line in said), said
    assert any('resumed from %s (epoch 1 done)' % (tmp_path / 'run' / 'epoch-0000') in line
               for line in said), said
    assert [h['epoch'] for h in summary['history']] == [1, 2, 3]


@pytest.mark.parametrize('size', [0, -5])
def test_an_input_size_below_one_is_refused(tiny_rec, tmp_path, size):
    with pytest.raises(ValueError, match='--input-size must be a positive integer, got %d'
                                         % size):
        train(_config(tiny_rec, tmp_path / 'run', input_size=size))
    assert not os.path.exists(str(tmp_path / 'run'))
