"""Run by test_sync_batchnorm.py under `horovodrun -np 2`: each rank normalizes its half of one
fixed batch with HorovodSyncBatchNorm (hybridized, two training steps) and writes its outputs,
input gradients, gamma gradient and running statistics to OUT_DIR/rank-N.json."""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..'))

import horovod.mxnet as hvd  # noqa: E402
import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402
from mxnet import autograd  # noqa: E402

from gluon_resnest.layers.sync_batchnorm import HorovodSyncBatchNorm  # noqa: E402


def batch():
    """The full batch and loss weights, the same on every rank and in the test."""
    rng = np.random.RandomState(0)
    return rng.normal(2, 3, (4, 3, 5, 6)), rng.normal(size=(4, 3, 5, 6))


def main(out_dir):
    hvd.init()
    x_all, w_all = batch()
    half = slice(2 * hvd.rank(), 2 * hvd.rank() + 2)
    bn = HorovodSyncBatchNorm(in_channels=3)
    bn.initialize()
    bn.gamma.set_data(mx.nd.array([1.0, 2.0, 0.5]))
    bn.hybridize(static_alloc=True)
    for _ in range(2):
        x = mx.nd.array(x_all[half])
        x.attach_grad()
        with autograd.record():
            y = bn(x)
            loss = (y * mx.nd.array(w_all[half])).sum()
        loss.backward()
    # the same (hybridized) graph in inference: the running statistics, no collective
    with autograd.predict_mode():
        inference = bn(mx.nd.array(x_all[half]))
    result = dict(y=y.asnumpy().tolist(), x_grad=x.grad.asnumpy().tolist(),
                  gamma_grad=bn.gamma.grad().asnumpy().tolist(),
                  running_mean=bn.running_mean.data().asnumpy().tolist(),
                  running_var=bn.running_var.data().asnumpy().tolist(),
                  inference=inference.asnumpy().tolist())
    with open(os.path.join(out_dir, 'rank-%d.json' % hvd.rank()), 'w') as f:
        json.dump(result, f)


if __name__ == '__main__':
    main(sys.argv[1])
