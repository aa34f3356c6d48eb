"""The trainers' command lines: every config field is a documented flag that reaches the
trainer; every command is a console script and a clone script."""
import importlib
import os

import pytest

from gluon_resnest.classification.task import TrainConfig
from helpers import ROOT


def test_every_training_flag_says_what_it_does_in_help():
    from gluon_resnest.segmentation.task import SegTrainConfig
    from gluon_resnest.engine.cli import config_parser
    import dataclasses
    for config in (TrainConfig, SegTrainConfig):
        for field in dataclasses.fields(config):
            assert field.metadata.get('help'), (config.__name__, field.name)
        text = config_parser(config).format_help()
        for field in dataclasses.fields(config):
            assert field.metadata['help'].split()[0] in text, field.name
        assert '(default: %s)' % config.epochs in text  # defaults shown


def test_every_flag_reaches_the_trainer():
    from gluon_resnest.engine.cli import config_from_args, config_parser
    args = config_parser(TrainConfig).parse_args(['--model', 'resnest26', '--mixup-off-epochs', '3',
                                       '--no-last-gamma', '--autoaugment', '--final-drop', '0.3',
                                       '--input-size', '192'])
    cfg = config_from_args(args, TrainConfig)
    assert (cfg.model, cfg.mixup_off_epochs, cfg.last_gamma, cfg.autoaugment, cfg.final_drop,
            cfg.input_size) == ('resnest26', 3, False, True, 0.3, 192)
    import inspect
    from gluon_resnest.classification import task
    from gluon_resnest.engine import config, hooks, loop, progress
    source = ''.join(inspect.getsource(f) for f in (
        loop.train, task, loop.setup_amp, loop.check_run_identity, config.RunConfig.validate,
        progress.progress_bar, hooks))
    for name in TrainConfig.__dataclass_fields__:  # each field is read where training happens
        assert 'cfg.' + name in source or 'self.' + name in source, name


def test_every_segmentation_flag_reaches_the_trainer():
    import inspect
    from gluon_resnest.segmentation import task as seg
    from gluon_resnest.engine import config, hooks, loop, progress
    source = ''.join(inspect.getsource(f) for f in (
        loop.train, seg, loop.setup_amp, loop.check_run_identity, config.RunConfig.validate,
        progress.progress_bar, hooks))
    for name in seg.SegTrainConfig.__dataclass_fields__:
        assert 'cfg.' + name in source or 'self.' + name in source, name


def test_every_command_is_a_console_script_and_a_clone_script():
    """setup.py's console scripts and the scripts in train/ and eval/ name the same
    ``main`` functions, and each one answers --help."""
    import setuptools
    from unittest import mock
    with mock.patch.object(setuptools, 'setup') as setup:  # setup.py's arguments, not a build
        exec(compile(open(os.path.join(ROOT, 'setup.py')).read(), 'setup.py', 'exec'),
             dict(__file__=os.path.join(ROOT, 'setup.py'), __name__='setup'))
    commands = {}
    for line in setup.call_args.kwargs['entry_points']['console_scripts']:
        name, target = (part.strip() for part in line.split('='))
        assert target.endswith(':main') and name.startswith('resnest-')
        commands[name[len('resnest-'):].replace('-', '_')] = target[:-len(':main')]
    scripts = {}
    for folder in ('train', 'eval'):
        for name in os.listdir(os.path.join(ROOT, folder)):
            if name.endswith('.py'):
                scripts[name[:-3]] = open(os.path.join(ROOT, folder, name)).read()
    assert sorted(scripts) == sorted(commands)
    for command, module_name in commands.items():
        assert 'from %s import main' % module_name in scripts[command]
        # the library's commands live in the library, the experiments' beside it
        assert module_name.split('.')[0] in ('gluon_resnest', 'experiments')
        module = importlib.import_module(module_name)
        with pytest.raises(SystemExit) as stop:
            module.main(['--help'])
        assert stop.value.code == 0


def _commands():
    import setuptools
    from unittest import mock
    with mock.patch.object(setuptools, 'setup') as setup:  # setup.py's arguments, not a build
        exec(compile(open(os.path.join(ROOT, 'setup.py')).read(), 'setup.py', 'exec'),
             dict(__file__=os.path.join(ROOT, 'setup.py'), __name__='setup'))
    return [line.split('=')[1].strip()[:-len(':main')]
            for line in setup.call_args.kwargs['entry_points']['console_scripts']]


def test_no_command_takes_an_abbreviated_flag(monkeypatch):
    """argparse's default took ``--lr 1`` for ``--lr-decay-epochs 1``, silently."""
    import argparse

    class Parsed(Exception):
        pass
    parsers = []

    def capture(self, args=None, namespace=None):
        parsers.append(self)
        raise Parsed
    monkeypatch.setattr(argparse.ArgumentParser, 'parse_known_args', capture)
    for module_name in _commands():
        parsers.clear()
        with pytest.raises(Parsed):
            importlib.import_module(module_name).main(['--x'])
        assert parsers and not parsers[0].allow_abbrev, module_name
    monkeypatch.undo()
    from gluon_resnest.commands.train_detection import main
    with pytest.raises(SystemExit) as stop:
        main(['--data-root', 'x', '--lr', '1'])
    assert stop.value.code == 2
