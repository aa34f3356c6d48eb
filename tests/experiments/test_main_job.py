"""The Fashion-MNIST main job and the comparisons built on it (experiments/)."""
import importlib
import dataclasses
import json
import os
import subprocess
import sys
import time

import mxnet as mx
import numpy as np
import pytest

from gluon_resnest.engine.checkpoint import read_meta
from gluon_resnest.classification.data import RecordDataset
from helpers import ROOT, require_horovodrun, signal_after_first_checkpoint, write_raw_fashion_mnist


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


def _main_job_script():
    return importlib.import_module('experiments.main_job')





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
    signal_after_first_checkpoint(cmd, save_dir, signal.SIGTERM, 240)

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
