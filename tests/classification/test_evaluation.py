import json
import os
import subprocess
import sys

import mxnet as mx
import pytest

from mxnet.gluon import nn

from gluon_resnest.analysis.accuracy import evaluate_records, load_network
from gluon_resnest.classification.data import write_records
from helpers import ROOT, colored_images, require_horovodrun



class ChannelOracle(nn.HybridBlock):
    """Predicts the brightest color channel: a model whose answers are known in advance."""

    def hybrid_forward(self, F, x):
        return F.flatten(F.contrib.AdaptiveAvgPooling2D(x, output_size=1)) * 10


@pytest.fixture(scope='module')
def oracle_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp('eval')
    images, labels = colored_images(45, 3, 28)
    right = write_records(str(folder / 'right'), images, labels)
    wrong = write_records(str(folder / 'wrong'), images,
                          [(l + 1) % 3 if i % 3 == 0 else l for i, l in enumerate(labels)])
    net = ChannelOracle()
    net.hybridize()
    net(mx.nd.zeros((1, 3, 28, 28)))
    net.export(str(folder / 'oracle'))
    return right, wrong, str(folder / 'oracle-symbol.json'), str(folder / 'oracle-0000.params')


def test_a_perfect_model_scores_100_and_a_relabelled_set_less(oracle_data):
    right, wrong, sym, params = oracle_data
    net, info, _ = load_network('resnest14_small', params, sym)
    assert evaluate_records(net, info, right, batch_size=8, workers=0)['top1'] == 100.0
    result = evaluate_records(net, info, wrong, batch_size=8, workers=0)
    assert result['samples'] == 45 and result['correct'] == 30
    assert result['top1'] == pytest.approx(200 / 3.0)


@pytest.mark.slow
def test_two_process_evaluation_equals_one_process(oracle_data):
    launcher = require_horovodrun()
    right, wrong, sym, params = oracle_data
    cmd = [sys.executable, os.path.join(ROOT, 'eval', 'evaluate.py'), '--model',
           'resnest14_small', '--symbol', sym, '--params', params, '--rec-val', wrong,
           '--batch-size', '4', '--workers', '0']
    single = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    multi = subprocess.run([launcher, '--gloo', '-np', '2', '-H', 'localhost:2'] + cmd,
                           capture_output=True, text=True, timeout=300,
                           env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert single.returncode == 0 and multi.returncode == 0, multi.stderr[-2000:]
    assert 'evaluating %s' % wrong in single.stderr  # a progress bar on long sets
    again = subprocess.run(cmd + ['--no-progress'], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and 'evaluating' not in again.stderr
    one = json.loads(single.stdout.strip().splitlines()[-1])
    lines = [l for l in multi.stdout.splitlines() if '{' in l]
    two = json.loads(lines[-1][lines[-1].index('{'):])
    assert (one['world_size'], two['world_size']) == (1, 2)
    assert one['backend'] == two['backend'] == 'onednn'  # the CPU's default: oneDNN fusion
    for key in ('correct', 'samples', 'top1', 'top5'):
        assert one[key] == two[key], key


def test_bad_evaluation_inputs(oracle_data, tmp_path):
    right, _, sym, params = oracle_data
    with pytest.raises(FileNotFoundError, match='not found'):
        load_network('resnest14_small', str(tmp_path / 'nope.params'))
    with pytest.raises(ValueError, match='unknown model'):
        load_network('resnet50', params, sym)
    with pytest.raises(FileNotFoundError, match='not a checkpoint folder'):
        load_network(checkpoint=str(tmp_path))
    other = str(tmp_path / 'r14.params')
    import gluon_resnest as gr
    net = gr.get_model('resnest14', classes=10)
    net.initialize()
    net.save_parameters(other)
    with pytest.raises(ValueError, match='does not fit resnest14_small with 10 classes'):
        load_network('resnest14_small', other)


def test_evaluate_refuses_negative_workers_and_a_class_count_against_the_checkpoint(tmp_path):
    root = ROOT
    proc = subprocess.run([sys.executable, os.path.join(root, 'eval', 'evaluate.py'),
                           '--rec-val', 'x.rec', '--model', 'resnest14_small', '--workers', '-1'],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "--workers: must be an integer >= 0, got '-1'" in proc.stderr
    folder = tmp_path / 'ckpt'
    os.makedirs(str(folder))
    (folder / 'meta.json').write_text(json.dumps({'config': {'model': 'resnest14_small',
                                                             'classes': 10}}))
    with pytest.raises(ValueError, match='--classes 4, but the checkpoint .* has 10 classes'):
        load_network(checkpoint=str(folder), classes=4)


def test_truncated_or_mismatched_files_are_named(tmp_path):
    import gluon_resnest as gr
    from gluon_resnest.deploy.export import import_symbol
    net = gr.get_model('resnest14_small', classes=10)
    net.initialize()
    sym, params = gr.export_model(net, str(tmp_path / 'm'), (1, 3, 28, 28))
    data = open(params, 'rb').read()
    truncated = str(tmp_path / 'cut.params')
    open(truncated, 'wb').write(data[:len(data) // 2])
    with pytest.raises(ValueError, match='cut.params is not a readable .params file'):
        load_network(model='resnest14_small', params=truncated)
    with pytest.raises(ValueError, match='cut.params is not a readable .params file'):
        import_symbol(sym, truncated)
    corrupt = str(tmp_path / 'bad-symbol.json')
    open(corrupt, 'w').write(open(sym).read()[:200])
    with pytest.raises(ValueError, match='bad-symbol.json with .*m-0000.params: not a readable'):
        import_symbol(corrupt, params)
    other = gr.get_model('resnest14_small', classes=3)
    other.initialize()
    _, other_params = gr.export_model(other, str(tmp_path / 'o'), (1, 3, 28, 28))
    with pytest.raises(ValueError, match='do not fit it'):
        import_symbol(sym, other_params)


def test_a_checkpoint_with_a_truncated_params_file_is_named(tmp_path):
    import gluon_resnest as gr
    folder = tmp_path / 'best'
    os.makedirs(str(folder))
    (folder / 'meta.json').write_text(json.dumps({'config': {'model': 'resnest14_small',
                                                             'classes': 10}}))
    net = gr.get_model('resnest14_small', classes=10)
    net.initialize()
    net.save_parameters(str(folder / 'model.params'))
    data = (folder / 'model.params').read_bytes()
    (folder / 'model.params').write_bytes(data[:len(data) // 3])
    with pytest.raises(ValueError, match='model.params is not a readable .params file'):
        load_network(checkpoint=str(folder))
    root = ROOT
    proc = subprocess.run([sys.executable, os.path.join(root, 'eval', 'evaluate.py'),
                           '--checkpoint', str(folder), '--rec-val', 'x.rec'],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and 'Traceback' not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        'error: %s is not a readable .params file (truncated or corrupt)'
        % (folder / 'model.params')], proc.stderr
