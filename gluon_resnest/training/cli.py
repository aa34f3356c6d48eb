"""Command-line flags generated from a config dataclass (TrainConfig, SegTrainConfig), so every
flag reaches the trainer."""
import argparse
import dataclasses

from .loop import TrainConfig

__all__ = ['config_parser', 'config_from_args', 'INTERRUPTED']


def config_parser(description=None, defaults=None, config=TrainConfig):
    parser = argparse.ArgumentParser(description=description)
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


def config_from_args(args, config=TrainConfig):
    return config(**{f.name: getattr(args, f.name) for f in dataclasses.fields(config)})


# what a command says on Ctrl-C instead of a traceback (checkpoints are written atomically)
INTERRUPTED = ('interrupted: completed epochs are kept in %s; run the same command (with '
               '--resume) to continue')
