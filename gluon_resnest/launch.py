"""Training runs launched on local Horovod ranks from Python: the caller's config is written
to one JSON file, and every rank runs this module's worker on it (``python -m
gluon_resnest.launch FILE``) instead of receiving a hand-built list of flags. Used by the
experiments (the main job, the scenes demo) and the trainer benchmark. Ranks find their task
by name in the engine's registry (engine.task.get_task)."""
import os
import subprocess
import sys
import tempfile

from .engine.config import load_config, save_config
from .engine.distributed import horovodrun, rank_env, run_ranks

__all__ = ['launch_training', 'rank_command']


def rank_command(module, args, processes=1):
    """The command running ``python -m <module> <args>`` on ``processes`` local Horovod ranks
    (Gloo), or directly for one process."""
    command = [sys.executable, '-m', module] + list(args)
    if processes == 1:
        return command
    launcher = horovodrun()
    if not launcher:
        raise FileNotFoundError('horovodrun not found; run `make setup` (or use one process)')
    return [launcher, '--gloo', '-np', str(processes), '-H', 'localhost:%d' % processes] \
        + command


def launch_training(task, cfg, processes, log_path=None, naive_engine=False, capture=False):
    """Train ``cfg`` (the config of ``task``, a registered task's name) on ``processes``
    local ranks; ``cfg.validate()`` runs here first, so a bad value is an error of this process.
    With
    ``capture`` the ranks' output is returned (a CompletedProcess); otherwise it is shown (rank
    0's) and kept in ``log_path``. Raises CalledProcessError when the ranks fail."""
    cfg.validate()
    handle, path = tempfile.mkstemp(prefix='run-config-', suffix='.json')
    os.close(handle)
    try:
        save_config(path, task, cfg)
        command = rank_command('gluon_resnest.launch', [path], processes)
        env = rank_env(processes, naive_engine=naive_engine)
        if capture:
            from .engine.distributed import with_package_path
            return subprocess.run(command, env=with_package_path(env), capture_output=True,
                                  text=True)
        return run_ranks(command, env, log_path, processes)
    finally:
        os.remove(path)


def main(argv=None):
    """A rank's worker: train the task and config of the file ``argv[0]``."""
    import json
    from .engine.cli import run_training
    from .tasks import get_task
    from .runtime import quiet_native_logs
    quiet_native_logs()
    path = (sys.argv[1:] if argv is None else argv)[0]
    with open(path) as f:
        task = get_task(json.load(f)['task'])
    run_training(task, load_config(path, task.config))


if __name__ == '__main__':
    main()
