"""RegNet trunk: pycls's stage rules, and the parameter and FLOP counts its sources publish."""
import mxnet as mx
import numpy as np
import pytest

import gluon_resnest as gr
from gluon_resnest.analysis.flops import count_flops, count_params
from gluon_resnest.backbone.regnet import RegNet, regnet_stages
from helpers import randomize


def test_stage_rules_reproduce_pycls_configs():
    # RegNetY-4.0GF (DEPTH 22, W0 96, WA 31.41, WM 2.24, GROUP_W 64) and -800MF (14, 56,
    # 38.84, 2.4, 16) as listed in pycls's model zoo
    assert regnet_stages(96, 31.41, 2.24, 22, 64) == (
        (128, 192, 512, 1088), (2, 6, 12, 2), (64, 64, 64, 64))
    assert regnet_stages(56, 38.84, 2.4, 14, 16) == (
        (64, 128, 320, 768), (1, 3, 8, 2), (16, 16, 16, 16))


def _built(name):
    net = gr.get_model(name)
    net.initialize()
    return net


def test_counts_match_the_sources_under_their_conventions():
    # pycls: SE sized from the block input, 20,646,656 parameters, 3.97 G conv+dense MACs
    net = _built('regnety_4gf')
    assert count_params(net) == 20646656
    assert round(count_flops(net, convention='macs') / 1e9, 2) == 3.97
    # the ResNeSt paper's Table 1 baseline: SE from the block's width, 21.05M, 4.00 G with BN
    # counted (scale and shift per output)
    net = _built('regnety_4gf_block_se')
    assert round(count_params(net) / 1e6, 2) == 21.05
    assert round(count_flops(net, convention='macs+bn') / 1e9, 2) == 4.00
    # RegNet-SA-50: 21.67M published; 21.66M and 4.007 G MACs (4.04 G with BN) as read here
    net = _built('regnet_sa50')
    assert round(count_params(net) / 1e6, 2) == 21.66
    assert abs(count_params(net) / 21.67e6 - 1) < 0.001
    assert round(count_flops(net, convention='macs') / 1e9, 3) == 4.007
    assert round(count_flops(net, convention='macs+bn') / 1e9, 2) == 4.04
    with pytest.raises(ValueError, match="unknown convention 'gmacs'"):
        count_flops(net, convention='gmacs')


def test_block_shapes_follow_the_table():
    net = _built('regnet_sa50')
    blocks = [stage[0] for stage in net.stages]
    # first blocks: strided 3x3 with groups = width / group width, attention cardinality
    assert [b.b.conv._kwargs['num_group'] for b in blocks] == [27, 18, 45, 42]
    assert [b.attention.cardinality for b in blocks] == [6, 24, 18, 28]
    assert [b.attention.fc1._channels for b in blocks] == [54, 72, 180, 336]  # width / 4
    assert [len(stage) for stage in net.stages] == [3, 4, 6, 3]


@pytest.mark.parametrize('name', ['regnety_4gf', 'regnet_sa50'])
def test_hybridized_equals_imperative_at_any_size(name):
    net = gr.get_model(name, classes=7)
    net.initialize()
    randomize(net, seed=3)
    for size in (32, 57):
        x = mx.nd.array(np.random.RandomState(size).uniform(-1, 1, (2, 3, size, size)))
        imperative = net(x).asnumpy()
        net.hybridize()
        assert np.abs(net(x).asnumpy() - imperative).max() <= 1e-4
        assert imperative.shape == (2, 7)
        net.hybridize(active=False)


def test_regnet_takes_the_trainers_regularizers_and_refuses_bad_tables():
    from gluon_resnest.layers.dropblock import set_drop_prob
    net = gr.get_model('regnet_sa50', last_gamma=True, final_drop=0.1)
    net.initialize()
    # DropBlock after each of the 3 convs of every block of the last two stages (6 + 3 blocks)
    assert set_drop_prob(net, 0.1) == 27
    assert all((b.c.bn.gamma.data() == 0).asnumpy().all() for stage in net.stages
               for b in stage)
    with pytest.raises(ValueError, match='one value per stage'):
        RegNet((8, 16), (1, 1, 1), (8, 8))
    with pytest.raises(ValueError, match="attention must be one of"):
        RegNet((8,), (1,), (8,), attention='cbam')
    with pytest.raises(ValueError, match='not a multiple of the group width'):
        RegNet((24,), (1,), (16,))
    with pytest.raises(gr.PretrainedWeightsError, match='regnet_sa50 has no published weights'):
        gr.get_model('regnet_sa50', pretrained=True)
    with pytest.raises(TypeError, match='unknown argument avg_down'):  # a ResNeSt argument
        gr.get_model('regnet_sa50', avg_down=True)
    with pytest.raises(ValueError, match='output_stride must be one of'):
        gr.get_model('regnet_sa50', output_stride=4)


def test_trainer_runs_regnet_sa50_with_the_default_recipe(tmp_path):
    """A few iterations through the classification trainer (DropBlock, mixup, label
    smoothing: the defaults) and a checkpoint that reloads."""
    from gluon_resnest.classification.task import TrainConfig, train
    from gluon_resnest.classification.data import write_records
    from helpers import colored_images
    images, labels = colored_images(32, 4, 32)
    rec_train = write_records(str(tmp_path / 'train'), images, labels)
    rec_val = write_records(str(tmp_path / 'val'), images[:8], labels[:8])
    cfg = TrainConfig(model='regnet_sa50', rec_train=rec_train, rec_val=rec_val, classes=4,
                      save_dir=str(tmp_path / 'run'), epochs=1, batch_size=8, input_size=32,
                      crop_ratio=1.0, workers=0, progress=False, max_iters=2)
    net, summary = train(cfg, log=lambda *_: None)
    assert len(summary['history']) == 1 and np.isfinite(summary['history'][0]['train_loss'])
    again = gr.get_model('regnet_sa50', classes=4)
    again.load_parameters(str(tmp_path / 'run' / 'best' / 'model.params'))
