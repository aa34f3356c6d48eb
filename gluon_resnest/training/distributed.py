"""Horovod when it is there and launched; a single process otherwise, with the same interface."""
import mxnet as mx

__all__ = ['Comm', 'device']


def device(local_rank=0):
    """``mx.gpu(local_rank)`` when this machine has GPUs, else the CPU."""
    return mx.gpu(local_rank) if mx.context.num_gpus() > 0 else mx.cpu()


class Comm(object):
    """rank/size, exact sums across ranks, parameter broadcast and the distributed trainer."""

    def __init__(self, use_horovod=True):
        self.hvd = None
        if use_horovod:
            try:
                import horovod.mxnet as hvd
            except ImportError:
                hvd = None
            if hvd is not None:
                hvd.init()
                self.hvd = hvd
        self.rank = self.hvd.rank() if self.hvd else 0
        self.size = self.hvd.size() if self.hvd else 1
        self.local_rank = self.hvd.local_rank() if self.hvd else 0

    def sum(self, values, name):
        """Element-wise sum of a list of numbers over all ranks (float64, exact for counts)."""
        arr = mx.nd.array(values, dtype='float64')
        if self.hvd and self.size > 1:
            arr = self.hvd.allreduce(arr, average=False, name=name)
        return arr.asnumpy().tolist()

    def broadcast_parameters(self, net):
        if self.hvd and self.size > 1:
            self.hvd.broadcast_parameters(net.collect_params(), root_rank=0)

    def broadcast_trainer_states(self, trainer):
        """Rank 0's optimizer states (momenta) to every rank, after a resume."""
        if not (self.hvd and self.size > 1):
            return
        for updater in trainer._updaters:
            for key in sorted(updater.states):
                state = updater.states[key]
                for i, arr in enumerate(state if isinstance(state, (list, tuple)) else [state]):
                    if isinstance(arr, mx.nd.NDArray):
                        self.hvd.broadcast_(arr, root_rank=0, name='state.%s.%d' % (key, i))

    def trainer(self, params, optimizer, optimizer_params):
        if self.hvd and self.size > 1:
            return self.hvd.DistributedTrainer(params, optimizer, optimizer_params)
        return mx.gluon.Trainer(params, optimizer, optimizer_params)
