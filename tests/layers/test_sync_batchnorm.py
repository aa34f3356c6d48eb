"""HorovodSyncBatchNorm: plain BatchNorm on one process; across two Horovod processes, the
statistics and gradients of the global batch."""
import json
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
from mxnet import autograd

from gluon_resnest.layers.sync_batchnorm import HorovodSyncBatchNorm
from helpers import TESTS, require_horovodrun

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hvd_syncbn_worker import batch  # noqa: E402


def _reference(x, w, steps=2):
    """MXNet's own BatchNorm on the whole batch: output, input and gamma gradients, running
    statistics after ``steps`` training steps, and the inference output."""
    bn = mx.gluon.nn.BatchNorm(in_channels=3)
    bn.initialize()
    bn.gamma.set_data(mx.nd.array([1.0, 2.0, 0.5]))
    for _ in range(steps):
        xx = mx.nd.array(x)
        xx.attach_grad()
        with autograd.record():
            y = bn(xx)
            loss = (y * mx.nd.array(w)).sum()
        loss.backward()
    with autograd.predict_mode():
        inference = bn(mx.nd.array(x)).asnumpy()
    return dict(y=y.asnumpy(), x_grad=xx.grad.asnumpy(), gamma_grad=bn.gamma.grad().asnumpy(),
                running_mean=bn.running_mean.data().asnumpy(),
                running_var=bn.running_var.data().asnumpy(), inference=inference)


def test_one_process_is_plain_batchnorm():
    x, w = batch()
    ref = _reference(x, w, steps=1)
    bn = HorovodSyncBatchNorm(in_channels=3)
    bn.initialize()
    bn.gamma.set_data(mx.nd.array([1.0, 2.0, 0.5]))
    bn.hybridize(static_alloc=True)
    xx = mx.nd.array(x)
    xx.attach_grad()
    with autograd.record():
        y = bn(xx)
        (y * mx.nd.array(w)).sum().backward()
    np.testing.assert_allclose(y.asnumpy(), ref['y'], atol=1e-5)
    np.testing.assert_allclose(xx.grad.asnumpy(), ref['x_grad'], atol=1e-5)
    np.testing.assert_allclose(bn.gamma.grad().asnumpy(), ref['gamma_grad'], rtol=1e-5)
    np.testing.assert_allclose(bn.running_var.data().asnumpy(), ref['running_var'], rtol=1e-5)


def test_two_processes_normalize_with_the_global_batch(tmp_path):
    launcher = require_horovodrun()
    proc = subprocess.run([launcher, '--gloo', '-np', '2', '-H', 'localhost:2', sys.executable,
                           os.path.join(TESTS, 'layers', 'hvd_syncbn_worker.py'), str(tmp_path)],
                          env=dict(os.environ, OMP_NUM_THREADS='1'), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = [json.load(open(str(tmp_path / ('rank-%d.json' % r)))) for r in (0, 1)]
    x, w = batch()
    ref = _reference(x, w)
    for key in ('y', 'x_grad', 'inference'):  # each rank holds its half of the global result
        got = np.concatenate([np.array(r[key]) for r in ranks])
        np.testing.assert_allclose(got, ref[key], atol=1e-4, err_msg=key)
    # the ranks' gamma gradients sum to the global one (Horovod's trainer then averages them)
    np.testing.assert_allclose(sum(np.array(r['gamma_grad']) for r in ranks), ref['gamma_grad'],
                               rtol=1e-4)
    for r in ranks:  # running statistics of the global batch, identical on every rank
        np.testing.assert_allclose(r['running_mean'], ref['running_mean'], rtol=1e-5)
        np.testing.assert_allclose(r['running_var'], ref['running_var'], rtol=1e-5)
    # and they differ from what one rank's half alone would give
    half = _reference(x[:2], w[:2])
    assert np.abs(np.array(ranks[0]['y']) - half['y']).max() > 1e-2
