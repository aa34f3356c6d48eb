"""argparse value types shared by the command lines in train/ and eval/."""
import argparse
import dataclasses
import math
import os

__all__ = ['command_parser', 'positive_int', 'non_negative_int', 'int_list', 'seed_list', 'check_number',
           'check_positive_ints', 'is_positive_int', 'check_positive_int']


def command_parser(doc, **kwargs):
    """The argparse parser of a command whose help is the first paragraph of ``doc``; flags
    must be spelled out: argparse would otherwise take ``--lr`` for the only flag starting
    so (``--lr-decay-epochs``), silently."""
    return argparse.ArgumentParser(description=doc.split('\n\n')[0] if doc else None,
                                   allow_abbrev=False, **kwargs)


def is_positive_int(value):
    """Whether ``value`` is an integer >= 1 (a bool is not one)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def check_positive_int(name, value, count=None):
    """``value`` if it is a positive integer (``count`` of them in a sequence, when given), else
    ValueError naming ``name``."""
    if count is None:
        if not is_positive_int(value):
            raise ValueError('%s must be a positive integer, got %r' % (name, value))
    elif len(value) != count or not all(is_positive_int(v) for v in value):
        raise ValueError('%s must be %d positive integers, got %r' % (name, count, value))
    return value


def positive_int(text):
    """An integer >= 1; argparse reports "argument --flag: must be a positive integer, got 'x'"
    for anything else."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError('must be a positive integer, got %r' % text)
    return value


def int_list(text, allowed=None, what='integers'):
    """Comma-separated integers >= 0 (from ``allowed`` if given), e.g. "0,1,2"."""
    try:
        values = tuple(int(v) for v in text.split(','))
    except ValueError:
        values = ()
    if not values or min(values) < 0 or (allowed and any(v not in allowed for v in values)):
        raise argparse.ArgumentTypeError('must be %s like %s, got %r' % (
            what, ','.join(str(v) for v in (sorted(allowed) if allowed else (0, 1, 2))), text))
    return values


def seed_list(text):
    """Random seeds like "0,1,2"."""
    return int_list(text, what='seeds')


def non_negative_int(text):
    """An integer >= 0 (counts such as data-loader workers)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError('must be an integer >= 0, got %r' % text)
    return value


def check_number(name, value, low=None, high=None, low_open=False, high_open=False):
    """``value`` if it is a finite number in the interval, else ValueError naming the flag
    (``--name``) and the allowed interval."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and low is not None:
        ok = value > low if low_open else value >= low
    if ok and high is not None:
        ok = value < high if high_open else value <= high
    if not ok:
        interval = '%s%s, %s%s' % ('(' if low_open else '[', '-inf' if low is None else '%g' % low,
                                   'inf' if high is None else '%g' % high,
                                   ')' if high_open or high is None else ']')
        raise ValueError('--%s must be a finite number in %s, got %r'
                         % (name.replace('_', '-'), interval, value))
    return value


def check_positive_ints(config, names, as_flags=True):
    """ValueError naming the first of ``config``'s fields ``names`` that is not an integer
    >= 1 (as ``--flag-name``, or as the field's own name)."""
    for name in names:
        check_positive_int('--' + name.replace('_', '-') if as_flags else name,
                           getattr(config, name))


def option(default, help):
    """A config dataclass field that is also a command-line flag: ``help`` is its --help text."""
    return dataclasses.field(default=default, metadata={'help': help})


def add_peer_python(parser, peers):
    """--peer-python: the python of the peers' environment (``make bench-env``) that runs
    ``peers`` (what the help names)."""
    parser.add_argument('--peer-python', default=os.environ.get(
        'GLUON_RESNEST_PEERS', os.path.join('.bench-venv', 'bin', 'python')),
                        help="the peers' environment for %s (default .bench-venv, made by "
                             "make bench-env; or $GLUON_RESNEST_PEERS)" % peers)
