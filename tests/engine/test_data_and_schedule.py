"""Sharding and seeded per-item transforms across ranks, the moving average, the learning-rate
schedule and weight-decay groups."""
import json
import math
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

from gluon_resnest.classification.data import RecordDataset, train_transform
from gluon_resnest.engine.data import ShardSampler, _Transformed
from helpers import ROOT, TESTS, require_horovodrun, structural_params


def test_shards_are_disjoint_equal_and_cover_the_set():
    for length, size in [(48, 2), (50, 4), (7, 3)]:
        shards = [list(ShardSampler(length, r, size, seed=3)) for r in range(size)]
        assert len({len(s) for s in shards}) == 1
        flat = sum(shards, [])
        assert set(flat) == set(range(length))
        assert len(flat) - length == (-length) % size  # only the padding repeats
        evals = [list(ShardSampler(length, r, size, shuffle=False, pad=False))
                 for r in range(size)]
        assert sorted(sum(evals, [])) == list(range(length))
    sampler = ShardSampler(20, 0, 2, seed=1)
    first = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != first
    sampler.set_epoch(0)
    assert list(sampler) == first


def test_augmentation_is_a_function_of_seed_epoch_and_index(tiny_rec):
    """A resumed run (fresh transform, other history) must see the same augmented images."""
    dataset = RecordDataset(tiny_rec[0])

    def transformed(items):
        data = _Transformed(dataset, train_transform(32, (0.5,) * 3, (0.25,) * 3, 0.3, 0.4, 0.1,
                                                     autoaugment=True), seed=5)
        return {item: data[item][0].asnumpy() for item in items}
    first = transformed([(0, 1), (0, 2), (1, 1)])
    later = transformed([(1, 1), (0, 2), (0, 1)])  # another order: other generator history
    for item in first:
        np.testing.assert_array_equal(first[item], later[item])
    assert np.abs(first[(0, 1)] - first[(1, 1)]).max() > 0.1  # a new epoch, new augmentation


def test_two_horovod_processes_read_disjoint_shards_and_stay_identical(tiny_rec, tmp_path):
    launcher = require_horovodrun()
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=ROOT)
    cmd = [launcher, '--gloo', '-np', '2', '-H', 'localhost:2', sys.executable,
           os.path.join(TESTS, 'engine', 'hvd_worker.py'), tiny_rec[0], str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ranks = [json.load(open(str(tmp_path / ('rank-%d.json' % r)))) for r in (0, 1)]
    assert [r['size'] for r in ranks] == [2, 2]
    a, b = (set(r['indices']) for r in ranks)
    assert not a & b and a | b == set(range(48))
    assert all(math.isfinite(x) for r in ranks for x in r['losses']) and ranks[0]['losses']
    assert ranks[0]['params_sha1'] == ranks[1]['params_sha1']
    for r in ranks:  # Comm.gather: every rank gets every rank's object, in rank order
        assert r['gathered'] == [{'rank': k, 'indices': ranks[k]['indices'][:3]} for k in (0, 1)]
    # BN running statistics: each rank's own differ; after the sync both hold their mean
    own = [r['own_stats'] for r in ranks]
    assert own[0].keys() == own[1].keys() and any('running_var' in k for k in own[0])
    assert any(not np.allclose(own[0][k], own[1][k]) for k in own[0])
    for k in own[0]:
        mean = (np.array(own[0][k]) + np.array(own[1][k])) / 2
        for r in ranks:
            np.testing.assert_allclose(r['averaged_stats'][k], mean, rtol=1e-6, err_msg=k)


def test_weight_average_follows_its_recurrence_and_swaps_in_and_out():
    """After each update the average is d_n * average + (1 - d_n) * weights, with
    d_n = min(decay, (1 + n) / (10 + n)) (computed here in NumPy from the weights each step
    had); inside ``applied()`` the network holds the average, changes made there stay in it,
    and the network gets its own weights back."""
    from gluon_resnest.engine.ema import WeightAverage
    net = mx.gluon.nn.Dense(3, in_units=4)
    net.initialize(mx.init.Normal(1.0))
    decay = 0.8
    average = WeightAverage(net, decay)
    expected = {k: v.copy() for k, v in structural_params(net).items()}
    rng = np.random.RandomState(0)
    for n in range(40):  # past n = 35, where the cap reaches the decay
        for param in net.collect_params().values():
            param.set_data(param.data() + mx.nd.array(rng.normal(size=param.shape)))
        d = min(decay, (1.0 + n) / (10.0 + n))
        weights = structural_params(net)
        expected = {k: d * expected[k] + (1 - d) * weights[k] for k in expected}
        average.update()
    assert average.rate() == decay
    own = structural_params(net)
    with average.applied():
        inside = structural_params(net)
        for k in expected:
            np.testing.assert_allclose(inside[k], expected[k], rtol=1e-5, atol=1e-6)
        net.bias.set_data(mx.nd.ones(3) * 7)
    after = structural_params(net)
    for k in own:
        np.testing.assert_array_equal(after[k], own[k])
    np.testing.assert_array_equal(average.average['bias'].asnumpy(), np.full(3, 7.0))
    with pytest.raises(ValueError, match=r'EMA decay must be in \(0, 1\), got 1.0'):
        WeightAverage(net, 1.0)


def test_lr_schedule_warmup_end_and_end():
    from gluon_resnest.engine import schedule
    lr = schedule.scaled_lr(0.1, 512)
    assert lr == pytest.approx(0.2)
    sched = schedule.lr_schedule(lr, epochs=10, iters_per_epoch=100, warmup_epochs=5)
    assert sched(0) == pytest.approx(0.0)
    assert sched(250) == pytest.approx(0.1)       # halfway through warm-up
    assert sched(500) == pytest.approx(0.2)       # warm-up end: the peak
    assert sched(750) == pytest.approx(0.1)       # cosine midpoint
    assert sched(1000) == pytest.approx(0.0, abs=1e-12)


def test_no_weight_decay_on_bn_and_biases():
    import gluon_resnest as gr
    net = gr.get_model('resnest14_small', classes=3)
    from gluon_resnest.engine.schedule import exclude_from_weight_decay
    n = exclude_from_weight_decay(net)
    params = net.collect_params()
    assert n > 0
    for name, p in params.items():
        expected = 0.0 if name.endswith(('gamma', 'beta', 'bias')) else 1.0
        assert p.wd_mult == expected, name


def test_loader_workers_run_on_one_thread_each():
    import cv2
    from mxnet.gluon.data import SimpleDataset
    from gluon_resnest.engine.data import make_loader
    data = SimpleDataset([(np.zeros((2, 2, 3), np.uint8), 0)] * 4)
    threads = cv2.getNumThreads()
    # the transform reports the thread count OpenCV has in the process that runs it
    loader, _ = make_loader(data, lambda image: np.float32([cv2.getNumThreads()]), 2,
                            train=False, workers=1)
    seen = [batch[0].asnumpy().ravel().tolist() for batch in loader]
    assert seen == [[1.0, 1.0], [1.0, 1.0]]
    assert cv2.getNumThreads() == threads  # the training process keeps its own


WORKERS_AFTER_OPENCV = '''
import sys
import cv2
import numpy as np
sys.path.insert(0, sys.argv[1])
from gluon_resnest.engine.data import make_loader
big = np.random.RandomState(0).randint(0, 255, (2400, 800, 3)).astype(np.uint8)
for _ in range(3):  # OpenCV's thread pool busy in the parent before the workers are forked
    cv2.resize(big, None, fx=3, fy=3, interpolation=cv2.INTER_NEAREST)
images = [np.full((60, 60, 3), i, np.uint8) for i in range(8)]
loader, _ = make_loader(list(zip(images, range(8))), lambda im: cv2.resize(im, (30, 30)), 2,
                        workers=1)
print(sum(batch[0].shape[0] for batch in loader))
'''


def test_workers_start_after_the_parent_used_opencvs_thread_pool():
    """A worker that set OpenCV's thread count itself hung when the parent had used OpenCV's
    pool before the fork (the instance demo's picture, then a segmentation run)."""
    from helpers import ROOT
    proc = subprocess.run([sys.executable, '-c', WORKERS_AFTER_OPENCV, ROOT],
                          capture_output=True, text=True, timeout=100)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == '8'
