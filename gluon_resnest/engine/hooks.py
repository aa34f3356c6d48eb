"""Optional behaviour of the training loop (engine.loop.train), as detectron2's hooks: each is
called at fixed points with the loop's :class:`State` and may add fields to the epoch's record.
The moving average of the weights and the steady rate are the engine's hooks; a task adds its
own (``Task.hooks``: classification's DropBlock ramp)."""
import os
import time

from ..layers.dropblock import set_drop_prob
from .checkpoint import AVERAGE, read_meta
from .ema import WeightAverage

__all__ = ['Hook', 'State', 'DropBlockRamp', 'MovingAverage', 'SteadyRate', 'default_hooks',
           'dropblock_prob_at']


class State(object):
    """What the loop shares with its hooks: cfg, task, comm, ctx, net, trainer, the checkpoint
    resumed from (``ckpt``), ``log`` (rank 0's, else a no-op), the current ``epoch`` and
    ``validate(what)``, which runs the task's evaluator and returns the record fields."""

    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)


class Hook(object):
    def after_build(self, state):
        """The network exists (weights allocated), nothing has been written yet: refuse a
        configuration here."""

    def before_train(self, state):
        """Weights resumed and broadcast, before the graph is hybridized."""

    def before_epoch(self, state):
        pass

    def after_step(self, state, iteration, seen):
        """After the optimizer step of ``iteration``; ``seen`` samples so far this epoch."""

    def after_validation(self, state, record):
        """The epoch's record holds training and validation fields: change or add fields."""

    def checkpoint(self, state):
        """(meta fields, the WeightAverage to save beside the weights or None)."""
        return {}, None


def dropblock_prob_at(epoch, epochs, final_prob):
    """DropBlock rate ramped linearly from 0 at the first epoch to ``final_prob`` at the last."""
    if epochs <= 1:
        return final_prob
    return final_prob * epoch / (epochs - 1.0)


class DropBlockRamp(Hook):
    """DropBlock's rate raised linearly over the run to ``final_prob`` (the paper's recipe); a
    network without DropBlock layers (``model`` names it) is an error."""

    def __init__(self, final_prob, model='the model'):
        self.final_prob, self.model = final_prob, model

    def after_build(self, state):
        if not set_drop_prob(state.net, 0.0):
            raise ValueError('--dropblock-prob %g: %s has no DropBlock layers; pass '
                             '--dropblock-prob 0' % (self.final_prob, self.model))

    def before_epoch(self, state):
        set_drop_prob(state.net, dropblock_prob_at(state.epoch, state.cfg.epochs,
                                                   self.final_prob))


class MovingAverage(Hook):
    """The moving average of the weights (engine.ema): updated after every step, validated
    after the weights and selected on instead of them (the weights' figures stay in the record
    as ``<field>_weights``), saved beside them and restored on resume; a run resumed with the
    average newly switched on starts it from the resumed weights."""

    def __init__(self, decay):
        self.decay = decay
        self.average = None

    def before_train(self, state):
        self.average = WeightAverage(state.net, self.decay)
        if state.ckpt:
            path = os.path.join(state.ckpt, AVERAGE)
            if os.path.isfile(path):
                self.average.load(path, read_meta(state.ckpt).get('ema_updates') or 0)
            else:
                state.log('%s kept no moving average of the weights: it starts from the '
                          'resumed weights' % state.ckpt)

    def after_step(self, state, iteration, seen):
        self.average.update()

    def after_validation(self, state, record):
        weights = {key + '_weights': record[key] for key in (state.task.metric, 'val_loss')
                   if key in record}
        with self.average.applied():
            state.comm.average_running_stats(state.net)
            record.update(state.validate('validating the average'))
        record.update(weights)

    def checkpoint(self, state):
        return dict(ema_updates=self.average.updates), self.average


class SteadyRate(Hook):
    """Samples per second over the epoch without its first step (graph building and
    re-tracing), as ``img_per_s_steady``."""

    def before_epoch(self, state):
        self.first = None

    def after_step(self, state, iteration, seen):
        if iteration == 0:
            self.first = (seen, time.time())

    def after_validation(self, state, record):
        steady = None
        if self.first is not None and state.seen > self.first[0]:
            steady = ((state.seen - self.first[0]) * state.comm.size
                      / max(state.train_end - self.first[1], 1e-9))
        record['img_per_s_steady'] = steady


def default_hooks(cfg, task):
    """The hooks of a run: the steady rate always, the task's own (``task.hooks(cfg)``, e.g.
    classification's DropBlock ramp), the moving average with ``ema_decay``."""
    hooks = [SteadyRate()] + list(task.hooks(cfg))
    if cfg.ema_decay:
        hooks.append(MovingAverage(cfg.ema_decay))
    return hooks
