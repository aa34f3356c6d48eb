"""The run configuration every task shares; a task's config extends it with its own fields (and
may give a shared field another default). Every field is a command-line flag (engine.cli)."""
import json
from dataclasses import asdict, dataclass, fields

from ..argtypes import check_number, check_positive_ints, option

__all__ = ['RunConfig', 'PIPELINES', 'save_config', 'load_config']

PIPELINES = ('auto', 'memory', 'workers')


@dataclass
class RunConfig:
    """What the engine itself reads: where the run lives, how long it trains, the optimizer's
    rate, momentum and decay, the moving average, precision, data pipeline and bookkeeping."""
    save_dir: str = option('runs/run', 'checkpoints, metrics.jsonl, curves.png, summary')
    epochs: int = option(100, 'training epochs')
    batch_size: int = option(8, 'images per device (process) and step')
    base_lr: float = option(0.1, 'learning rate for the reference global batch, scaled '
                                 'linearly')
    warmup_epochs: int = option(0, 'linear warm-up epochs before the decay')
    momentum: float = option(0.9, 'momentum')
    wd: float = option(1e-4, 'weight decay (not on BN parameters or biases)')
    ema_decay: float = option(0.0, 'moving average of the weights (e.g. 0.999): validated, '
                                   'selected and saved to best/ instead of the weights; 0: off')
    amp: bool = option(False, 'mixed precision (float16 on GPU, bfloat16 on CPU)')
    pipeline: str = option('auto', 'memory (small images read once, no workers), workers '
                                   '(per-image, worker processes) or auto')
    workers: int = option(2, 'data worker processes per rank (workers pipeline)')
    seed: int = option(0, 'seed of initialization, data order and augmentation')
    keep: int = option(3, 'epoch checkpoints kept besides best/')
    resume: bool = option(False, 'continue from the newest checkpoint in --save-dir, even with '
                                 'other flags (the same command resumes without it)')
    fresh: bool = option(False, 'delete the run in --save-dir and start over')
    log_interval: int = option(20, 'iterations between progress updates')
    progress: bool = option(True, 'progress bar (off: one line per epoch)')
    max_iters: int = option(0, 'stop each epoch after this many iterations; 0: whole epoch '
                               '(tests)')

    def __init_subclass__(cls, **kwargs):
        """A task's config gives shared fields its own defaults (and help texts) in
        ``DEFAULTS = {name: default or (default, help)}``; they become its fields' defaults."""
        super().__init_subclass__(**kwargs)
        annotations = cls.__dict__.get('__annotations__', {})
        cls.__annotations__ = annotations
        base = {f.name: f for f in fields(RunConfig)}
        for name, value in cls.__dict__.get('DEFAULTS', {}).items():
            default, text = value if isinstance(value, tuple) else (value,
                                                                     base[name].metadata['help'])
            annotations[name] = base[name].type
            setattr(cls, name, option(default, text))

    def validate(self):
        """ValueError naming the first field out of range (a task's config checks its own
        fields, then calls this)."""
        check_positive_ints(self, ('epochs', 'batch_size', 'log_interval'))
        check_number('base_lr', self.base_lr, 0, low_open=True)
        check_number('momentum', self.momentum, 0, 1, high_open=True)
        check_number('wd', self.wd, 0)
        check_number('ema_decay', self.ema_decay, 0, 1, high_open=True)
        if self.workers < 0 or self.warmup_epochs < 0 or self.max_iters < 0 or self.keep < 0:
            raise ValueError('--workers, --warmup-epochs, --max-iters and --keep must be >= 0')
        if self.pipeline not in PIPELINES:
            raise ValueError('--pipeline %r: allowed %s' % (self.pipeline, ', '.join(PIPELINES)))
        if self.fresh and self.resume:
            raise ValueError('--fresh deletes the run that --resume continues: pass one of them')


def save_config(path, task, cfg):
    """``cfg`` of ``task`` as one JSON file, the way launched ranks receive their run
    (engine.worker) instead of a list of flags."""
    from .checkpoint import write_json
    write_json(path, dict(task=task, config=asdict(cfg)))


def load_config(path, config_class):
    """The config saved by :func:`save_config`; unknown fields are an error naming them."""
    with open(path) as f:
        saved = json.load(f)['config']
    known = {f.name for f in fields(config_class)}
    unknown = sorted(set(saved) - known)
    if unknown:
        raise ValueError('%s: unknown fields %s for %s' % (path, ', '.join(unknown),
                                                          config_class.__name__))
    return config_class(**saved)
