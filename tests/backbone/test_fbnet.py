"""FBNetV2 and SA-FBNetV2: mobile-vision's counts, its rounding rule, the SE/Split-Attention
swap, export and a trainer pass."""
import mxnet as mx
import numpy as np
import pytest

import gluon_resnest as gr
from gluon_resnest.analysis.flops import count_flops, count_params
from gluon_resnest.backbone.fbnet import FBNet, divisible_by, parse_op
from helpers import randomize


def _conv_weights(net):
    """mobile-vision's "nparams": convolution and dense weights, no biases or BN."""
    return sum(int(np.prod(p.shape)) for p in net.collect_params().values()
               if p.name.endswith('weight') and 'batchnorm' not in p.name)


@pytest.mark.parametrize('name, weights, mflops', [
    ('fbnetv2_f1', 5999408, 56.41056), ('fbnetv2_f3', 6899504, 121.824),
    ('fbnetv2_f4', 6994824, 238.351984)])
def test_counts_are_mobile_visions(name, weights, mflops):
    """The figures in mobile-vision's model definitions, at each model's input size: its
    FLOPs are convolution multiply-adds plus global pooling, this project's default."""
    net = gr.get_model(name)
    net.initialize()
    size = gr.get_model_info(name).eval_crop
    assert _conv_weights(net) == weights
    assert count_flops(net, (1, 3, size, size)) == int(round(mflops * 1e6))


def test_channel_rounding_is_mobile_visions():
    # nearest multiple of 8 (halves away from zero), +8 when that loses over 5%, at least 8
    assert [divisible_by(v) for v in (8 * 5.4566, 24 * 4.7912, 12, 4, 20, 100.2, 3 * 8.9)] == \
        [48, 112, 16, 8, 24, 104, 32]


def test_sa_variants_replace_every_se_and_land_near_table_2():
    for name, paper in (('sa_fbnetv2_f1', 65), ('sa_fbnetv2_f3', 136), ('sa_fbnetv2_f4', 262)):
        net = gr.get_model(name)
        net.initialize()
        size = gr.get_model_info(name).eval_crop
        assert abs(count_flops(net, (1, 3, size, size)) / 1e6 / paper - 1) < 0.02
        attention = [b.attention for b in net.features if getattr(b, 'attention', None)]
        assert all(isinstance(a, gr.SplitAttention) for a in attention)
        assert [a.radix for a in attention][:2] == [4, 2]
    with pytest.raises(ValueError, match='radices must give each of the 8 SE blocks'):
        gr.get_model('fbnetv2_f1', radices=(2, 2))
    with pytest.raises(ValueError, match="unknown FBNet block 'ir_k7'"):
        parse_op('ir_k7')


def test_radix_splits_are_depthwise_filters_of_the_same_channel():
    """With radix r the depthwise conv runs r filters on copies of each channel: split r of
    channel c sees only channel c (a NumPy check of one block's splits)."""
    stages = [[('conv_k3_hs', 8, 2, 1, 1)], [('ir_k3_sehsig', 8, 1, 1, 1)]]
    net = FBNet(stages, radices=[2], classes=3)
    net.initialize()
    randomize(net, seed=1)
    block = net.features[1]
    x = np.random.RandomState(0).uniform(-1, 1, (2, 8, 5, 5)).astype('float32')
    tiled = mx.nd.tile(mx.nd.array(x), reps=(1, 2, 1, 1))
    conv = block.dw.conv(tiled).asnumpy()
    w = block.dw.conv.weight.data().asnumpy()  # (16, 1, 3, 3)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    for r in range(2):
        for c in (0, 5):
            ref = sum(xp[:, c, i:i + 5, j:j + 5] * w[r * 8 + c, 0, i, j]
                      for i in range(3) for j in range(3))
            assert np.abs(conv[:, r * 8 + c] - ref).max() < 1e-5


@pytest.mark.parametrize('name', ['fbnetv2_f1', 'sa_fbnetv2_f1'])
def test_hybridized_equals_imperative_and_exports_to_onnx(name, tmp_path):
    ort = pytest.importorskip('onnxruntime')
    net = gr.get_model(name, classes=5)
    net.initialize()
    randomize(net, seed=2)
    x = np.random.RandomState(3).uniform(-1, 1, (2, 3, 64, 64)).astype('float32')
    expected = net(mx.nd.array(x)).asnumpy()
    net.hybridize()
    assert np.abs(net(mx.nd.array(x)).asnumpy() - expected).max() <= 1e-4
    path = gr.export_onnx(net, str(tmp_path / 'm.onnx'), (1, 3, 64, 64))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    sess = ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    assert np.abs(got - expected).max() <= 1e-4 * max(1.0, np.abs(expected).max())


def test_trainer_runs_sa_fbnetv2_and_refuses_dropblock_it_lacks(tmp_path):
    from gluon_resnest.classification.task import TrainConfig, train
    from gluon_resnest.classification.data import write_records
    from helpers import colored_images
    images, labels = colored_images(32, 4, 32)
    rec_train = write_records(str(tmp_path / 'train'), images, labels)
    rec_val = write_records(str(tmp_path / 'val'), images[:8], labels[:8])
    common = dict(model='sa_fbnetv2_f1', rec_train=rec_train, rec_val=rec_val, classes=4,
                  epochs=1, batch_size=8, input_size=32, crop_ratio=1.0, workers=0,
                  progress=False, max_iters=2)
    with pytest.raises(ValueError, match='sa_fbnetv2_f1 has no DropBlock layers; pass '
                                         '--dropblock-prob 0'):
        train(TrainConfig(save_dir=str(tmp_path / 'refused'), **common), log=lambda *_: None)
    _, summary = train(TrainConfig(save_dir=str(tmp_path / 'run'), dropblock_prob=0.0,
                                   **common), log=lambda *_: None)
    assert np.isfinite(summary['history'][0]['train_loss'])
    assert count_params(gr.get_model('sa_fbnetv2_f1')) > 0
