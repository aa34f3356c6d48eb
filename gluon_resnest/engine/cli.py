"""Command-line flags generated from a task's config dataclass (engine.config.RunConfig and its
extensions), so every flag reaches the trainer; and how commands end on a signal."""
import argparse
import dataclasses
import os
import signal
import sys
import threading

from ..runtime import interrupt, interrupt_exit_code
from ..argtypes import command_parser

__all__ = ['config_parser', 'config_from_args', 'INTERRUPTED', 'deliver_interrupts',
           'exit_interrupted']


def config_parser(config, description=None, defaults=None):
    """An argparse parser with one flag per field of the dataclass ``config``."""
    parser = command_parser(description)
    for f in dataclasses.fields(config):
        flag = '--' + f.name.replace('_', '-')
        default = (defaults or {}).get(f.name, f.default)
        text = f.metadata.get('help', '')
        if default not in (None, ''):
            text += ' (default: %(default)s)'
        if f.type is bool or f.type == 'bool':
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default,
                                help=text)
        else:
            kind = {'int': int, 'float': float, 'str': str}.get(f.type, f.type)
            parser.add_argument(flag, type=kind, default=default, metavar=f.name.upper(),
                                help=text)
    return parser


def config_from_args(args, config):
    return config(**{f.name: getattr(args, f.name) for f in dataclasses.fields(config)})


# what a command says on Ctrl-C or SIGTERM instead of a traceback (checkpoints are written
# atomically)
INTERRUPTED = ('interrupted: completed epochs are kept in %s; run the same command (with '
               '--resume) to continue')
def _interrupt(signum, frame):
    """SIGINT (and SIGTERM) as KeyboardInterrupt, except while an object's destructor runs:
    Python prints an exception raised there and drops it (a Ctrl-C that landed as an NDArray
    was freed let training go on), so the signal is sent again a moment later instead."""
    while frame is not None:
        if frame.f_code.co_name == '__del__':
            threading.Timer(0.05, os.kill, (os.getpid(), signum)).start()
            return
        frame = frame.f_back
    interrupt(signum)


def deliver_interrupts():
    """Make Ctrl-C reach a command even if it lands in a destructor, and make SIGTERM (``kill``,
    ``timeout``, a scheduler) end it the same way instead of killing it silently; a signal that
    is ignored or has its own handler is left alone."""
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _interrupt)
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _interrupt)


def exit_interrupted(save_dir):
    """Say what is kept and exit with the shell's code for the signal: 130 after Ctrl-C, 143
    after SIGTERM."""
    print(INTERRUPTED % save_dir, file=sys.stderr, flush=True)
    sys.exit(interrupt_exit_code())


def training_command(task, doc, argv=None):
    """The command line of a task's trainer (train/train.py, train/train_segmentation.py):
    the flags of ``task.config``, then :func:`run_training`."""
    from ..runtime import quiet_native_logs
    quiet_native_logs()  # MXNet's C++ notices would break the progress bars
    args = config_parser(task.config, doc.split('\n\n')[0]).parse_args(argv)
    run_training(task, config_from_args(args, task.config))


def run_training(task, cfg):
    """Train ``task`` with ``cfg`` on the engine as a command does: errors as one line, Ctrl-C
    and SIGTERM as an exit that says what is kept, the best figure at the end."""
    from ..zoo.store import PretrainedWeightsError
    from .loop import train
    deliver_interrupts()
    try:
        _, summary = train(task, cfg)
    except KeyboardInterrupt:
        exit_interrupted(cfg.save_dir)
    except (ValueError, OSError, FloatingPointError,
            PretrainedWeightsError) as err:  # OSError: files, disk, access; data: ValueError
        sys.exit('error: %s' % err)
    if summary['final'] and int(os.environ.get('HOROVOD_RANK', 0)) == 0:  # one line per run
        print('best %s %.2f%%, checkpoints in %s' % (task.best_label, summary[task.best_key],
                                                     summary['save_dir']))
