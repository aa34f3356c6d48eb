import json
import os
import stat
import subprocess
import sys
import time

import mxnet as mx
import pytest

import gluon_resnest as gr
from gluon_resnest.analysis import count_flops, count_params
from helpers import ROOT



@pytest.mark.parametrize('name, paper_gflops', [('resnest50', 5.39),
                                                ('resnest50_fast_2s1x64d', 4.34),
                                                ('resnest50_fast_4s2x40d', 4.41),
                                                ('resnest50_fast_1s4x24d', 4.42)])
def test_flops_match_the_paper(name, paper_gflops):
    net = gr.get_model(name)
    net.initialize()
    flops = count_flops(net, (1, 3, 224, 224))
    assert abs(flops / 1e9 - paper_gflops) / paper_gflops < 0.02


def test_flops_count_groups_dilation_dense_and_pooling_by_hand():
    net = mx.gluon.nn.HybridSequential()
    net.add(mx.gluon.nn.Conv2D(8, 3, padding=2, dilation=2, groups=2, in_channels=4),
            mx.gluon.nn.AvgPool2D(2, 2), mx.gluon.nn.Dense(5, in_units=8 * 5 * 5))
    net.initialize()
    total, by_op = count_flops(net, (2, 4, 10, 10), per_op=True)
    conv = 2 * 8 * 10 * 10 * (4 // 2) * 9       # outputs x (in/groups) x kernel
    pool = 2 * 8 * 5 * 5 * 4                     # outputs x window
    dense = 2 * 5 * 200
    assert by_op == {'Convolution': conv, 'Pooling': pool, 'FullyConnected': dense}
    assert total == conv + pool + dense


def test_parameter_counts_match_the_paper():
    net = gr.get_model('resnest50_fast_2s1x64d')
    net.initialize()
    assert abs(count_params(net) / 27.5e6 - 1) < 0.005
    assert count_params(net, trainable_only=False) > count_params(net)


@pytest.mark.slow
def test_benchmark_command_prints_one_json_line_per_measurement():
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'eval', 'benchmark.py'), '--model',
                           'resnest14_small', '--batch-size', '2', '--train-batch-size', '2',
                           '--train-size', '32', '--repeats', '1', '--train-repeats', '1'],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    peak, *records = [json.loads(line) for line in proc.stdout.splitlines()]
    net = gr.get_model('resnest14_small')
    net.initialize()
    assert [r['mode'] for r in records] == ['inference', 'training']
    assert records[0]['backend'] == 'onednn'  # the inference path evaluate.py uses on the CPU
    assert peak['conv_peak_gmacs'] > 0
    for r in records:
        assert r['img_per_s'] > 0 and r['peak_rss_mb'] > 0 and r['params'] == count_params(net)
        # img/s x multiply-adds per image (x3 for a training step) over the measured peak
        work = r['img_per_s'] * count_flops(net, (1, 3, r['size'], r['size'])) * (
            3 if r['mode'] == 'training' else 1) / 1e9
        assert r['fraction_of_conv_peak'] == pytest.approx(work / peak['conv_peak_gmacs'],
                                                           abs=2e-3)
    bad = subprocess.run([sys.executable, os.path.join(ROOT, 'eval', 'benchmark.py'),
                          '--batch-size', '0'], capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0
    assert "--batch-size: must be a positive integer, got '0'" in bad.stderr
    # a model GluonCV lacks: one line naming the ones it has, not a traceback listing its zoo
    bad = subprocess.run([sys.executable, os.path.join(ROOT, 'eval', 'benchmark.py'),
                          '--model', 'resnest14_small', '--compare', 'gluoncv'],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and 'Traceback' not in bad.stderr
    assert 'GluonCV has no resnest14_small; --compare gluoncv works for resnest101, ' \
        'resnest14,' in bad.stderr


def test_benchmark_rounds_report_the_median_of_each_implementations_rounds():
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'eval', 'benchmark.py'), '--model',
                           'resnest14_small', '--mode', 'inference', '--batch-size', '2',
                           '--repeats', '1', '--rounds', '3', '--backend', 'fp32', '--no-peak'],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    record, = [json.loads(line) for line in proc.stdout.splitlines()]
    rounds = record['img_per_s_rounds']
    assert len(rounds) == record['rounds'] == 3 and record['backend'] == 'fp32'
    assert record['img_per_s'] == pytest.approx(sorted(rounds)[1], abs=1e-3)
    assert record['median_ms'] == pytest.approx(2e3 / record['img_per_s'], rel=1e-3)


def test_alternating_timings_interleave_the_steps_and_time_each_one():
    from gluon_resnest.analysis.peer_benchmark import median_rates
    calls = []
    fast, slow = median_rates([lambda: calls.append('a'),
                               lambda: (calls.append('b'), time.sleep(0.02))], 4, 1, 3)
    assert calls == ['a', 'b'] * 4  # warm-up round, then 3 timed rounds, one call each
    assert slow['img_per_s'] < 4 / 0.02 < fast['img_per_s'] and slow['repeats'] == 3


def test_benchmark_measures_dropblocks_cost_from_steps_alternating_in_one_process():
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'eval', 'benchmark.py'), '--model',
                           'resnest14_small', '--mode', 'training', '--train-batch-size', '2',
                           '--train-size', '28', '--train-repeats', '2', '--no-peak',
                           '--compare', 'no-dropblock'],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ours, without, ratio = [json.loads(line) for line in proc.stdout.splitlines()]
    assert (ours['impl'], without['impl'], ratio['compare']) == (
        'gluon_resnest', 'no-dropblock', 'no-dropblock')
    assert ours['img_per_s'] > 0 and without['img_per_s'] > 0
    assert ours['repeats'] == without['repeats'] == 2
    assert ratio['speedup'] == round(ours['img_per_s'] / without['img_per_s'], 2)
    assert 'peak_rss_mb' not in ours  # two networks shared the process


def test_profiler_writes_its_trace_only_into_a_private_temporary_folder(monkeypatch):
    from gluon_resnest.analysis import profile
    given = []
    real = mx.profiler.set_config

    def recording(**kwargs):
        # checked before MXNet sees the path: it would delete whatever is there
        given.append(kwargs['filename'])
        assert not os.path.exists(kwargs['filename']), \
            'the profiler was handed an existing path: %s' % kwargs['filename']
        real(**kwargs)

    monkeypatch.setattr(mx.profiler, 'set_config', recording)
    a = mx.nd.ones((4, 4))
    rows = profile.profile_operators(lambda: (a * 2).wait_to_read(), iterations=1, warmup=0)
    assert any(name == '_mul_scalar' for name, _, _ in rows)
    assert len(given) == 1 and not os.path.exists(os.path.dirname(given[0]))


def _count_blocks(block, kind):
    return isinstance(block, kind) + sum(_count_blocks(c, kind) for c in block._children.values())


def test_profile_command_times_every_convolution_of_the_model(tmp_path):
    # the trace MXNet writes (and rewrites at exit) goes to a private temporary folder: the
    # process's TMPDIR is left empty and /dev/null stays a device (a root run once replaced it)
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'eval', 'profile.py'), '--model',
                           'resnest14_small', '--batch-size', '2', '--iterations', '2',
                           '--top', '200'], cwd=str(tmp_path),
                          env=dict(os.environ, TMPDIR=str(tmp_path)),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert stat.S_ISCHR(os.stat('/dev/null').st_mode), '/dev/null is no longer a device'
    assert os.listdir(str(tmp_path)) == []
    rows = {line.split()[0]: line.split()[1:] for line in proc.stdout.splitlines()[2:]}
    net = gr.get_model('resnest14_small')
    # bulk execution is off, so each convolution layer is one timed call per iteration
    assert float(rows['Convolution'][0]) == _count_blocks(net, mx.gluon.nn.Conv2D)
    assert float(rows['BatchNorm'][0]) == _count_blocks(net, mx.gluon.nn.BatchNorm)
    assert sum(float(r[2]) for r in rows.values()) == pytest.approx(100, abs=1)


PEER_STAND_IN = """#!/bin/sh
echo "$@" > {args}
extra=0
while [ $# -gt 0 ]; do
  if [ "$1" = --also-onnx ]; then
    [ -f "$2" ] && echo file > {exported}
    extra=1
  fi
  shift
done
echo '{{"ready": true, "steps": '$((1 + extra))', "peer_model": "resnest14d"}}'
while read command index; do
  [ "$command" = step ] || exit 0
  if [ "$index" = 0 ]; then echo '{{"seconds": 0.5}}'; else echo '{{"seconds": 0.4}}'; fi
done
"""


@pytest.mark.slow
def test_benchmark_compares_with_timm_through_the_peers_environment(tmp_path):
    """--compare timm runs analysis/peer_benchmark.py with the peers' python as a server whose
    steps alternate with ours (here a stand-in that answers like it: 0.5 s per batch of 2 for
    timm's, 0.4 s for our ONNX file) and prints its figure, the ratio and the fraction of the
    peak; a missing environment is one line naming make bench-env."""
    fake = tmp_path / 'python'
    # with --also-onnx FILE it serves a second step, and notes whether FILE existed
    fake.write_text(PEER_STAND_IN.format(args=tmp_path / 'args', exported=tmp_path / 'exported'))
    fake.chmod(0o755)
    cmd = [sys.executable, os.path.join(ROOT, 'eval', 'benchmark.py'), '--model', 'resnest14',
           '--mode', 'inference', '--size', '32', '--batch-size', '2', '--repeats', '1',
           '--compare', 'timm']
    proc = subprocess.run(cmd + ['--peer-python', str(fake)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    ours, timm, ratio = lines[1:]
    assert timm['impl'] == 'timm' and timm['img_per_s'] == 4.0 and 'fraction_of_conv_peak' in timm
    assert ratio['speedup'] == round(ours['img_per_s'] / 4.0, 2)
    args = (tmp_path / 'args').read_text().split()
    assert args[0].endswith('peer_benchmark.py') and args[args.index('--model') + 1] == \
        'resnest14d' and args[args.index('--size') + 1] == '32' and '--serve' in args
    # a peer that fails while setting up: its own last error line, no traceback of ours
    broken = tmp_path / 'broken'
    broken.write_text('#!/bin/sh\necho "Traceback (most recent call last):" >&2\n'
                      'echo "RuntimeError: no such model" >&2\nexit 1\n')
    broken.chmod(0o755)
    failed = subprocess.run(cmd + ['--peer-python', str(broken)], capture_output=True,
                            text=True, timeout=300)
    assert failed.returncode != 0 and 'Traceback' not in failed.stderr
    assert 'timm resnest14d failed: RuntimeError: no such model' in failed.stderr
    missing = subprocess.run(cmd + ['--peer-python', str(tmp_path / 'none')],
                             capture_output=True, text=True, timeout=300)
    assert missing.returncode != 0 and 'make bench-env' in missing.stderr
    assert 'Traceback' not in missing.stderr
    # timm's ONNX export: our own export goes to the same ONNX Runtime, timed beside it
    onnx = subprocess.run(cmd[:-1] + ['timm-onnxruntime', '--peer-python', str(fake)],
                          capture_output=True, text=True, timeout=300)
    assert onnx.returncode == 0, onnx.stderr[-2000:]
    peer, ratio = [json.loads(line) for line in onnx.stdout.splitlines()][2:]
    assert peer['ours_onnx_img_per_s'] == 5.0 and ratio['onnx_speedup'] == 1.25
    args = (tmp_path / 'args').read_text().split()
    assert args[args.index('--impl') + 1] == 'timm-onnxruntime'
    assert (tmp_path / 'exported').read_text().strip() == 'file'  # there while the peer ran
    (tmp_path / 'exported').unlink()
    int8 = subprocess.run(cmd[:-1] + ['timm-onnxruntime-int8', '--backend', 'int8',
                                      '--peer-python', str(fake)],
                          capture_output=True, text=True, timeout=300)
    assert int8.returncode == 0, int8.stderr[-2000:]
    # no int8 convolution peak is measured, so no line for it and no fraction
    ours, peer, ratio = [json.loads(line) for line in int8.stdout.splitlines()
                         if line.startswith('{')]
    assert ours['backend'] == ratio['backend'] == 'int8' and peer['img_per_s'] == 4.0
    assert ours['dtype'] == peer['dtype'] == ratio['dtype'] == 'int8'
    assert 'fraction_of_conv_peak' not in ours
    args = (tmp_path / 'args').read_text().split()
    assert args[args.index('--impl') + 1] == 'timm-onnxruntime-int8'
    assert '--also-onnx' not in args and not (tmp_path / 'exported').exists()
    other = subprocess.run(cmd[:3] + ['resnest14_small', '--compare', 'timm'],
                           capture_output=True, text=True, timeout=300)
    assert other.returncode != 0 and 'timm has no resnest14_small' in other.stderr


@pytest.mark.slow
def test_benchmark_compares_like_with_like():
    """Every comparison runs in this project's dtype of the mode, or the command refuses it
    in one line (checked before anything is built, on every CPU)."""
    cmd = [sys.executable, os.path.join(ROOT, 'eval', 'benchmark.py'), '--model', 'resnest14']
    for args, message in (
            (['--backend', 'bf16', '--compare', 'onnxruntime'],
             '--compare onnxruntime runs in float32, not in bfloat16 (inference --backend bf16)'),
            (['--mode', 'inference', '--backend', 'bf16', '--compare', 'timm-onnxruntime'],
             '--compare timm-onnxruntime runs in float32, not in bfloat16'),
            (['--mode', 'inference', '--backend', 'int8', '--compare', 'timm'],
             '--compare timm runs in float32 or bfloat16, not in int8'),
            (['--mode', 'inference', '--compare', 'timm-onnxruntime-int8'],
             '--compare timm-onnxruntime-int8 runs in int8, not in float32 (inference '
             '--backend onednn)'),
            (['--mode', 'training', '--backend', 'bf16'],
             '--backend chooses the inference path; training runs float32, or bfloat16 with '
             '--amp'),
            (['--amp'], '--amp is mixed-precision training: use it with --mode training')):
        proc = subprocess.run(cmd + args, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2 and message in proc.stderr, (args, proc.stderr[-2000:])
        assert 'Traceback' not in proc.stderr


@pytest.mark.slow
def test_benchmark_runs_timm_in_bfloat16_beside_our_bfloat16(tmp_path):
    """--backend bf16 (inference) and --amp (training) ask the peer for torch.autocast in
    bfloat16, and every record and ratio names its dtype; a CPU without AVX-512 (or oneDNN
    capped below it) refuses bfloat16 in one line before anything runs."""
    fake = tmp_path / 'python'
    fake.write_text(PEER_STAND_IN.format(args=tmp_path / 'args', exported=tmp_path / 'exported'))
    fake.chmod(0o755)
    base = [sys.executable, os.path.join(ROOT, 'eval', 'benchmark.py'), '--model', 'resnest14',
            '--compare', 'timm', '--peer-python', str(fake), '--no-peak']
    runs = ((['--mode', 'inference', '--backend', 'bf16', '--size', '32', '--batch-size', '2',
              '--repeats', '1']),
            (['--mode', 'training', '--amp', '--train-size', '32', '--train-batch-size', '2',
              '--train-repeats', '1']))
    capped = dict(os.environ, ONEDNN_MAX_CPU_ISA='AVX2')
    for flags in runs:
        refused = subprocess.run(base + flags, capture_output=True, text=True, timeout=300,
                                 env=capped)
        assert refused.returncode == 2 and 'bfloat16 on the CPU needs AVX-512' in \
            refused.stderr and 'Traceback' not in refused.stderr, refused.stderr[-2000:]
    from gluon_resnest.runtime import cpu_supports_bfloat16
    if not cpu_supports_bfloat16():
        pytest.skip('this CPU has no AVX-512: bfloat16 cannot run (the refusal is tested above)')
    for flags in runs:
        proc = subprocess.run(base + flags, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        ours, timm, ratio = [json.loads(line) for line in proc.stdout.splitlines()]
        assert ours['dtype'] == timm['dtype'] == ratio['dtype'] == 'bfloat16'
        args = (tmp_path / 'args').read_text().split()
        assert args[args.index('--dtype') + 1] == 'bfloat16'


def test_a_figure_above_the_measured_peak_gets_no_fraction():
    from gluon_resnest.analysis.compare import add_peak_fraction as _add_peak_fraction
    inference = dict(mode='inference', img_per_s=10.0)
    _add_peak_fraction(inference, 5e9, 100.0)  # 50 G multiply-adds/s of a 100 G peak
    assert inference['fraction_of_conv_peak'] == 0.5
    training = dict(mode='training', img_per_s=10.0)
    _add_peak_fraction(training, 5e9, 100.0)  # three passes: 150 G/s, above the peak
    assert 'fraction_of_conv_peak' not in training
    unmeasured = dict(mode='inference', img_per_s=10.0)
    _add_peak_fraction(unmeasured, 5e9, None)
    assert 'fraction_of_conv_peak' not in unmeasured


def test_the_convolution_peak_is_the_best_of_several_layers(monkeypatch):
    """The peak is the fastest of PEAK_LAYERS (each one's fastest call), in the dtype asked."""
    from gluon_resnest.analysis import benchmark
    monkeypatch.setattr(benchmark, 'PEAK_LAYERS', ((2, 16, 8, 3), (2, 32, 8, 1)))
    timed = []
    real = benchmark.median_rates

    def recording(steps, *args):
        results = real(steps, *args)
        timed.append(results[0]['min_ms'])
        return results
    monkeypatch.setattr(benchmark, 'median_rates', recording)
    peak = benchmark.conv_peak_gmacs(repeats=2, warmup=1)
    macs = [2 * 8 * 8 * 16 * 16 * 9, 2 * 8 * 8 * 32 * 32]
    assert peak == pytest.approx(max(m / (t * 1e6) for m, t in zip(macs, timed)))
