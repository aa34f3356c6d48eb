"""argparse value types shared by the command lines in train/ and eval/."""
import argparse

__all__ = ['positive_int']


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
