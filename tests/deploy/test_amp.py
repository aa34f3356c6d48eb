"""Mixed precision (MXNet's AMP) on every model family.

AMP converts a graph while it is traced, before any low-precision kernel runs, so the conversion
is tested on every CPU: each network is traced in a process of its own after ``amp.init`` and
type inference must put every convolution and dense layer in the target dtype. Only running the
converted graphs needs the kernels (bfloat16: AVX-512); those tests skip elsewhere.
``ONEDNN_MAX_CPU_ISA=AVX2`` makes an AVX-512 machine behave as one without: the refusals are
tested on both kinds.
"""
import json
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

# every family, DropBlock on where it has it (both growths for ResNeSt), and DeepLabV3
NETWORKS = ('resnest14_small', 'resnest14_small-band', 'resnest50', 'resnetd50', 'regnety_4gf',
            'regnet_sa50', 'fbnetv2_f1', 'sa_fbnetv2_f1', 'deeplabv3-resnest14_small',
            'deeplabv3-resnest50')
CASES = ['%s:%s' % (network, graph) for network in NETWORKS
         for graph in ('training', 'inference')]
# the networks whose training graphs also run a step where the kernels exist
RUN_CASES = ['%s:%s' % (network, graph) for network in
             ('resnest14_small', 'resnest14_small-band', 'regnet_sa50', 'sa_fbnetv2_f1',
              'deeplabv3-resnest14_small') for graph in ('training', 'inference')]


def _worker(target, cases, run=False, env=None):
    proc = subprocess.run([sys.executable, os.path.join(HERE, 'amp_worker.py'), target] +
                          (['--run'] if run else []) + list(cases),
                          capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, **(env or {})))
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith('{')]
    assert [r['case'] for r in records] == list(cases), proc.stderr[-3000:]
    return {r['case']: r for r in records}


@pytest.fixture(scope='module')
def traced():
    return {target: _worker(target, CASES) for target in ('bfloat16', 'float16')}


@pytest.mark.parametrize('target', ['bfloat16', 'float16'])
@pytest.mark.parametrize('case', CASES)
def test_amp_puts_every_convolution_and_dense_layer_in_low_precision(traced, target, case):
    record = traced[target][case]
    assert 'error' not in record, record['error']
    dtypes = record['dtypes']
    assert dtypes, 'no convolution or dense layer traced'
    wrong = {name: dtype for name, dtype in dtypes.items() if dtype != target}
    assert not wrong, wrong


def test_the_traced_layers_are_the_networks_own(traced):
    """The cases trace what they claim: DropBlock's growth convolutions appear in training graphs
    of the depthwise growth only, and inference graphs leave every DropBlock out."""
    bf16 = traced['bfloat16']
    plain = len(bf16['resnest14_small:inference']['dtypes'])
    assert len(bf16['resnest14_small-band:training']['dtypes']) == plain
    # resnest14_small: DropBlock after bn1, bn2 and bn3 of the two blocks of stages 3-4
    assert len(bf16['resnest14_small:training']['dtypes']) == plain + 6
    assert len(bf16['fbnetv2_f1:training']['dtypes']) == len(bf16['fbnetv2_f1:inference']['dtypes'])


def _bfloat16_kernels():
    from gluon_resnest.runtime import cpu_supports_bfloat16
    return cpu_supports_bfloat16()


@pytest.mark.slow
def test_amp_bfloat16_runs_a_training_and_an_inference_step_of_every_family():
    if not _bfloat16_kernels():
        pytest.skip('this CPU has no AVX-512: bfloat16 kernels cannot run (conversion is '
                    'tested above)')
    records = _worker('bfloat16', RUN_CASES, run=True)
    failed = {case: r.get('error', 'not finite') for case, r in records.items()
              if r.get('error') or not r['finite']}
    assert not failed, failed


def _small_net():
    import gluon_resnest as gr
    net = gr.get_model('resnest14_small', classes=10)
    net.initialize(mx.init.Xavier())
    return net


def test_bfloat16_inference_conversion_runs_on_every_cpu():
    """The bf16 backend's graph conversion, without running it: convolutions and dense layers
    compute in bfloat16, and the kernels are stored in it."""
    from gluon_resnest.deploy import convert_to_bfloat16
    sys.path.insert(0, HERE)
    from amp_worker import dtype_name, weight_op_dtypes
    converted = convert_to_bfloat16(_small_net(), (2, 3, 28, 28))
    dtypes = weight_op_dtypes(converted(mx.sym.var('data')))
    assert dtypes and set(dtypes.values()) == {'bfloat16'}, dtypes
    weights = {name: dtype_name(p.data().dtype) for name, p in converted.collect_params().items()
               if p.data().ndim == 4}  # the convolutions' kernels
    assert weights and set(weights.values()) == {'bfloat16'}, weights


def test_bfloat16_inference_matches_float32_where_it_runs():
    from gluon_resnest.deploy import optimize_for_cpu
    net = _small_net()
    x = mx.nd.array(np.random.RandomState(0).uniform(-2, 2, (8, 3, 28, 28)))
    if not _bfloat16_kernels():
        with pytest.raises(ValueError, match='bfloat16 on the CPU needs AVX-512'):
            optimize_for_cpu(net, 'bf16', (8, 3, 28, 28))
        pytest.skip('this CPU has no AVX-512: the bf16 backend is refused as it should be')
    expected = net(x).asnumpy()
    got = optimize_for_cpu(net, 'bf16', (8, 3, 28, 28))(x).astype('float32').asnumpy()
    # bfloat16 keeps 8 bits of mantissa: a few per cent of the logits' scale
    assert np.abs(got - expected).max() <= 0.1 * np.abs(expected).max()
    assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.75


def test_a_capped_onednn_instruction_set_is_a_cpu_without_bfloat16(tmp_path, monkeypatch):
    from gluon_resnest.runtime import cpu_supports_bfloat16
    cpuinfo = tmp_path / 'cpuinfo'
    cpuinfo.write_text('processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw avx512_bf16\n')
    monkeypatch.delenv('DNNL_MAX_CPU_ISA', raising=False)
    for variable in ('ONEDNN_MAX_CPU_ISA', 'DNNL_MAX_CPU_ISA'):  # oneDNN reads either
        for isa, expected in (('AVX2', False), ('avx2_vnni', False), ('SSE41', False),
                              ('AVX512_CORE', True), ('AVX512_CORE_BF16', True), ('ALL', True)):
            monkeypatch.setenv(variable, isa)
            assert cpu_supports_bfloat16(str(cpuinfo)) is expected, (variable, isa)
        monkeypatch.delenv(variable)
    assert cpu_supports_bfloat16(str(cpuinfo)) is True


def _train_amp(tiny_rec, save_dir, env=None):
    cmd = [sys.executable, os.path.join(ROOT, 'train', 'train.py'), '--model', 'resnest14_small',
           '--classes', '4', '--rec-train', tiny_rec[0], '--rec-val', tiny_rec[1],
           '--input-size', '32', '--crop-ratio', '1', '--epochs', '1', '--batch-size', '8',
           '--workers', '0', '--amp', '--save-dir', str(save_dir), '--no-progress']
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, **(env or {})))


def test_amp_training_is_refused_with_one_line_where_bfloat16_cannot_run(tiny_rec, tmp_path):
    """What a CPU without AVX-512 does, shown on any CPU by capping oneDNN's instruction set."""
    proc = _train_amp(tiny_rec, tmp_path / 'run', env={'ONEDNN_MAX_CPU_ISA': 'AVX2'})
    assert proc.returncode != 0 and 'needs AVX-512' in proc.stderr, proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr and not os.path.exists(str(tmp_path / 'run'))


def test_amp_trains_in_bfloat16_with_dropblock_on_the_cpu(tiny_rec, tmp_path):
    if not _bfloat16_kernels():
        pytest.skip('this CPU has no AVX-512: bfloat16 training cannot run (the refusal is '
                    'tested above)')
    proc = _train_amp(tiny_rec, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads(open(str(tmp_path / 'metrics.jsonl')).readline())
    assert np.isfinite(metrics['train_loss']) and metrics['val_top1'] >= 0
    meta = json.load(open(str(tmp_path / 'epoch-0000' / 'meta.json')))
    assert meta['config']['amp'] is True and meta['config']['dropblock_prob'] > 0
