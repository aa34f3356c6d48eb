"""Run by test_training.py under `horovodrun -np 2`: a few distributed steps with the library's
pieces; each rank writes what it read and what it ended with to OUT_DIR/rank-N.json."""
import hashlib
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..'))

import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402

import gluon_resnest as gr  # noqa: E402
from gluon_resnest.classification.data import RecordDataset, train_transform  # noqa: E402
from gluon_resnest.engine.data import make_loader  # noqa: E402
from gluon_resnest.engine.distributed import Comm  # noqa: E402


def main(rec, out_dir):
    comm = Comm()
    dataset = RecordDataset(rec, classes=4)
    loader, sampler = make_loader(dataset, train_transform(32, (0.5,) * 3, (0.25,) * 3, 0.5),
                                  batch_size=4, rank=comm.rank, size=comm.size, workers=1)
    comm.start()
    net = gr.get_model('resnest14_small', classes=4)
    net.initialize(mx.init.Xavier(), ctx=mx.cpu())
    comm.broadcast_parameters(net)
    trainer = comm.trainer(net.collect_params(), 'nag', {'learning_rate': 0.05, 'momentum': 0.9})
    loss_fn = mx.gluon.loss.SoftmaxCrossEntropyLoss()
    losses, seen = [], []
    sampler.set_epoch(0)
    seen = list(sampler)
    for data, label in loader:
        with mx.autograd.record():
            loss = loss_fn(net(data), label)
        loss.backward()
        trainer.step(data.shape[0])
        losses.append(float(loss.mean().asscalar()))
    params = sorted(net._collect_params_with_prefix().items())
    digest = hashlib.sha1()
    for name, p in params:
        if p.grad_req != 'null':
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(p.data().asnumpy()).tobytes())

    def running_stats():  # BN's, accumulated by each rank from its own shard
        return {name: p.data().asnumpy().tolist() for name, p in params if p.grad_req == 'null'}
    own_stats = running_stats()
    comm.average_running_stats(net)
    with open(os.path.join(out_dir, 'rank-%d.json' % comm.rank), 'w') as f:
        json.dump(dict(rank=comm.rank, size=comm.size, indices=seen, losses=losses,
                       params_sha1=digest.hexdigest(), own_stats=own_stats,
                       averaged_stats=running_stats(),
                       # what a detection evaluator needs: every rank's results, in rank order
                       gathered=comm.gather({'rank': comm.rank, 'indices': seen[:3]})), f)


if __name__ == '__main__':
    main(sys.argv[1], sys.argv[2])
