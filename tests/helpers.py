"""Shared test helpers."""
import contextlib
import os
import subprocess
import time

import mxnet as mx
import numpy as np

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)  # the clone


def randomize(net, seed=0):
    """Give every parameter of an initialized ``net`` non-trivial values, BN statistics included."""
    rng = np.random.RandomState(seed)
    for name, p in sorted(net.collect_params().items()):
        shape = p.shape
        if name.endswith(('running_var', 'moving_var', 'gamma')):  # moving_*: symbol BN's
            value = rng.uniform(0.5, 1.5, shape)
        elif name.endswith(('running_mean', 'moving_mean', 'beta', 'bias')):
            value = rng.normal(0, 0.1, shape)
        else:
            # variance 1/fan_in (not He's 2/fan_in): a deep random residual net then keeps
            # activations and logits of order 1 instead of growing without bound
            fan_in = max(1, int(np.prod(shape[1:])))
            value = rng.normal(0, np.sqrt(1.0 / fan_in), shape)
        p.set_data(mx.nd.array(value, dtype=p.dtype))


def structural_params(net):
    """{'layer1.0.conv1.weight': ndarray, ...}, the names .params files use."""
    return {k: v.data().asnumpy() for k, v in net._collect_params_with_prefix().items()}



def colored_images(count, classes, size, seed=0):
    """(images, labels): noisy RGB images whose label is carried by their brightest channel
    (classes above 3 brighten the same channel further)."""
    rng = np.random.RandomState(seed)
    images, labels = [], []
    for i in range(count):
        label = i % classes
        img = rng.randint(0, 40, (size, size, 3)).astype(np.uint8)
        img[..., label % 3] += 150 + 30 * (label // 3)
        images.append(img)
        labels.append(label)
    return images, labels


def require_horovodrun():
    """The horovodrun path; skips the test where Horovod is absent, but fails under CI, where
    `make test` has built it and a skip would hide a broken install."""
    import os
    import pytest
    from gluon_resnest.engine.distributed import horovodrun
    path = horovodrun()
    if not path:
        if os.environ.get('CI'):
            pytest.fail('horovodrun is missing under CI: tools/install.sh should have built it')
        pytest.skip('horovodrun is not installed (make setup builds it)')
    return path


def write_raw_fashion_mnist(folder, train_images, train_labels, test_images=None,
                            test_labels=None):
    """The four Fashion-MNIST idx files (images gzipped, labels not) in ``folder``; the test
    split defaults to the training one."""
    import gzip
    import os

    def idx(arr):
        header = bytes([0, 0, 8, arr.ndim]) + b''.join(d.to_bytes(4, 'big') for d in arr.shape)
        return header + arr.tobytes()
    os.makedirs(folder, exist_ok=True)
    for split, images, labels in (('train', train_images, train_labels),
                                  ('t10k', train_images if test_images is None else test_images,
                                   train_labels if test_labels is None else test_labels)):
        with gzip.open(os.path.join(folder, '%s-images-idx3-ubyte.gz' % split), 'wb') as f:
            f.write(idx(np.asarray(images, np.uint8)))
        with open(os.path.join(folder, '%s-labels-idx1-ubyte' % split), 'wb') as f:
            f.write(idx(np.asarray(labels, np.uint8)))
    return folder


def signal_after_first_checkpoint(cmd, save_dir, signum, wait, **popen_kwargs):
    """Start ``cmd``, send it ``signum`` once its first checkpoint is in ``save_dir`` (within
    ``wait`` s), and check it stops with one line saying what is kept, no traceback."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS='1'), **popen_kwargs)
    deadline = time.time() + wait
    while not os.path.isdir(os.path.join(save_dir, 'epoch-0000')) and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    # the shell's convention: 128 + the signal (130 after Ctrl-C, 143 after SIGTERM)
    assert proc.returncode == 128 + signum and 'Traceback' not in err, (proc.returncode,
                                                                        err[-3000:])
    assert 'interrupted: completed epochs are kept in %s' % save_dir in err


class KilledAfterCheckpoint(Exception):
    pass


@contextlib.contextmanager
def killed_after_first_checkpoint():
    """Inside the block the engine's loop raises KilledAfterCheckpoint right after it wrote a
    checkpoint: a run killed between two epochs."""
    from gluon_resnest.engine import loop
    real = loop.save_checkpoint

    def save_then_die(*args, **kwargs):
        real(*args, **kwargs)
        raise KilledAfterCheckpoint()
    loop.save_checkpoint = save_then_die
    try:
        yield
    finally:
        loop.save_checkpoint = real
