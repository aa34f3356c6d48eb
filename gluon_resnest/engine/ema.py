"""An exponential moving average of a network's weights (Polyak averaging, as timm's
``--model-ema`` and TensorFlow's ``ExponentialMovingAverage``): after every optimizer step
``average = d * average + (1 - d) * weight`` for every parameter, BatchNorm's running
statistics included. Early in training ``d`` is capped at ``(1 + n) / (10 + n)`` after n
updates (TensorFlow's ``num_updates`` rule), so the average is not dominated by the random
initial weights in a short run."""
import contextlib

import mxnet as mx

__all__ = ['WeightAverage']


class WeightAverage(object):
    """The moving average of ``net``'s parameters, kept beside them (same context, same names
    as ``net.save_parameters`` writes, so a saved average loads into the network as weights)."""

    def __init__(self, net, decay):
        if not 0.0 < decay < 1.0:
            raise ValueError('EMA decay must be in (0, 1), got %r' % (decay,))
        self.decay = decay
        self.updates = 0
        self._params = net._collect_params_with_prefix()
        self.average = {name: param.data().copy() for name, param in self._params.items()}

    def rate(self):
        """The decay the next update uses."""
        return min(self.decay, (1.0 + self.updates) / (10.0 + self.updates))

    def update(self):
        """Fold the network's current weights into the average (call after each step)."""
        d = self.rate()
        for name, param in self._params.items():
            average = self.average[name]
            average[:] = average * d + param.data() * (1.0 - d)
        self.updates += 1

    @contextlib.contextmanager
    def applied(self):
        """Inside the block the network holds the averaged weights (to validate or save them);
        changes made to them there (e.g. running statistics averaged over ranks) are kept in
        the average; on leaving, the network gets its own weights back."""
        own = {name: param.data().copy() for name, param in self._params.items()}
        self._write(self.average)
        try:
            yield
        finally:
            for name, param in self._params.items():
                self.average[name][:] = param.data()
            self._write(own)

    def _write(self, values):
        # in place, into the arrays a hybridized graph and the trainer hold (set_data would
        # also reset a trainer's kvstore)
        for name, param in self._params.items():
            for array in param.list_data():
                array[:] = values[name]

    def save(self, path):
        """The average as a parameter file (``net.load_parameters`` reads it as weights)."""
        mx.nd.save(path, self.average)

    def load(self, path, updates):
        """Restore an average saved by :meth:`save` after ``updates`` updates; every parameter
        must be there (KeyError naming what is missing or unexpected)."""
        saved = mx.nd.load(path)
        missing = sorted(set(self.average) - set(saved))
        unexpected = sorted(set(saved) - set(self.average))
        if missing or unexpected:
            raise KeyError('%s does not match the network: missing %s, unexpected %s'
                           % (path, missing[:5], unexpected[:5]))
        for name, value in saved.items():
            self.average[name][:] = value.as_in_context(self.average[name].context)
        self.updates = int(updates)
