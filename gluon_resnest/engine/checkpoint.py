"""Atomic checkpoints: each one is a folder written under a temporary name and renamed into place,
so a run killed at any moment leaves only complete checkpoints behind."""
import contextlib
import json
import os
import shutil
import tempfile
import time

import mxnet as mx

from ..zoo.store import read_params_file

__all__ = ['save_checkpoint', 'latest_checkpoint', 'latest_readable_checkpoint',
           'load_checkpoint', 'check_writable', 'atomic_file',
           'write_text', 'write_json', 'write_jsonl', 'check_output_file', 'remove_run',
           'read_meta',
           'atomic_folder', 'repair_run', 'RunClock', 'trainer_parameters',
           'OPTIMIZER_ORDER']

PREFIX = 'epoch-'


def check_writable(folder):
    """Create ``folder`` if needed and prove it writable, or raise PermissionError naming it."""
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise PermissionError('cannot write to the save directory %s (%s)' % (folder, err.strerror
                                                                            or err)) from None


def _complete(folder):
    return [d for d in sorted(os.listdir(folder)) if d.startswith(PREFIX)
            and os.path.isfile(os.path.join(folder, d, 'meta.json'))]


@contextlib.contextmanager
def atomic_folder(final):
    """Yields a temporary folder beside ``final`` to fill; on success it takes ``final``'s
    place, on any error it is deleted: ``final`` is never half-written. A previous ``final`` is
    renamed ``final.old`` until the new one is in place, so a kill between the two renames
    leaves it there for :func:`repair_run` to put back."""
    parent = os.path.dirname(os.path.abspath(final))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix='.tmp-', dir=parent)
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp's 0700 would hide the results from others
    old = final + '.old'
    try:
        yield tmp
        if os.path.exists(final):
            if os.path.exists(old):
                shutil.rmtree(old)
            os.replace(final, old)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def repair_run(folder):
    """Undo what a kill inside :func:`atomic_folder` can leave in ``folder``: a ``X.old``
    whose ``X`` is missing is put back, other ``X.old`` and every ``.tmp-*`` are removed.
    Call it before writing, with no other writer running (rank 0 at start)."""
    if not os.path.isdir(folder):
        return
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if name.startswith('.tmp-'):
            shutil.rmtree(path, ignore_errors=True)
        elif name.endswith('.old') and os.path.isdir(path):
            if os.path.exists(path[:-4]):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.replace(path, path[:-4])


AVERAGE = 'ema.params'  # a checkpoint's moving average of the weights (engine.ema)


def save_checkpoint(folder, epoch, net, trainer, meta, keep=3, best_metric=None, average=None):
    """Write ``epoch-NNNN/`` (params, trainer states, meta.json, and ``ema.params`` when an
    ``average`` of the weights is kept), keep the last ``keep`` and the one with the best
    ``meta[best_metric]`` (copied to ``best/``). Returns the folder."""
    final = os.path.join(folder, '%s%04d' % (PREFIX, epoch))
    with atomic_folder(final) as tmp:
        try:
            net.save_parameters(os.path.join(tmp, 'model.params'))
            trainer.save_states(os.path.join(tmp, 'trainer.states'))
            if average is not None:
                average.save(os.path.join(tmp, AVERAGE))
        except mx.base.MXNetError as err:  # e.g. a full disk: "FileStream.Write incomplete"
            raise OSError('cannot write the checkpoint %s (%s); nothing of it was kept'
                          % (final, str(err).strip().split('\n')[0][:200])) from None
        with open(os.path.join(tmp, 'meta.json'), 'w') as f:  # written last: marks completion
            json.dump(dict(meta, epoch=epoch), f, indent=1, sort_keys=True)
    if best_metric is not None:
        _update_best(folder, final, meta.get(best_metric))
    for old in _complete(folder)[:-keep] if keep > 0 else []:
        shutil.rmtree(os.path.join(folder, old), ignore_errors=True)
    return final


def _update_best(folder, candidate, value):
    """Copy ``candidate``'s validated weights (its moving average where it has one, else its
    weights) as ``best/model.params``, and its meta, to ``best/`` when ``value`` beats the
    recorded best; not its optimizer states: best/ is for evaluation and deployment."""
    best = os.path.join(folder, 'best')
    if value is None:
        return
    if os.path.isfile(os.path.join(best, 'meta.json')):
        previous = read_meta(best).get('best_value')
        if previous is not None and previous >= value:
            return
    with atomic_folder(best) as tmp:
        weights = AVERAGE if os.path.isfile(os.path.join(candidate, AVERAGE)) else 'model.params'
        shutil.copy2(os.path.join(candidate, weights), os.path.join(tmp, 'model.params'))
        data = dict(read_meta(candidate), best_value=value)
        with open(os.path.join(tmp, 'meta.json'), 'w') as f:
            json.dump(data, f, indent=1, sort_keys=True)


def latest_checkpoint(folder):
    """The newest complete checkpoint folder under ``folder``, or None."""
    if not os.path.isdir(folder):
        return None
    done = _complete(folder)
    return os.path.join(folder, done[-1]) if done else None


def latest_readable_checkpoint(folder, warn=None):
    """The newest complete checkpoint of ``folder`` whose files can be read, or None. A newer
    one that cannot (e.g. a truncated ``model.params``) is named through ``warn`` and skipped:
    the run resumes from the one before it."""
    if not os.path.isdir(folder):
        return None
    for name in reversed(_complete(folder)):
        path = os.path.join(folder, name)
        try:
            read_params_file(os.path.join(path, 'model.params'))
            _check_trainer_states(os.path.join(path, 'trainer.states'))
            return path
        except (ValueError, FileNotFoundError) as err:
            if warn:
                warn('warning: checkpoint %s cannot be used (%s); resuming from the one '
                     'before it' % (path, err))
    return None


def _check_trainer_states(path):
    """ValueError unless ``path`` holds what ``Trainer.save_states`` writes (a pickle of the
    optimizer and its states)."""
    import pickle
    if not os.path.isfile(path):
        raise FileNotFoundError('%s not found' % path)
    try:
        with open(path, 'rb') as f:
            pickle.load(f)
    except Exception:  # a truncated pickle fails in many ways
        raise ValueError('%s is not a readable optimizer state file (truncated or corrupt)'
                         % path) from None


def read_meta(path):
    """The meta.json of a checkpoint folder, or FileNotFoundError naming the folder."""
    meta_path = os.path.join(path, 'meta.json')
    if not os.path.isfile(meta_path):
        raise FileNotFoundError('%s is not a checkpoint folder (no meta.json)' % path)
    with open(meta_path) as f:
        return json.load(f)


# how a checkpoint's optimizer states are indexed: by the parameters' structural names, sorted
# (``trainer_parameters``); older checkpoints followed MXNet's sort of their global names, which
# depend on what the process built before
OPTIMIZER_ORDER = 'structural'


def trainer_parameters(net):
    """``net``'s parameters keyed by structural name: MXNet's Trainer (and Horovod's) index them
    in the sorted order of these keys, the same in every process. Keyed by their global names
    (``net.collect_params()``) the order changed with what a process had built before, and a
    resumed optimizer's momenta could land on other parameters."""
    return net._collect_params_with_prefix()


def _reindex_optimizer_states(trainer, net):
    """Move optimizer states saved in the order of the parameters' global names (checkpoints
    before OPTIMIZER_ORDER) to the trainer's order; a process that builds the network as the
    saving one did gives its parameters the same global names."""
    index = {id(p): i for i, p in enumerate(trainer._params)}
    params = net.collect_params()
    move = {i: index[id(params[name])] for i, name in enumerate(sorted(params.keys()))
            if id(params[name]) in index}
    for updater in trainer._updaters:
        updater.states = {move[i]: state for i, state in updater.states.items()}
        updater.states_synced = {move[i]: synced for i, synced in updater.states_synced.items()}
        for counts in updater.optimizer._all_index_update_counts.values():
            moved = {move[i]: count for i, count in counts.items()}
            counts.clear()
            counts.update(moved)


def load_checkpoint(path, net, trainer, ctx):
    """Load params and trainer states from a checkpoint folder; returns its meta dict."""
    net.load_parameters(os.path.join(path, 'model.params'), ctx=ctx)
    trainer.load_states(os.path.join(path, 'trainer.states'))
    with open(os.path.join(path, 'meta.json')) as f:
        meta = json.load(f)
    if meta.get('optimizer_order') != OPTIMIZER_ORDER:
        _reindex_optimizer_states(trainer, net)
    return meta


@contextlib.contextmanager
def atomic_file(path):
    """Yields a temporary path beside ``path`` to write; on success it replaces ``path``, on
    any error it is removed: a reader never sees half a file, a failed write leaves nothing."""
    root, ext = os.path.splitext(path)
    tmp = root + '.tmp' + ext  # the extension kept: writers that choose a format by it
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text(path, text):
    """Write ``text`` to ``path`` atomically (:func:`atomic_file`)."""
    with atomic_file(path) as tmp, open(tmp, 'w') as f:
        f.write(text)


def check_output_file(path, flag='--out'):
    """ValueError unless ``path`` can be written as a file: not a folder, in a folder that
    exists and is writable. For results written after long work: checked before it."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise ValueError('%s %s is a folder; it takes a file name (e.g. %s)'
                         % (flag, path, os.path.join(path, 'scores.json')))
    if not os.path.isdir(folder):
        raise ValueError('%s %s: folder %s does not exist' % (flag, path, folder))
    if not os.access(folder, os.W_OK):
        raise ValueError('%s %s: folder %s is not writable' % (flag, path, folder))
    return path


def write_json(path, data):
    """Write ``data`` as indented JSON, atomically."""
    write_text(path, json.dumps(data, indent=1))


def write_jsonl(path, rows):
    """Write ``rows`` as JSON lines, atomically (the whole history each time, so a killed and
    resumed run logs every epoch exactly once)."""
    write_text(path, ''.join(json.dumps(row) + '\n' for row in rows))


class RunClock(object):
    """Wall time of a run over all its invocations (interrupted, then resumed by the same
    command): the earlier invocations' total is kept in ``folder/wall_seconds.json`` and
    updated whenever this invocation calls :meth:`save` or leaves the ``with`` block, normally,
    by an error or by Ctrl-C (a SIGKILL loses only the time since the last save)."""

    FILE = 'wall_seconds.json'

    def __init__(self, folder):
        self.path = os.path.join(folder, self.FILE)
        self.start = time.time()
        self.earlier, self.invocations = 0.0, 1
        if os.path.isfile(self.path):
            try:
                with open(self.path) as f:
                    kept = json.load(f)
                self.earlier = float(kept['wall_seconds'])
                self.invocations = int(kept['invocations']) + 1
            except (ValueError, KeyError, TypeError):
                pass  # unreadable: count from now

    def seconds(self):
        """Seconds of every invocation so far, this one included."""
        return self.earlier + time.time() - self.start

    def save(self):
        os.makedirs(os.path.dirname(self.path) or '.', exist_ok=True)
        write_json(self.path, dict(wall_seconds=round(self.seconds(), 1),
                                   invocations=self.invocations))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        try:
            self.save()
        except OSError:
            pass  # a full disk must not hide the error that ended the run


# what the trainers and the jobs over them write into a run folder
RUN_MARKERS = ('metrics.jsonl', 'summary.json', 'comparison.json', 'best', RunClock.FILE)


def _is_run(folder):
    names = os.listdir(folder)
    return any(n in RUN_MARKERS or n.startswith(PREFIX) for n in names) or any(
        os.path.isdir(os.path.join(folder, n)) and _is_run(os.path.join(folder, n))
        for n in names)


def remove_run(folder):
    """Delete a run folder (``--fresh``) only if the project wrote it: it holds checkpoints or
    metrics (itself or in sub-folders), or is empty. Anything else is refused, unchanged."""
    if not os.path.isdir(folder):
        return False
    if os.listdir(folder) and not _is_run(folder):
        raise FileExistsError('%s does not look like a run folder (no checkpoints or metrics); '
                              'refusing to delete it: pass another --save-dir' % folder)
    shutil.rmtree(folder)
    return True
