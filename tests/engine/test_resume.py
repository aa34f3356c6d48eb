"""Resuming a run: on another number of processes it continues its schedule at the learning
rate of its new global batch, saying so in one line; the optimizer's states stay with their
parameters whatever the process built before, and older checkpoints' states are moved to
them."""
import json
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

from helpers import require_horovodrun

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'toy_worker.py')


def _train(processes, legacy=False, **config):
    command = [sys.executable, WORKER, json.dumps(dict(config, progress=False))] + (
        ['--legacy'] if legacy else [])
    if processes > 1:
        command = [require_horovodrun(), '--gloo', '-np', str(processes), '-H',
                   'localhost:%d' % processes] + command
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    if legacy:  # stopped right after its first checkpoint, before its metrics
        return None, proc.stdout
    with open(os.path.join(config['save_dir'], 'metrics.jsonl')) as f:
        return [json.loads(line) for line in f], proc.stdout


@pytest.mark.slow
def test_a_run_resumed_on_two_processes_trains_at_the_two_process_rate(tmp_path):
    resumed = str(tmp_path / 'resumed')
    first, _ = _train(1, save_dir=resumed, epochs=1)
    history, out = _train(2, save_dir=resumed, epochs=3, resume=True)
    fresh, _ = _train(2, save_dir=str(tmp_path / 'fresh'), epochs=3)
    # 48 samples: 6 steps an epoch of 8 on one process, 3 steps of 2 x 8 on two
    assert [(h['world_size'], h['global_batch']) for h in history] == [(1, 8), (2, 16), (2, 16)]
    assert history[0] == first[0]
    for mine, theirs in zip(history[1:], fresh[1:]):
        assert mine['lr'] == pytest.approx(theirs['lr'], rel=1e-9)
    lines = [line for line in out.splitlines() if 'continues on 2' in line]
    assert len(lines) == 1 and 'global batch of 8' in lines[0] and 'with 16' in lines[0]


def test_older_checkpoints_optimizer_states_are_moved_to_their_parameters(tmp_path):
    """Checkpoints before the order was recorded indexed momenta by the parameters' global
    names: resumed, they continue bitwise as the uninterrupted run."""
    _train(1, save_dir=str(tmp_path / 'split'), epochs=3, legacy=True)
    meta = json.load(open(str(tmp_path / 'split' / 'epoch-0000' / 'meta.json')))
    assert meta['optimizer_order'] is None
    resumed, _ = _train(1, save_dir=str(tmp_path / 'split'), epochs=3)
    full, _ = _train(1, save_dir=str(tmp_path / 'full'), epochs=3)
    assert [h['epoch'] for h in resumed] == [1, 2, 3]
    saved = [mx.nd.load(str(tmp_path / run / 'epoch-0002' / 'model.params'))
             for run in ('split', 'full')]
    for key in saved[0]:
        np.testing.assert_array_equal(saved[0][key].asnumpy(), saved[1][key].asnumpy(), key)


def test_optimizer_states_follow_their_parameters_whatever_was_built_before(tmp_path):
    """MXNet's Trainer orders parameters by their global names (``dense10_`` before
    ``dense9_``), which change with what a process built before: a run resumed in a process with
    other names put momenta on other parameters (or failed on their shapes)."""
    from gluon_resnest.engine import loop
    from helpers import KilledAfterCheckpoint, killed_after_first_checkpoint
    from toy_task import ToyConfig, ToyTask

    def run(name):
        cfg = ToyConfig(save_dir=str(tmp_path / name), progress=False, epochs=3)
        return loop.train(ToyTask(), cfg, log=lambda *a: None)[0]
    full = run('full')
    with killed_after_first_checkpoint(), pytest.raises(KilledAfterCheckpoint):
        run('split')
    def number(layer):
        return int(layer.name[len('dense'):].split('_')[0])
    made = number(mx.gluon.nn.Dense(1))
    while len(str(made + 2)) == len(str(made + 1)):  # until the resumed network's two layers
        made = number(mx.gluon.nn.Dense(1))         # are, e.g., dense99 and dense100
    resumed = run('split')
    a, b = (net._collect_params_with_prefix() for net in (full, resumed))
    first, second = (int(b[k].name[len('dense'):].split('_')[0]) for k in ('0.weight', '2.weight'))
    assert len(str(second)) == len(str(first)) + 1  # sorted by name, the second comes first
    for key in a:
        np.testing.assert_array_equal(a[key].data().asnumpy(), b[key].data().asnumpy(), key)
