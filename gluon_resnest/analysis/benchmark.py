"""Speed and memory of a network, measured the same way for any Gluon model.

Inference: hybridized with static memory, predict mode, warm-up excluded, median over repeats.
Training: forward, backward and a NAG update of a hybridized network on a fixed batch.
"""
import json
import os
import subprocess
import sys
import tempfile

import mxnet as mx
import numpy as np

from .peer_benchmark import median_rate, median_rates, onnxruntime_session

__all__ = ['inference_step', 'training_step', 'time_inference', 'time_training', 'time_trainings',
           'onnxruntime_step', 'rss_mb',
           'peak_rss_mb', 'INFERENCE_BATCH', 'TRAINING_BATCH', 'TRAINING_SIZE',
           'conv_peak_gmacs', 'PeerProcess', 'time_model_alone', 'time_trainer']

# the speed issue's settings: inference batch 8 (at the model's eval crop), training batch 16
# at 128 px
INFERENCE_BATCH, TRAINING_BATCH, TRAINING_SIZE = 8, 16, 128


def _proc_status(field):
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1]) / 1024.0
    return float('nan')


def rss_mb():
    """Resident memory of this process now (MiB)."""
    return _proc_status('VmRSS')


def peak_rss_mb():
    """Peak resident memory of this process so far (MiB)."""
    return _proc_status('VmHWM')


def inference_step(net, batch_size=INFERENCE_BATCH, size=224, ctx=None, hybridize=True):
    """A function running one predict-mode forward of ``net`` on a fixed random batch, to
    completion (``hybridize=False`` keeps a graph that is already optimized)."""
    ctx = ctx or mx.cpu()
    if hybridize:
        net.hybridize(static_alloc=True, static_shape=True)
    x = mx.nd.random.uniform(shape=(batch_size, 3, size, size), ctx=ctx)

    def step():
        with mx.autograd.predict_mode():
            out = net(x)
        (out[0] if isinstance(out, (list, tuple)) else out).wait_to_read()
    return step


def training_step(net, batch_size=TRAINING_BATCH, size=TRAINING_SIZE, classes=1000, ctx=None):
    """A function running one training step of ``net`` (forward, backward, NAG update) on a
    fixed random batch, to completion."""
    ctx = ctx or mx.cpu()
    net.hybridize(static_alloc=True, static_shape=True)
    trainer = mx.gluon.Trainer(net.collect_params(), 'nag',
                               {'learning_rate': 0.01, 'momentum': 0.9, 'wd': 1e-4})
    loss_fn = mx.gluon.loss.SoftmaxCrossEntropyLoss()
    x = mx.nd.random.uniform(shape=(batch_size, 3, size, size), ctx=ctx)
    y = mx.nd.array(np.random.randint(0, classes, batch_size), ctx=ctx)

    def step():
        with mx.autograd.record():
            loss = loss_fn(net(x), y)
        loss.backward()
        trainer.step(batch_size)
        mx.nd.waitall()
    return step


def time_inference(net, batch_size=INFERENCE_BATCH, size=224, ctx=None, warmup=3, repeats=10,
                   hybridize=True):
    """Inference images per second of an initialized ``net``."""
    step = inference_step(net, batch_size, size, ctx, hybridize)
    result = median_rate(step, batch_size, warmup, repeats)
    result['rss_mb'] = rss_mb()
    return result


def time_training(net, batch_size=TRAINING_BATCH, size=TRAINING_SIZE, classes=1000, ctx=None,
                  warmup=2, repeats=5):
    """Training images per second (forward, backward, NAG update) of an initialized ``net``."""
    return time_trainings([net], batch_size, size, classes, ctx, warmup, repeats)[0]


def time_trainings(nets, batch_size=TRAINING_BATCH, size=TRAINING_SIZE, classes=1000, ctx=None,
                   warmup=2, repeats=5):
    """:func:`time_training` of several networks, their steps alternating: a side-by-side
    comparison that the drift of a shared machine touches alike."""
    steps = [training_step(net, batch_size, size, classes, ctx) for net in nets]
    results = median_rates(steps, batch_size, warmup, repeats)
    for result in results:
        result['rss_mb'] = rss_mb()
    return results


def onnxruntime_step(path, batch_size=INFERENCE_BATCH, size=224, threads=None):
    """A function running one batch of an ONNX file (NCHW float32 input) in ONNX Runtime's CPU
    provider on ``threads`` intra-op threads (default: MXNet's OMP_NUM_THREADS, else all
    cores), and the thread count."""
    threads = threads or int(os.environ.get('OMP_NUM_THREADS', 0)) or \
        len(os.sched_getaffinity(0))
    session = onnxruntime_session(path, threads)
    name = session.get_inputs()[0].name
    x = np.random.uniform(size=(batch_size, 3, size, size)).astype(np.float32)
    return (lambda: session.run(None, {name: x})), threads


# (batch, channels in = out, map side, kernel): the convolutions of ResNet-like trunks that run
# fastest; the peak is the best of them
PEAK_LAYERS = ((8, 256, 28, 3), (8, 512, 14, 3), (16, 128, 56, 3), (8, 1024, 14, 1),
               (32, 64, 56, 1))


def conv_peak_gmacs(dtype='float32', ctx=None, repeats=10, warmup=3):
    """The machine's convolution throughput through MXNet in ``dtype`` (float32, or bfloat16 on
    CPUs with AVX-512), billion multiply-adds per second, meant as an upper bound for what a
    model's img/s x multiply-adds per image can reach: the best over PEAK_LAYERS of each one's
    fastest of ``repeats`` calls after ``warmup``, on the process's threads."""
    from ..deploy.optimize import convert_to_bfloat16
    ctx = ctx or mx.cpu()
    best = 0.0
    for batch, channels, side, kernel in PEAK_LAYERS:
        conv = mx.gluon.nn.Conv2D(channels, kernel, padding=kernel // 2, in_channels=channels,
                                  use_bias=False)
        conv.initialize(ctx=ctx)
        shape = (batch, channels, side, side)
        if dtype == 'bfloat16':
            conv = convert_to_bfloat16(conv, shape)
        else:
            conv.hybridize(static_alloc=True, static_shape=True)
        x = mx.nd.random.uniform(shape=shape, ctx=ctx)
        fastest_ms = median_rates([lambda: conv(x).wait_to_read()], 1, warmup,
                                  repeats)[0]['min_ms']
        best = max(best, batch * side * side * channels * channels * kernel * kernel /
                   (fastest_ms * 1e6))
    return best


class PeerProcess(object):
    """``peer_benchmark.py`` (timm on PyTorch, or timm's ONNX export in ONNX Runtime) running in
    the peers' ``python`` as a server, so that its steps can alternate with this process's own
    in one :func:`median_rates` (different processes cannot share a step loop otherwise).
    ``info`` holds what the peer reported (model, versions, threads, ``steps``);
    ``step(i)`` is a step function returning the peer's own timing. FileNotFoundError names a
    missing environment, RuntimeError carries the peer's own error. Use it as a context
    manager: leaving stops the peer."""

    def __init__(self, python, model, impl, mode, batch_size, size, threads=None,
                 also_onnx=None, dtype='float32', width=None):
        if not python or not os.path.isfile(python):
            raise FileNotFoundError('the peers\' environment %s is missing: make bench-env (a '
                                    'separate venv with torch, timm and onnxruntime), or pass '
                                    '--peer-python' % (python or '(none given)'))
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'peer_benchmark.py')
        threads = threads or int(os.environ.get('OMP_NUM_THREADS', 0)) or \
            len(os.sched_getaffinity(0))
        self.what = '%s %s' % (impl, model)
        # the peer's warnings go to a file: a pipe nobody reads could fill up and stall it
        self._stderr = tempfile.TemporaryFile(mode='w+')
        self._proc = subprocess.Popen(
            [python, script, '--model', model, '--impl', impl, '--mode', mode, '--batch-size',
             str(batch_size), '--size', str(size), '--threads', str(threads), '--dtype', dtype,
             '--serve'] +
            (['--also-onnx', also_onnx] if also_onnx else []) +
            (['--width', str(width)] if width else []),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, text=True)
        self.info = self._reply()

    def _reply(self):
        line = self._proc.stdout.readline()
        if not line.startswith('{'):
            self._proc.kill()
            self._proc.wait()
            self._stderr.seek(0)
            lines = self._stderr.read().strip().splitlines() or ['no output']
            self.close()
            raise RuntimeError('%s failed: %s' % (self.what, lines[-1]))
        return json.loads(line)

    def step(self, index=0):
        def run():
            self._proc.stdin.write('step %d\n' % index)
            self._proc.stdin.flush()
            return self._reply()['seconds']
        return run

    def close(self):
        if self._proc.poll() is None:
            try:
                self._proc.stdin.write('quit\n')
                self._proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if not self._stderr.closed:
            self._stderr.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _last_record(returncode, stdout, stderr, what):
    """The last JSON line a benchmark process printed, or RuntimeError with its last error
    line."""
    lines = [line for line in stdout.splitlines() if line.startswith('{')]
    if returncode or not lines:
        raise RuntimeError('%s failed: %s' % (what, (stderr.strip().splitlines()
                                                    or ['no output'])[-1]))
    return json.loads(lines[-1])


def time_model_alone(model, processes, batch_size, size, classes, dropblock_prob, repeats=20,
                     amp=False):
    """Summed training img/s of ``processes`` concurrent processes, each timing ``model``'s
    training step alone (a fixed batch: no data, no communication) on its share of the cores:
    the rate ``processes`` ranks' computation allows. Median over ``repeats`` steps each;
    the processes start together and do the same work, so their medians overlap."""
    from ..engine.distributed import rank_env, with_package_path
    command = [sys.executable, '-m', 'gluon_resnest.analysis.alone', '--model', model,
               '--repeats', str(repeats), '--batch-size', str(batch_size), '--size', str(size),
               '--classes', str(classes), '--dropblock-prob', str(dropblock_prob)] + \
        (['--amp'] if amp else [])
    env = with_package_path(rank_env(processes, naive_engine=True))
    procs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(processes)]
    rates = []
    for proc in procs:
        out, err = proc.communicate()
        rates.append(_last_record(proc.returncode, out, err,
                                  'timing %s alone' % model)['img_per_s'])
    return dict(img_per_s=sum(rates), processes=processes, per_process=rates)


def time_trainer(model, rec_train, rec_val, processes, batch_size, size, classes,
                 dropblock_prob, iterations=100, amp=False):
    """Training img/s of the project's trainer (``train/train.py``: its data pipeline,
    augmentation, loss, Horovod allreduce and update) on RecordIO data in ``processes`` local
    ranks, set up as the main job runs them (naive engine, the main job's augmentation): the
    second of two epochs of ``iterations`` steps (the first includes graph building), after its
    first step (where DropBlock's ramp, reaching ``dropblock_prob``, re-traces the graph)."""
    from ..classification.task import TrainConfig
    from ..launch import launch_training
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(model=model, rec_train=rec_train, rec_val=rec_val, classes=classes,
                          save_dir=tmp, epochs=2, max_iters=iterations, batch_size=batch_size,
                          input_size=size, dropblock_prob=dropblock_prob, warmup_epochs=0,
                          mixup_alpha=0, min_scale=0.8, jitter=0, lighting=0, workers=2,
                          progress=False, amp=amp)
        proc = launch_training('classification', cfg, processes, naive_engine=True,
                               capture=True)
        metrics = os.path.join(tmp, 'metrics.jsonl')
        if proc.returncode or not os.path.isfile(metrics):
            lines = [line for line in (proc.stdout + proc.stderr).splitlines()
                     if 'Error' in line] or ['no metrics written']
            raise RuntimeError('the trainer failed: %s' % lines[-1])
        with open(metrics) as f:
            history = [json.loads(line) for line in f]
    return dict(img_per_s=history[-1]['img_per_s_steady'], processes=processes,
                iterations=iterations)
