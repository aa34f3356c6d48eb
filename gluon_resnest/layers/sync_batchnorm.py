"""BatchNorm whose batch statistics are those of the global batch across Horovod processes.

MXNet's ``SyncBatchNorm`` synchronizes the devices of one process only, and Horovod's MXNet
operators cannot be placed in a hybridized graph. A custom operator can: its forward allreduces
the per-channel sums (sum, sum of squares, count) over the ranks with Horovod from MXNet's
custom-operator thread, and its backward allreduces their gradients, so every rank normalizes
with the global mean and variance and back-propagates the global batch's gradient. Running
statistics are updated from the global moments, identically on every rank. Parameter names are
nn.BatchNorm's (gamma, beta, running_mean, running_var): checkpoints and published weights load
either way. Without Horovod (or with one rank) it is plain batch normalization.
"""
import itertools

import mxnet as mx
from mxnet.gluon.block import HybridBlock

__all__ = ['HorovodSyncBatchNorm']


def _horovod():
    """The initialized horovod.mxnet module with more than one rank, else None."""
    try:
        import horovod.mxnet as hvd
        return hvd if hvd.is_initialized() and hvd.size() > 1 else None
    except (ImportError, ValueError):
        return None


class _AllreduceSum(mx.operator.CustomOp):
    """Sum over Horovod ranks in forward and backward; calls are named by layer and count, so
    ranks that execute layers in different orders still pair the right tensors."""

    def __init__(self, key):
        super(_AllreduceSum, self).__init__()
        self.key = key
        self.calls = itertools.count()

    def _sum(self, array, direction):
        hvd = _horovod()
        if hvd is None:
            return array
        return hvd.allreduce(array, average=False,
                             name='syncbn.%s.%s.%d' % (self.key, direction, next(self.calls)))

    def forward(self, is_train, req, in_data, out_data, aux):
        # inference uses the running statistics (below), and ranks may then run different
        # numbers of batches: no collective there
        self.assign(out_data[0], req[0], self._sum(in_data[0], 'fwd') if is_train
                    else in_data[0])

    def backward(self, req, out_grad, in_data, out_data, in_grad, aux):
        self.assign(in_grad[0], req[0], self._sum(out_grad[0], 'bwd'))


@mx.operator.register('gluon_resnest_allreduce_sum')
class _AllreduceSumProp(mx.operator.CustomOpProp):
    def __init__(self, key=''):
        super(_AllreduceSumProp, self).__init__(need_top_grad=True)
        self.key = key

    def list_arguments(self):
        return ['data']

    def list_outputs(self):
        return ['output']

    def infer_shape(self, in_shape):
        return in_shape, in_shape, []

    def create_operator(self, ctx, shapes, dtypes):
        return _AllreduceSum(self.key)


class _UpdateRunningStats(mx.operator.CustomOp):
    """In training, passes the batch's (mean, var) through and moves the running statistics
    (auxiliary states) towards them as MXNet's BatchNorm does; in inference, gives the running
    statistics. Decided when the graph runs: a hybridized graph is traced once for both."""

    def __init__(self, momentum):
        super(_UpdateRunningStats, self).__init__()
        self.momentum = momentum

    def forward(self, is_train, req, in_data, out_data, aux):
        mean, var = in_data
        if is_train:
            aux[0][:] = aux[0] * self.momentum + mean * (1 - self.momentum)
            aux[1][:] = aux[1] * self.momentum + var * (1 - self.momentum)
        else:
            mean, var = aux
        self.assign(out_data[0], req[0], mean)
        self.assign(out_data[1], req[1], var)

    def backward(self, req, out_grad, in_data, out_data, in_grad, aux):
        self.assign(in_grad[0], req[0], out_grad[0])
        self.assign(in_grad[1], req[1], out_grad[1])


@mx.operator.register('gluon_resnest_update_running_stats')
class _UpdateRunningStatsProp(mx.operator.CustomOpProp):
    def __init__(self, momentum='0.9'):
        super(_UpdateRunningStatsProp, self).__init__(need_top_grad=True)
        self.momentum = float(momentum)

    def list_arguments(self):
        return ['mean', 'var']

    def list_outputs(self):
        return ['mean_out', 'var_out']

    def list_auxiliary_states(self):
        return ['running_mean', 'running_var']

    def infer_shape(self, in_shape):
        return in_shape, in_shape, in_shape

    def create_operator(self, ctx, shapes, dtypes):
        return _UpdateRunningStats(self.momentum)


class HorovodSyncBatchNorm(HybridBlock):
    """Drop-in for ``nn.BatchNorm`` (axis 1) with statistics over all Horovod ranks."""

    def __init__(self, in_channels=0, momentum=0.9, epsilon=1e-5, use_global_stats=False,
                 gamma_initializer='ones', beta_initializer='zeros', scale=True, **kwargs):
        super(HorovodSyncBatchNorm, self).__init__(**kwargs)
        self._momentum, self._epsilon = momentum, epsilon
        self._use_global_stats, self._scale = use_global_stats, scale
        with self.name_scope():
            # scale=False: gamma is fixed at 1 (nn.BatchNorm's meaning; the FPN's BatchNorms)
            self.gamma = self.params.get('gamma', shape=(in_channels,), init=gamma_initializer,
                                         allow_deferred_init=True,
                                         grad_req='write' if scale else 'null',
                                         differentiable=scale)
            self.beta = self.params.get('beta', shape=(in_channels,), init=beta_initializer,
                                        allow_deferred_init=True)
            self.running_mean = self.params.get('running_mean', grad_req='null',
                                                shape=(in_channels,), init='zeros',
                                                allow_deferred_init=True,
                                                differentiable=False)
            self.running_var = self.params.get('running_var', grad_req='null',
                                               shape=(in_channels,), init='ones',
                                               allow_deferred_init=True, differentiable=False)

    def hybrid_forward(self, F, x, gamma, beta, running_mean, running_var):
        if not self._scale:
            gamma = F.ones_like(gamma)
        if self._use_global_stats:
            return F.BatchNorm(x, gamma, beta, running_mean, running_var, eps=self._epsilon,
                               momentum=self._momentum, use_global_stats=True,
                               fix_gamma=False)
        moments = F.concat(F.sum(x, axis=(0, 2, 3)), F.sum(F.square(x), axis=(0, 2, 3)),
                           F.sum(F.ones_like(x), axis=(0, 2, 3)), dim=0)
        moments = F.Custom(moments, key=self.name, op_type='gluon_resnest_allreduce_sum')
        total, squares, count = F.split(moments, num_outputs=3, axis=0)
        mean = total / count
        var = F.relu(squares / count - F.square(mean))  # E[x^2] - E[x]^2, rounding kept >= 0
        mean, var = F.Custom(mean, var, running_mean, running_var,
                             momentum=str(self._momentum),
                             op_type='gluon_resnest_update_running_stats')
        scale = gamma / F.sqrt(var + self._epsilon)
        shift = beta - mean * scale
        return F.broadcast_add(F.broadcast_mul(x, scale.reshape((1, -1, 1, 1))),
                               shift.reshape((1, -1, 1, 1)))
