"""A tiny task for the engine's tests: a linear classifier (with a BatchNorm, so running
statistics exist) on seeded Gaussian blobs, in memory, no data workers."""
from dataclasses import dataclass

import mxnet as mx
import numpy as np
from mxnet.gluon import nn
from mxnet.gluon.data import SimpleDataset

from gluon_resnest.argtypes import option
from gluon_resnest.engine import schedule
from gluon_resnest.engine.config import RunConfig
from gluon_resnest.engine.data import make_loader
from gluon_resnest.engine.task import Evaluator, Optimizer, Task


@dataclass
class ToyConfig(RunConfig):
    DEFAULTS = dict(save_dir='runs/toy', epochs=2, batch_size=8, base_lr=0.5, workers=0)
    classes: int = option(3, 'classes')
    samples: int = option(48, 'training samples')
    nan_at: int = option(-1, 'make the loss of this global step NaN (-1: never)')


def blobs(count, classes, seed):
    rng = np.random.RandomState(seed)
    labels = np.arange(count) % classes
    centers = np.eye(classes, 5) * 3
    return [((centers[y] + rng.normal(size=5)).astype(np.float32), np.float32(y))
            for y in labels]


class ToyEvaluator(Evaluator):
    def reset(self):
        self.correct = self.seen = 0

    def process(self, net, batch):
        data, label = batch
        self.correct += int((net(data).argmax(axis=1) == label).sum().asscalar())
        self.seen += data.shape[0]

    def evaluate(self, comm=None):
        correct, seen = (comm.sum([self.correct, self.seen], 'toy') if comm
                         else (self.correct, self.seen))
        return dict(acc=100.0 * correct / max(seen, 1))


class ToyTask(Task):
    name, config, summary_fields = 'toy', ToyConfig, ('classes',)
    metric, best_key, metric_label, best_label = 'val_acc', 'best_acc', 'acc', 'val acc'
    record_fields = dict(val_acc='acc')

    def build_model(self, cfg, ctx):
        self.steps = 0
        net = nn.HybridSequential()
        net.add(nn.Dense(8, in_units=5), nn.BatchNorm(in_channels=8), nn.Dense(cfg.classes,
                                                                                in_units=8))
        net.initialize(mx.init.Xavier(), ctx=ctx)
        return net

    def loaders(self, cfg, comm, net, log=print):
        train = SimpleDataset(blobs(cfg.samples, cfg.classes, 0))
        val = SimpleDataset(blobs(24, cfg.classes, 1))
        # the seeded per-item transform: a little noise, a function of (seed, epoch, index)
        loader, sampler = make_loader(train, lambda x: x + np.random.normal(
            size=x.shape).astype(np.float32) * 0.1, cfg.batch_size, comm.rank, comm.size,
            train=True, seed=cfg.seed, workers=0)
        val_loader, _ = make_loader(val, lambda x: x, cfg.batch_size, comm.rank, comm.size,
                                    train=False, workers=0)
        return loader, sampler, val_loader

    def optimizer(self, cfg):
        return Optimizer('sgd', 8, schedule.lr_schedule)

    def start_epoch(self, cfg, epoch, rank):
        self.cfg = cfg

    def evaluator(self, cfg, ctx, net):
        return ToyEvaluator()

    def loss(self, net, batch, ctx):
        data, label = batch
        out = net(data)
        loss = mx.gluon.loss.SoftmaxCrossEntropyLoss()(out, label)
        self.steps += 1
        if self.steps - 1 == self.cfg.nan_at:
            loss = loss * float('nan')
        margin = (out.max(axis=1) - out.min(axis=1)).mean()
        return loss, data.shape[0], dict(margin=margin.detach())
