import json
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

import gluon_resnest as gr
from helpers import ROOT, TESTS, randomize

ort = pytest.importorskip('onnxruntime')


def _net(name, classes=10):
    net = gr.get_model(name, classes=classes)
    net.initialize()
    randomize(net, seed=5)
    return net


def _session(path):
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])


@pytest.mark.slow
@pytest.mark.parametrize('name', ['resnest14', 'resnest50', 'resnest101', 'resnetd50',
                                  'resnest50_fast_1s1x64d', 'resnest50_fast_2s2x40d',
                                  'resnest50_fast_4s1x64d', 'resnest50_fast_1s4x24d',
                                  'resnest14_small', 'regnety_4gf', 'regnet_sa50'])
def test_onnx_runtime_matches_mxnet_at_any_batch(name, tmp_path):
    net = _net(name)
    size = 64
    path = gr.export_onnx(net, str(tmp_path / (name + '.onnx')), (1, 3, size, size))
    sess = _session(path)
    for batch in (1, 3):
        x = np.random.RandomState(batch).uniform(-2, 2, (batch, 3, size, size)).astype('f4')
        expected = net(mx.nd.array(x)).asnumpy()
        assert 0.1 < np.abs(expected).max() < 1e3
        got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
        assert np.abs(got - expected).max() <= 1e-4


def test_the_peers_int8_quantization_of_an_onnx_file_runs_and_stays_close(tmp_path):
    """The benchmark's timm-onnxruntime-int8 peer: ONNX Runtime's static QDQ quantization
    (exercised here on our own export; the peers' environment runs it on timm's)."""
    import onnx
    from gluon_resnest.analysis.peer_benchmark import _quantize
    net = _net('resnest14_small')
    path = gr.export_onnx(net, str(tmp_path / 'm.onnx'), (1, 3, 28, 28))
    x = np.random.RandomState(0).uniform(-2, 2, (8, 3, 28, 28)).astype('f4')
    quantized = _quantize(path, x)
    ops = {node.op_type for node in onnx.load(quantized).graph.node}
    assert {'QuantizeLinear', 'DequantizeLinear'} <= ops
    sess = _session(quantized)
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    expected = net(mx.nd.array(x)).asnumpy()
    assert not np.allclose(got, expected, atol=1e-6)  # quantized, not the float graph
    assert np.abs(got - expected).max() <= 0.25 * np.abs(expected).max()


@pytest.mark.slow
@pytest.mark.parametrize('name, gate', [('resnest14_small', 'Softmax'),
                                        ('resnest50_fast_2s2x40d', 'Softmax'),
                                        ('regnet_sa50', 'Sigmoid')])  # radix 1: a gate
def test_onnx_graph_is_clean_so_onnx_runtime_folds_batchnorm(name, gate, tmp_path):
    """MXNet's exporter lists weights as graph inputs (so ONNX Runtime keeps every BatchNorm),
    divides by a softmax temperature of 1 and computes shapes at run time around swapaxes; the
    exported file has none of it, and ONNX Runtime's optimizer folds every BatchNorm."""
    import onnx
    path = gr.export_onnx(_net(name), str(tmp_path / 'm.onnx'), (1, 3, 32, 32))
    model = onnx.load(path)
    onnx.checker.check_model(model)
    weights = {t.name for t in model.graph.initializer}
    assert [i.name for i in model.graph.input] == ['data'] and weights
    ops = [node.op_type for node in model.graph.node]
    assert ops.count('BatchNormalization') > 10 and gate in ops
    assert not {'Div', 'Shape', 'ScatterND', 'GatherND', 'Pad'} & set(ops), sorted(set(ops))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.optimized_model_filepath = str(tmp_path / 'optimized.onnx')
    ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])
    optimized = [node.op_type for node in onnx.load(str(tmp_path / 'optimized.onnx')).graph.node]
    assert 'BatchNormalization' not in optimized and 'Conv' in optimized


def test_preprocessing_folded_into_the_graph(tmp_path):
    net = _net('resnest14')
    info = gr.get_model_info('resnest14')
    sym, params = gr.export_model(net, str(tmp_path / 'pre'), (2, 64, 64, 3), preprocess=info)
    pixels = np.random.RandomState(0).uniform(0, 255, (2, 64, 64, 3)).astype('f4')
    normalized = (pixels / 255 - np.array(info.mean)) / np.array(info.std)
    expected = net(mx.nd.array(normalized.transpose(0, 3, 1, 2))).asnumpy()
    deployed = mx.gluon.SymbolBlock.imports(sym, ['data'], params)
    np.testing.assert_allclose(deployed(mx.nd.array(pixels)).asnumpy(), expected, atol=1e-4)
    onnx_path = gr.export_onnx(net, str(tmp_path / 'pre.onnx'), (1, 64, 64, 3), preprocess=info)
    got = _session(onnx_path).run(None, {'data': pixels})[0]
    assert np.abs(got - expected).max() <= 1e-4


def test_export_command_checks_its_files(tmp_path):
    net = _net('resnest14_small')
    params = str(tmp_path / 'w.params')
    net.save_parameters(params)
    out = subprocess.run([sys.executable, os.path.join(ROOT, 'eval', 'export.py'), '--model',
                          'resnest14_small', '--params', params, '--out', str(tmp_path / 'x'),
                          '--onnx', '--preprocess', '--batch-size', '2'],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report['symbol_max_abs_diff'] <= 1e-4 and report['onnx_max_abs_diff'] <= 1e-4
    assert 0 <= report['onnx_max_rel_diff'] <= 1e-5 and report['output_scale'] > 0
    assert report['onnx_max_rel_diff'] == pytest.approx(
        report['onnx_max_abs_diff'] / report['output_scale'], rel=1e-3)
    assert report['input_shape'] == [2, 28, 28, 3]
    assert 'Warning' not in out.stderr, out.stderr  # the report is all a user sees


@pytest.mark.parametrize('args, message', [
    (['--model', 'resnest14_small', '--params', 'missing.params'], 'missing.params not found'),
    (['--model', 'resnest14_small', '--params', '{other}'], 'does not fit resnest14_small'),
    (['--model', 'resnest14_small', '--params', '{own}', '--input-size', '8'],
     'too small: height and width must be at least 16'),
])
def test_export_command_bad_input(tmp_path, args, message):
    other = gr.get_model('resnest14', classes=10)
    other.initialize()
    other.save_parameters(str(tmp_path / 'other.params'))
    _net('resnest14_small').save_parameters(str(tmp_path / 'own.params'))
    args = [a.format(other=str(tmp_path / 'other.params'), own=str(tmp_path / 'own.params'))
            for a in args]
    out = subprocess.run([sys.executable, os.path.join(ROOT, 'eval', 'export.py'), '--out',
                          str(tmp_path / 'y')] + args, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode != 0 and message in out.stderr, out.stderr[-2000:]


@pytest.mark.parametrize('backend, tolerance', [('onednn', 1e-4), ('bf16', 0.25), ('int8', 0.25)])
def test_optimized_cpu_backends_agree_with_fp32(backend, tolerance):
    from gluon_resnest.deploy import optimize_for_cpu
    from gluon_resnest.runtime import cpu_supports_bfloat16
    net = _net('resnest14_small')
    if backend == 'bf16' and not cpu_supports_bfloat16():
        with pytest.raises(ValueError, match='bfloat16 on the CPU needs AVX-512'):
            optimize_for_cpu(net, backend, (8, 3, 28, 28))
        pytest.skip('this CPU has no AVX-512: the bf16 backend is refused as it should be')
    x = mx.nd.array(np.random.RandomState(0).uniform(-2, 2, (8, 3, 28, 28)))
    expected = net(x).asnumpy()
    calib = mx.nd.array(np.random.RandomState(1).uniform(-2, 2, (32, 3, 28, 28)))
    fast = optimize_for_cpu(net, backend, (8, 3, 28, 28), calib_images=calib)
    got = fast(x).astype('float32').asnumpy()
    scale = np.abs(expected).max()
    assert np.abs(got - expected).max() <= tolerance * scale
    assert (got.argmax(1) == expected.argmax(1)).mean() >= (1.0 if backend == 'onednn' else 0.75)


BACKENDS_ON_A_CAPPED_CPU = """
import json, sys
sys.path[:0] = sys.argv[1:3]
import mxnet as mx, numpy as np
from helpers import randomize
import gluon_resnest as gr
from gluon_resnest.deploy import optimize_for_cpu
net = gr.get_model('resnest14_small', classes=10)
net.initialize()
randomize(net, seed=5)
x = mx.nd.array(np.random.RandomState(0).uniform(-2, 2, (8, 3, 28, 28)))
expected = net(x).asnumpy()
calib = mx.nd.array(np.random.RandomState(1).uniform(-2, 2, (32, 3, 28, 28)))
errors = {}
for backend in ('onednn', 'int8'):
    got = optimize_for_cpu(net, backend, (8, 3, 28, 28), calib_images=calib)(x).asnumpy()
    errors[backend] = float(np.abs(got - expected).max() / np.abs(expected).max())
print(json.dumps(errors))
"""


@pytest.mark.parametrize('isa', ['AVX2', 'AVX512_CORE'])
def test_onednn_fusion_and_int8_run_on_cpus_without_avx512_or_vnni(isa):
    """What an AVX2 machine (no AVX-512, no VNNI) and an AVX-512 one without VNNI run, shown on
    any CPU by capping oneDNN's instruction set (a cap above the CPU's own changes nothing)."""
    proc = subprocess.run([sys.executable, '-c', BACKENDS_ON_A_CAPPED_CPU, TESTS, ROOT],
                          capture_output=True, text=True,
                          timeout=600, env=dict(os.environ, ONEDNN_MAX_CPU_ISA=isa))
    assert proc.returncode == 0, proc.stderr[-3000:]
    errors = json.loads(proc.stdout.splitlines()[-1])
    assert errors['onednn'] <= 1e-4 and errors['int8'] <= 0.25, errors


@pytest.mark.slow
@pytest.mark.parametrize('options', [dict(calib_mode='entropy'),
                                     dict(granularity='channel-wise', fp32_ends=True)])
def test_int8_options_agree_with_fp32_and_keep_the_ends_in_fp32(options):
    from gluon_resnest.deploy import optimize_for_cpu
    net = _net('resnest14_small')
    x = mx.nd.array(np.random.RandomState(0).uniform(-2, 2, (8, 3, 28, 28)))
    expected = net(x).asnumpy()
    calib = mx.nd.array(np.random.RandomState(1).uniform(-2, 2, (32, 3, 28, 28)))
    fast = optimize_for_cpu(net, 'int8', (8, 3, 28, 28), calib_images=calib, **options)
    got = fast(x).asnumpy()
    assert np.abs(got - expected).max() <= 0.25 * np.abs(expected).max()
    # the quantized graph: which convolution / dense layers run in INT8
    nodes = [n for n in json.loads(fast._cached_graph[1].tojson())['nodes']
             if n['op'] in ('_sg_mkldnn_conv', '_sg_mkldnn_fully_connected')]
    quantized = [str(n.get('attrs', {}).get('quantized', '')).lower() == 'true' for n in nodes]
    ends = options.get('fp32_ends', False)
    assert quantized[0] is not ends and quantized[-1] is not ends
    assert all(quantized[1:-1])


def test_optimization_bad_input():
    from gluon_resnest.deploy import optimize_for_cpu
    net = _net('resnest14_small')
    with pytest.raises(ValueError, match="unknown backend 'tensorrt'; choose one of fp32"):
        optimize_for_cpu(net, 'tensorrt', (1, 3, 28, 28))
    with pytest.raises(ValueError, match='int8 needs at least one batch'):
        optimize_for_cpu(net, 'int8', (4, 3, 28, 28))
    with pytest.raises(ValueError, match="unknown calib_mode 'kl'; choose one of naive, entropy"):
        optimize_for_cpu(net, 'int8', (4, 3, 28, 28), calib_mode='kl')


def test_export_to_a_folder_it_cannot_write_says_so_and_leaves_nothing(tmp_path):
    params = _saved(tmp_path)
    if os.geteuid() == 0:
        # root writes anywhere: a path below a regular file cannot be written by anyone
        blocker = tmp_path / 'file'
        blocker.write_text('x')
        out = str(blocker / 'deploy' / 'm')
    else:
        os.chmod(str(tmp_path), 0o500)
        out = str(tmp_path / 'm')
    proc = subprocess.run([sys.executable, os.path.join(ROOT, 'eval', 'export.py'), '--model',
                           'resnest14_small', '--params', params, '--out', out],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and 'error: cannot write' in proc.stderr, proc.stderr[-2000:]
    assert 'Traceback' not in proc.stderr


def _saved(tmp_path):
    path = str(tmp_path / 'w.params')
    _net('resnest14_small').save_parameters(path)
    return path


def test_export_leaves_no_partial_files_when_writing_fails(tmp_path, monkeypatch):
    net = _net('resnest14_small')
    monkeypatch.setattr(os, 'replace', lambda *a: (_ for _ in ()).throw(OSError(28, 'No space')))
    with pytest.raises(PermissionError, match='cannot write .*m-\\* \\(No space\\)'):
        gr.export_model(net, str(tmp_path / 'm'), (1, 3, 28, 28))
    assert os.listdir(str(tmp_path)) == []
