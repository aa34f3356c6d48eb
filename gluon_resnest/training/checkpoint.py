"""Atomic checkpoints: each one is a folder written under a temporary name and renamed into place,
so a run killed at any moment leaves only complete checkpoints behind."""
import contextlib
import json
import os
import shutil
import tempfile

__all__ = ['save_checkpoint', 'latest_checkpoint', 'load_checkpoint', 'check_writable',
           'write_jsonl', 'remove_run', 'read_meta', 'atomic_folder']

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
    """Yields a temporary folder beside ``final`` to fill; on success it replaces ``final``
    (removed first if present), on any error it is deleted: ``final`` is never half-written."""
    parent = os.path.dirname(os.path.abspath(final))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix='.tmp-', dir=parent)
    try:
        yield tmp
        if os.path.exists(final):
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_checkpoint(folder, epoch, net, trainer, meta, keep=3, best_metric=None):
    """Write ``epoch-NNNN/`` (params, trainer states, meta.json), keep the last ``keep`` and the
    one with the best ``meta[best_metric]`` (copied to ``best/``). Returns the folder."""
    final = os.path.join(folder, '%s%04d' % (PREFIX, epoch))
    with atomic_folder(final) as tmp:
        net.save_parameters(os.path.join(tmp, 'model.params'))
        trainer.save_states(os.path.join(tmp, 'trainer.states'))
        with open(os.path.join(tmp, 'meta.json'), 'w') as f:  # written last: marks completion
            json.dump(dict(meta, epoch=epoch), f, indent=1, sort_keys=True)
    if best_metric is not None:
        _update_best(folder, final, meta.get(best_metric))
    for old in _complete(folder)[:-keep] if keep > 0 else []:
        shutil.rmtree(os.path.join(folder, old), ignore_errors=True)
    return final


def _update_best(folder, candidate, value):
    best = os.path.join(folder, 'best')
    meta = os.path.join(best, 'meta.json')
    if value is None:
        return
    if os.path.isfile(meta):
        with open(meta) as f:
            previous = json.load(f).get('best_value')
        if previous is not None and previous >= value:
            return
    tmp = tempfile.mkdtemp(prefix='.tmp-best-', dir=folder)
    os.rmdir(tmp)
    shutil.copytree(candidate, tmp)
    with open(os.path.join(tmp, 'meta.json')) as f:
        data = json.load(f)
    data['best_value'] = value
    with open(os.path.join(tmp, 'meta.json'), 'w') as f:
        json.dump(data, f, indent=1, sort_keys=True)
    old = best + '.old'
    if os.path.exists(best):
        os.replace(best, old)
    os.replace(tmp, best)
    shutil.rmtree(old, ignore_errors=True)


def latest_checkpoint(folder):
    """The newest complete checkpoint folder under ``folder``, or None."""
    if not os.path.isdir(folder):
        return None
    done = _complete(folder)
    return os.path.join(folder, done[-1]) if done else None


def read_meta(path):
    """The meta.json of a checkpoint folder, or FileNotFoundError naming the folder."""
    meta_path = os.path.join(path, 'meta.json')
    if not os.path.isfile(meta_path):
        raise FileNotFoundError('%s is not a checkpoint folder (no meta.json)' % path)
    with open(meta_path) as f:
        return json.load(f)


def load_checkpoint(path, net, trainer, ctx):
    """Load params and trainer states from a checkpoint folder; returns its meta dict."""
    net.load_parameters(os.path.join(path, 'model.params'), ctx=ctx)
    trainer.load_states(os.path.join(path, 'trainer.states'))
    with open(os.path.join(path, 'meta.json')) as f:
        return json.load(f)


def write_jsonl(path, rows):
    """Write ``rows`` as JSON lines, atomically (the whole history each time, so a killed and
    resumed run logs every epoch exactly once)."""
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        f.writelines(json.dumps(row) + '\n' for row in rows)
    os.replace(tmp, path)


# what the trainers and the jobs over them write into a run folder
RUN_MARKERS = ('metrics.jsonl', 'summary.json', 'comparison.json', 'best')


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
