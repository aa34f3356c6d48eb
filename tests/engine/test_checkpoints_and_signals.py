"""Atomic checkpoints and their repair, the run clock, and how commands end on Ctrl-C and
SIGTERM (through the classification command, the engine's first user)."""
import json
import os
import subprocess
import sys
import time

import pytest
from helpers import ROOT, signal_after_first_checkpoint


class _Net(object):
    """Stands in for a network and a trainer: writes a file of known content."""

    def __init__(self, text):
        self.text = text

    def save_parameters(self, path):
        with open(path, 'w') as f:
            f.write(self.text)

    save_states = save_parameters





def _train_command(tiny_rec, save_dir, *extra):
    return [sys.executable, os.path.join(ROOT, 'train', 'train.py'), '--model', 'resnest14_small',
            '--classes', '4', '--rec-train', tiny_rec[0], '--rec-val', tiny_rec[1],
            '--input-size', '32', '--crop-ratio', '1', '--epochs', '4', '--batch-size', '4',
            '--workers', '0', '--save-dir', save_dir, '--no-progress'] + list(extra)


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
    signal_after_first_checkpoint(cmd, save_dir, getattr(signal, signame), 120,
                                 preexec_fn=lambda: signal.signal(signal.SIGINT,
                                                                  signal.SIG_DFL))
    # what was kept is complete, and the same command continues from it
    again = subprocess.run(cmd[:cmd.index('200')] + ['2'] + cmd[cmd.index('200') + 1:],
                           capture_output=True, text=True, timeout=300,
                           env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert again.returncode == 0, again.stderr[-3000:]
    assert 'resumed from' in again.stdout


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
