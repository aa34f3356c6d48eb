import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

import gluon_resnest as gr
from gluon_resnest.analysis import count_params
from helpers import randomize


@pytest.mark.parametrize('name', [n for n in gr.list_models() if gr.get_model_info(n).params_m])
def test_parameter_counts_match_the_paper(name):
    net = gr.get_model(name)
    net.initialize()
    net(mx.nd.zeros((1, 3, 32, 32)))
    published = gr.get_model_info(name).params_m * 1e6
    assert abs(count_params(net) - published) / published < 0.005


def _gluoncv_reference(name, size, **kwargs):
    """GluonCV's model with random weights and non-trivial BN statistics."""
    gcv_model_zoo = pytest.importorskip('gluoncv.model_zoo')
    ref = gcv_model_zoo.get_model(name, input_size=size, **kwargs)
    ref.initialize()
    ref(mx.nd.zeros((1, 3, size, size)))
    randomize(ref, seed=1)
    return ref


@pytest.mark.slow
@pytest.mark.parametrize('name, size', [('resnest14', 224), ('resnest26', 224),
                                        ('resnest50', 224), ('resnest101', 256)])
def test_gluoncv_weights_load_unchanged_and_give_the_same_logits(name, size, tmp_path):
    ref = _gluoncv_reference(name, size)
    path = str(tmp_path / (name + '.params'))
    ref.save_parameters(path)
    ours = gr.get_model(name)
    ours.load_parameters(path)  # strict: every name and shape must match
    assert count_params(ours, False) == count_params(ref, False)
    ours.hybridize(static_alloc=True)
    x = mx.nd.random.uniform(-2, 2, shape=(2, 3, size, size))
    expected = ref(x).asnumpy()
    assert 1 < np.abs(expected).max() < 100  # logits of a sane scale: the bounds mean something
    # float32: the operators are ordered differently (pool-then-sum, batched products), so only
    # rounding may differ
    assert np.abs(ours(x).asnumpy() - expected).max() <= 2e-6 * np.abs(expected).max()
    # float64: the same mathematics, so the logits agree far below the 1e-5 bound
    ref.cast('float64')
    ours.cast('float64')
    x64 = x.astype('float64')
    assert np.abs(ours(x64).asnumpy() - ref(x64).asnumpy()).max() <= 1e-5


def test_resnest50_has_gluoncvs_parameter_count():
    net = gr.get_model('resnest50')
    net.initialize()
    assert count_params(net, trainable_only=False) == 27547816


@pytest.mark.parametrize('output_stride, gluoncv_kwargs', [(8, dict(dilated=True)),
                                                           (16, dict(dilation=2))])
def test_dilated_modes_match_gluoncv(output_stride, gluoncv_kwargs, tmp_path):
    ref = _gluoncv_reference('resnest50', 96, **gluoncv_kwargs)
    ref.save_parameters(str(tmp_path / 'w.params'))
    ours = gr.get_model('resnest50', output_stride=output_stride)
    ours.load_parameters(str(tmp_path / 'w.params'))
    x = mx.nd.random.uniform(-2, 2, shape=(1, 3, 96, 96), dtype='float64')
    ref.cast('float64')
    ours.cast('float64')
    assert np.abs(ours(x).asnumpy() - ref(x).asnumpy()).max() <= 1e-5


@pytest.mark.slow
@pytest.mark.parametrize('hybridize', [False, True])
def test_training_mode_output_and_gradients_match_gluoncv(hybridize, tmp_path):
    """Training graphs (batch statistics, the avd pool inside the attention when no DropBlock
    sits between them) against GluonCV's model with the same weights, in float64."""
    # 128 px: GluonCV's DropBlock (rate 0) divides by the map size less the block size
    from functools import partial
    from gluoncv.nn.dropblock import set_drop_prob as gluoncv_set_drop_prob
    ref = _gluoncv_reference('resnest26', 128)
    ref.apply(partial(gluoncv_set_drop_prob, 0.0))  # GluonCV's zoo builds DropBlock 0.1 in
    ref.save_parameters(str(tmp_path / 'w.params'))
    ours = gr.get_model('resnest26')
    ours.load_parameters(str(tmp_path / 'w.params'))
    ref.cast('float64')
    ours.cast('float64')
    if hybridize:
        ours.hybridize()
    x = mx.nd.random.uniform(-2, 2, shape=(3, 3, 128, 128), dtype='float64')
    outputs, grads = [], []
    for net in (ref, ours):
        data = x.copy()
        data.attach_grad()
        with autograd.record():
            out = net(data)
            loss = (out * mx.nd.arange(out.size, dtype='float64').reshape(out.shape)).sum()
        loss.backward()
        outputs.append(out.asnumpy())
        # by structural name (what save/load_parameters match on)
        grads.append(dict(data=data.grad.asnumpy(), **{
            name: p.grad().asnumpy() for name, p in net._collect_params_with_prefix().items()
            if p.grad_req != 'null'}))
    assert np.abs(outputs[1] - outputs[0]).max() <= 1e-8 * np.abs(outputs[0]).max()
    assert sorted(grads[0]) == sorted(grads[1]) and len(grads[0]) > 100
    # biases before a training-mode BatchNorm have zero gradient: rounding noise only, hence
    # an absolute floor far below the network's gradients
    floor = 1e-10 * max(np.abs(g).max() for g in grads[0].values())
    for name, expected in grads[0].items():
        error = np.abs(grads[1][name] - expected).max()
        assert error <= 1e-8 * np.abs(expected).max() + floor, name


@pytest.mark.parametrize('output_stride, strides', [(32, (4, 8, 16, 32)), (16, (4, 8, 16, 16)),
                                                    (8, (4, 8, 8, 8))])
def test_stage_outputs_for_dense_prediction(output_stride, strides):
    net = gr.get_model('resnest14', features_only=True, output_stride=output_stride)
    net.initialize()
    net.hybridize()
    feats = net(mx.nd.zeros((1, 3, 128, 128)))
    assert [f.shape[1] for f in feats] == [256, 512, 1024, 2048]
    assert [128 // f.shape[2] for f in feats] == list(strides)


@pytest.mark.parametrize('name', ['resnest50_fast_2s2x40d', 'resnest50_fast_1s4x24d',
                                  'resnest50_fast_4s1x64d', 'resnetd50'])
def test_hybridized_equals_imperative(name):
    net = gr.get_model(name, classes=10)
    net.initialize()
    randomize(net)
    x = mx.nd.random.uniform(shape=(2, 3, 64, 64))
    eager = net(x).asnumpy()
    net.hybridize(static_alloc=True, static_shape=True)
    np.testing.assert_allclose(net(x).asnumpy(), eager, atol=1e-5)
    net(mx.nd.random.uniform(shape=(1, 3, 96, 80)))  # another shape re-binds


def test_resnest101_builds_and_runs_hybridized():
    net = gr.get_model('resnest101')
    net.initialize()
    net.hybridize(static_alloc=True, static_shape=True)
    out = net(mx.nd.random.uniform(shape=(1, 3, 256, 256)))
    assert out.shape == (1, 1000) and np.isfinite(out.asnumpy()).all()


def test_training_recipe_switches():
    net = gr.get_model('resnest200', last_gamma=True, dropblock_prob=0.1)
    net.initialize()
    assert net.layer1[0].bn3.gamma.data().sum().asscalar() == 0  # zero-gamma last BN
    assert net.drop is not None and net.drop._rate == 0.2  # final dropout for >200 layers
    drops = [b for b in gr.layers.dropblock._walk(net) if isinstance(b, gr.DropBlock)]
    assert len(drops) == 3 * (36 + 3) and all(d.drop_prob == 0.1 for d in drops)
    assert gr.get_model('resnest101').drop is None


def test_export_round_trip_has_no_random_ops(tmp_path):
    net = gr.get_model('resnest14', classes=7, dropblock_prob=0.1, final_drop=0.3)
    net.initialize()
    randomize(net)
    x = mx.nd.random.uniform(shape=(2, 3, 64, 64))
    with autograd.record():
        net(x)  # a training-mode call first: export must not keep its graph
    sym_file, params_file = gr.export_model(net, str(tmp_path / 'deploy' / 'r14'), (2, 3, 64, 64))
    graph = open(sym_file).read()
    assert 'random' not in graph and 'Dropout' not in graph
    imported = mx.gluon.SymbolBlock.imports(sym_file, ['data'], params_file)
    np.testing.assert_allclose(imported(x).asnumpy(), net(x).asnumpy(), atol=1e-5)


@pytest.mark.parametrize('shape, message', [
    ((1, 1, 224, 224), 'expected 3 input channels'),
    ((3, 224, 224), 'expected a 4-D batch'),
    ((1, 3, 16, 224), 'input 16x224 is too small: height and width must be at least 32'),
])
def test_bad_input_is_named(shape, message):
    net = gr.get_model('resnest14')
    net.initialize()
    for hybrid in (False, True):
        net.hybridize(active=hybrid)
        with pytest.raises(ValueError, match=message):
            net(mx.nd.zeros(shape))


def test_bad_constructor_arguments_are_named():
    with pytest.raises(ValueError, match=r"unknown model 'resnest5'.*did you mean resnest50"):
        gr.get_model('resnest5')
    with pytest.raises(TypeError, match=r'unknown argument foo; allowed: .*output_stride'):
        gr.get_model('resnest50', foo=1)
    with pytest.raises(ValueError, match='radix must be an integer >= 0'):
        gr.get_model('resnest50', radix=-1)
    with pytest.raises(ValueError, match='divisible by cardinality\\*radix=3'):
        gr.get_model('resnest50', radix=3)
    with pytest.raises(ValueError, match='cardinality must be an integer >= 1'):
        gr.get_model('resnest50', cardinality=0)
    with pytest.raises(ValueError, match='output_stride must be one of'):
        gr.get_model('resnest50', output_stride=4)
    with pytest.raises(ValueError, match='dilated=True means output_stride=8'):
        gr.get_model('resnest50', dilated=True, output_stride=16)


def test_every_radix_and_cardinality_combination_runs():
    for radix in (0, 1, 2, 4):
        for cardinality in (1, 2, 4):
            net = gr.ResNeSt((1, 1, 1, 1), radix=radix, cardinality=cardinality,
                             bottleneck_width=32, classes=3)
            net.initialize()
            net.hybridize()
            assert net(mx.nd.ones((1, 3, 32, 32))).shape == (1, 3)


def test_metadata():
    info = gr.get_model_info('resnest269')
    assert (info.eval_crop, info.resize, info.interpolation) == (416, 475, 'bicubic')
    assert (gr.get_model_info('resnest101').interpolation, info.top1) == ('bilinear', 84.5)
    assert gr.resnest50.info.mean == (0.485, 0.456, 0.406)
    trunks = [gr.get_model_info(name).trunk for name in gr.list_models()]
    assert (trunks.count('resnest'), trunks.count('regnet'), trunks.count('fbnet')) == (19, 3, 6)


@pytest.mark.parametrize('name, stride', [('resnest14_small', 16), ('resnest14_small_s1', 8)])
def test_small_input_models_downsample_by_their_stride_and_accept_28px(name, stride):
    net = gr.get_model(name, classes=10)
    net.initialize()
    feats_net = gr.get_model(name, features_only=True)
    feats_net.initialize()
    assert net(mx.nd.zeros((2, 3, 28, 28))).shape == (2, 10)
    maps = [f.shape[2] for f in feats_net(mx.nd.zeros((1, 3, 32, 32)))]
    assert maps == [32 * 8 // stride, 32 * 4 // stride, 32 * 2 // stride, 32 // stride]
    with pytest.raises(ValueError, match='at least %d' % stride):
        net(mx.nd.zeros((1, 3, stride // 2, stride // 2)))


def test_resnest200_and_269_train_at_the_papers_crops_and_evaluate_at_larger_ones():
    """The paper trains ResNeSt-200/269 at 256/320 px and evaluates them at 320/416 px; the
    trainer's default crop is the model's input_size."""
    from gluon_resnest.classification.task import TrainConfig
    for name, train, evaluate in (('resnest50', 224, 224), ('resnest101', 256, 256),
                                  ('resnest200', 256, 320), ('resnest269', 320, 416)):
        info = gr.get_model_info(name)
        assert (info.input_size, info.eval_crop) == (train, evaluate), name
    assert TrainConfig().input_size is None  # None: the model's input_size


def _stage_shapes(net, size=64):
    """The output shapes of a network traced on symbols (type and shape inference only)."""
    out = net(mx.sym.var('data'))
    out = mx.sym.Group(list(out)) if isinstance(out, (list, tuple)) else out
    return out.infer_shape(data=(1, 3, size, size))[1]


@pytest.mark.parametrize('name', gr.list_models())
def test_every_zoo_model_is_a_trunk_with_its_stage_channels_and_strides(name):
    """features_only gives C2-C5 at strides 4, 8, 16, 32 (half those for the 28 px models,
    whose stem downsamples less) with ``stage_channels``; output stride 16 and 8 dilate the
    last stages instead: the same parameters, larger maps."""
    size = 64
    full = gr.get_model(name, features_only=True)
    scale = 32 // full.output_stride
    for output_stride in (32, 16, 8):
        net = gr.get_model(name, features_only=True, output_stride=output_stride)
        assert [p.shape for p in net.collect_params().values()] == \
            [p.shape for p in full.collect_params().values()]
        shapes = _stage_shapes(net, size)
        assert [s[1] for s in shapes] == list(net.stage_channels), name
        strides = [max(1, min(s, output_stride) // scale) for s in (4, 8, 16, 32)]
        assert [s[2:] for s in shapes] == [(size // s, size // s) for s in strides], name


@pytest.mark.parametrize('name', gr.list_models())
def test_deeplabv3_builds_on_every_zoo_trunk(name):
    from gluon_resnest.segmentation import get_segmentation_model
    net = get_segmentation_model('deeplabv3', backbone=name, classes=5, output_stride=16,
                                 rates=(1, 2, 3), head_channels=16)
    main, aux = _stage_shapes(net, 64)
    assert main == aux == (1, 5, 64, 64)


def test_one_registry_lists_every_tasks_published_models():
    assert 'resnest50' in gr.list_models() == gr.list_models(task='classification')
    segmentation = gr.list_models(task='segmentation')
    assert segmentation == ['deeplab_resnest101_ade', 'deeplab_resnest200_ade',
                            'deeplab_resnest269_ade', 'deeplab_resnest50_ade']
    info = gr.get_model_info('deeplab_resnest50_ade', task='segmentation')
    assert info.sha1.startswith('a8312db6') and info.extra['miou'] == 45.12  # the paper's
    with pytest.raises(ValueError, match="unknown task 'instance'; tasks: classification, "
                                         'segmentation, detection'):
        gr.list_models(task='instance')
    with pytest.raises(ValueError, match="unknown model 'deeplab_resnest5_ade' .*did you mean "
                                         "deeplab_resnest50_ade"):
        gr.get_model_info('deeplab_resnest5_ade', task='segmentation')
