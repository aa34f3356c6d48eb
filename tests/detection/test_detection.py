"""Faster R-CNN FPN on the zoo's trunks: GluonCV's published files load strictly by name and
detect what GluonCV's own model detects; files that do not fit are refused naming what."""
import json
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

from gluon_resnest.detection import get_detection_model
from gluon_resnest.detection.model import TARGET_GENERATOR_KEYS, gluoncv_file_names
from gluon_resnest.zoo.store import PretrainedWeightsError
from helpers import TESTS
from parity_worker import random_detector


@pytest.mark.slow
@pytest.mark.parametrize('backbone', ['resnest50', 'resnest101'])
def test_gluoncv_faster_rcnn_files_load_strictly_and_detect_the_same(backbone, tmp_path):
    """GluonCV's faster_rcnn_fpn_syncbn_<backbone>_coco with random weights and BN statistics,
    saved as GluonCV saves it, loads into ours with every key used and every parameter filled,
    and both give the same top-100 detections (ids, scores, boxes) at three image sizes."""
    proc = subprocess.run([sys.executable, os.path.join(TESTS, 'detection', 'parity_worker.py'),
                           backbone, str(tmp_path / 'theirs.params')],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    expected_keys = {'resnest50': 485, 'resnest101': 876}[backbone]
    assert result['file_keys'] == expected_keys + len(TARGET_GENERATOR_KEYS)
    assert result['model_params'] == expected_keys
    for size in result['sizes']:
        assert size['matched'] >= 0.97, size  # of GluonCV's top 100, found in ours
        assert abs(size['detections'][0] - size['detections'][1]) <= 0.01 * size['detections'][0]
        assert size['top_score'] > 0.05 and size['median_box_width'] > 4, size  # pixels


def _gluoncv_format_file(net, backbone, path, extra=None, drop=()):
    """``net``'s weights saved under the names GluonCV's files give them (and the two keys
    GluonCV's target generator adds)."""
    names = gluoncv_file_names(net, backbone)
    arrays = {names[key]: p.data() for key, p in net._collect_params_with_prefix().items()
              if key not in drop}
    arrays.update({key: mx.nd.zeros(4) for key in TARGET_GENERATOR_KEYS})
    arrays.update(extra or {})
    mx.nd.save(path, arrays)
    return path


def _small(name, seed):
    """A small random detector (resnest14, 3 classes) and the image it was shaped on."""
    net = get_detection_model(name, backbone='resnest14', classes=3, rpn_test_post_nms=50)
    net.initialize()
    x = mx.nd.array(np.random.RandomState(0).uniform(-2, 2, (1, 3, 96, 128)))
    net(x)
    random_detector(net, seed=seed)
    return net, x


@pytest.fixture(scope='module')
def small_detector():
    return _small('faster_rcnn_fpn', 1)


def test_a_gluoncv_format_file_loads_strictly_and_the_detector_is_the_same(small_detector,
                                                                          tmp_path):
    net, x = small_detector
    path = _gluoncv_format_file(net, 'resnest14', str(tmp_path / 'f.params'))
    other = get_detection_model('faster_rcnn_fpn', backbone='resnest14', classes=3,
                                rpn_test_post_nms=50, pretrained=path)
    # every parameter equal, hence the same function: its pyramid and proposals are
    # (detections are compared against GluonCV's own model in the slow test above)
    mine, loaded = net._collect_params_with_prefix(), other._collect_params_with_prefix()
    assert mine.keys() == loaded.keys()
    for key in mine:
        np.testing.assert_array_equal(mine[key].data().asnumpy(), loaded[key].data().asnumpy())
    for a, b in zip(net.features(x), other.features(x)):
        np.testing.assert_array_equal(a.asnumpy(), b.asnumpy())
    zeros = mx.nd.zeros_like(x)
    np.testing.assert_array_equal(net.rpn(zeros, *net.features(x))[1].asnumpy(),
                                  other.rpn(zeros, *other.features(x))[1].asnumpy())
    names = set(mx.nd.load(path))
    assert 'features.P5_lat_bn_moving_var' in names and 'features.P6_pre_bn_beta' in names
    assert 'features.P3_conv1_bn_gamma' in names and 'features.P2_conv_lat_weight' in names
    assert any(n.startswith('features.resnest_') for n in names)


def test_files_that_do_not_fit_are_refused_naming_the_parameters(small_detector, tmp_path):
    net, _ = small_detector
    missing = _gluoncv_format_file(net, 'resnest14', str(tmp_path / 'm.params'),
                                   drop=('features.fpn.output3.weight',))
    with pytest.raises(PretrainedWeightsError, match=r"missing \['features.fpn.output3.weight'\]"):
        get_detection_model('faster_rcnn_fpn', backbone='resnest14', classes=3,
                            pretrained=missing)
    extra = _gluoncv_format_file(net, 'resnest14', str(tmp_path / 'e.params'),
                                 extra={'features.P7_conv1_weight': mx.nd.zeros(1)})
    with pytest.raises(PretrainedWeightsError,
                       match=r"unexpected \['features.P7_conv1_weight'\]"):
        get_detection_model('faster_rcnn_fpn', backbone='resnest14', classes=3,
                            pretrained=extra)
    with pytest.raises(PretrainedWeightsError, match='does not fit'):  # another trunk's file
        get_detection_model('faster_rcnn_fpn', backbone='resnest26', classes=3,
                            pretrained=str(tmp_path / 'e.params'))


def test_weights_for_another_class_count_load_all_but_the_predictors(small_detector, tmp_path):
    net, _ = small_detector
    path = _gluoncv_format_file(net, 'resnest14', str(tmp_path / 'f.params'))
    other = get_detection_model('faster_rcnn_fpn', backbone='resnest14', classes=7,
                                pretrained=path)
    own = net._collect_params_with_prefix()
    for key, p in other._collect_params_with_prefix().items():
        if key.startswith(('class_predictor', 'box_predictor')):
            assert p.shape[0] in (8, 28) and p.shape != own[key].shape, key  # 7 + background
        else:
            np.testing.assert_array_equal(p.data().asnumpy(), own[key].data().asnumpy(), key)


def test_published_detection_weights_are_listed_with_their_hashes():
    import gluon_resnest as gr
    names = gr.list_models(task='detection')
    assert names == ['faster_rcnn_fpn_syncbn_resnest101_coco',
                     'faster_rcnn_fpn_syncbn_resnest269_coco',
                     'faster_rcnn_fpn_syncbn_resnest50_coco']
    info = gr.get_model_info('faster_rcnn_fpn_syncbn_resnest50_coco', task='detection')
    assert info.sha1 == '6df46961827647d418b11ffaf616a6a60d9dd16e'
    assert info.extra['box_ap'] == 42.33 and info.weights_from == 'gluoncv'
    assert gr.get_model_info('faster_rcnn_fpn_syncbn_resnest101_coco', task='detection').sha1 \
        == 'baebfa1b7d7f56dd33a7687efea4b014736bd791'


@pytest.mark.parametrize('kwargs, error, message', [
    (dict(name='mask_rcnn'), ValueError, "unknown detection model 'mask_rcnn'"),
    (dict(backbone='resnest5O'), ValueError, 'unknown model'),
    (dict(classes=0), ValueError, 'classes must be a positive integer'),
    (dict(anchor_sizes=(32,)), ValueError, 'unknown arguments anchor_sizes; allowed: alloc_size'),
    (dict(backbone='resnetd50', pretrained=True), PretrainedWeightsError,
     'no published faster_rcnn_fpn weights for backbone resnetd50; published: '
     'faster_rcnn_fpn_syncbn_resnest101_coco'),
])
def test_bad_arguments_are_named(kwargs, error, message):
    with pytest.raises(error, match=message):
        get_detection_model(**kwargs)


def test_mask_rcnn_gives_each_detection_a_mask_and_has_no_published_weights():
    net, x = _small('mask_rcnn_fpn', 2)
    ids, scores, boxes, masks = (v.asnumpy() for v in net(x))
    assert ids.shape[:2] == scores.shape[:2] == boxes.shape[:2] == masks.shape[:2]
    # RoIs pooled at 7 px, masks at 2 x 7 (GluonCV's FPN Mask R-CNN with synchronized BN)
    assert masks.shape[2:] == (14, 14) and 0 <= masks.min() and masks.max() <= 1
    assert (ids[0, :, 0] >= 0).sum() > 0
    mask_head = [k for k in net._collect_params_with_prefix() if k.startswith('mask.')]
    assert len([k for k in mask_head if k.endswith('weight')]) >= 4 + 1  # 4 convs, deconv
    with pytest.raises(PretrainedWeightsError, match='no published MXNet weights for '
                                                     'mask_rcnn_fpn'):
        get_detection_model('mask_rcnn_fpn', backbone='resnest50', pretrained=True)


def test_pyramid_roi_features_pool_each_roi_on_its_own_level_only(small_detector):
    """Against RoIAlign of each RoI alone on the level FPN's rule gives it (level 4 + log2(
    sqrt(area) / 224), clipped to P2..P5): GluonCV's version summed RoIAlign outputs that MXNet's
    CPU kernel leaves unwritten for other levels' RoIs (uninitialized memory)."""
    net, x = small_detector
    features = net.features(x)
    sides = [20, 100, 150, 300, 500, 900]  # levels 2, 2, 3, 4, 5, 5
    rois = mx.nd.array([[0, 5, 3, 5 + s, 3 + s * 0.8] for s in sides])
    for _ in range(3):  # the same every time
        pooled = net._pyramid_roi_feats(mx.nd, features, rois, (7, 7), (4, 8, 16, 32, 64))
        for i, roi in enumerate(rois.asnumpy()):
            w, h = roi[3] - roi[1] + 1, roi[4] - roi[2] + 1
            level = int(np.clip(np.floor(4 + np.log2(np.sqrt(w * h) / 224.0 + 1e-6)), 2, 5))
            alone = mx.nd.contrib.ROIAlign(features[level - 2], mx.nd.array(roi[None]), (7, 7),
                                           1.0 / 2 ** level, sample_ratio=2)
            np.testing.assert_array_equal(pooled[i].asnumpy(), alone[0].asnumpy())


def test_detections_are_the_same_call_after_call_and_hybridized(small_detector):
    net, x = small_detector
    first = [v.asnumpy() for v in net(x)]
    for _ in range(2):
        for a, b in zip(first, net(x)):
            np.testing.assert_array_equal(a, b.asnumpy())
    net.hybridize(static_alloc=True, static_shape=True)
    try:
        for a, b in zip(first, net(x)):
            np.testing.assert_array_equal(a, b.asnumpy())
    finally:
        net.hybridize(active=False)


def test_mask_upsampling_is_a_transposed_convolution():
    from mxnet.gluon import nn
    from gluon_resnest.detection.heads import Upsample2x
    reference = nn.Conv2DTranspose(5, kernel_size=2, strides=2, in_channels=3)
    reference.initialize(mx.init.Normal(1.0))
    ours = Upsample2x(5, 3)
    ours.initialize()
    ours.weight.set_data(reference.weight.data())
    reference.bias.set_data(mx.nd.random.normal(shape=(5,)))
    ours.bias.set_data(reference.bias.data())
    x = mx.nd.random.normal(shape=(2, 3, 4, 6))
    np.testing.assert_allclose(ours(x).asnumpy(), reference(x).asnumpy(), rtol=1e-5, atol=1e-5)
    assert sorted(ours._collect_params_with_prefix()) == sorted(
        reference._collect_params_with_prefix())


@pytest.mark.parametrize('backbone, strides', [('resnest14', (4, 8, 16, 32, 64)),
                                               ('resnest14_small', (2, 4, 8, 16, 32)),
                                               ('resnest14_small_s1', (1, 2, 4, 8, 16))])
def test_anchors_and_roi_pooling_follow_the_trunks_strides(backbone, strides):
    """A small-image trunk (no stem pool) gives P2 at stride 2: anchors placed at stride 4
    would sit at twice the distance of the cells that score them."""
    net = get_detection_model('faster_rcnn_fpn', backbone=backbone, classes=2, max_size=256)
    net.initialize()
    x = mx.nd.zeros((1, 3, 96, 128))
    features = net.features(x)
    assert net._strides == strides
    for feature, stride in zip(features, strides):
        assert feature.shape[2:] == (-(-96 // stride), -(-128 // stride))
    # each level's anchors: centred on its cells, 3 ratios per cell, the square one 8 x the
    # stride a side
    for generator, feature, stride in zip(net.rpn.anchor_generator, features, strides):
        anchors = generator(feature).reshape((feature.shape[2], feature.shape[3], 3, 4))
        centres = (anchors[:, :, 0, :2] + anchors[:, :, 0, 2:]).asnumpy() / 2.0
        square = anchors[0, 0, 1].asnumpy()
        np.testing.assert_allclose(square[2:] - square[:2] + 1, (8 * stride, 8 * stride))
        np.testing.assert_allclose(centres[1, 1] - centres[0, 0], (stride, stride))
        np.testing.assert_allclose(centres[0, 0], (stride / 2.0 - 0.5,) * 2, atol=0.5)


@pytest.mark.parametrize('name', ['faster_rcnn_fpn', 'mask_rcnn_fpn', 'cascade_rcnn_fpn',
                                  'cascade_mask_rcnn_fpn'])
def test_an_exported_detector_reloads_with_the_same_detections_at_any_size(name, tmp_path):
    """Symbol export traced at 96 x 128; the reloaded graph detects exactly what the network
    does at that size and at 128 x 96 (masks too)."""
    from gluon_resnest import export_model
    net, x = _small(name, 3)
    y = mx.nd.array(np.random.RandomState(1).uniform(-2, 2, (1, 3, 128, 96)))
    expected = [[v.asnumpy() for v in net(image)] for image in (x, y)]
    symbol, params = export_model(net, str(tmp_path / name), (1, 3, 96, 128))
    reloaded = mx.gluon.SymbolBlock.imports(symbol, ['data'], params)
    for image, outputs in zip((x, y), expected):
        assert (outputs[0] >= 0).sum() >= 50  # detections to compare
        for want, got in zip(outputs, reloaded(image)):
            np.testing.assert_array_equal(got.asnumpy(), want)


def test_the_predictors_load_together_or_the_file_is_refused(small_detector, tmp_path):
    """Another class count leaves every predictor out; a file missing one, or fitting some and
    not others, is an error naming them (a missing bias was left at its random values)."""
    net, _ = small_detector
    missing = _gluoncv_format_file(net, 'resnest14', str(tmp_path / 'b.params'),
                                   drop=('box_predictor.bias',))
    with pytest.raises(PretrainedWeightsError, match=r"missing \['box_predictor.bias'\]"):
        get_detection_model('faster_rcnn_fpn', backbone='resnest14', classes=3,
                            pretrained=missing)
    with pytest.raises(PretrainedWeightsError, match=r"missing \['box_predictor.bias'\]"):
        get_detection_model('faster_rcnn_fpn', backbone='resnest14', classes=7,
                            pretrained=missing)
    names = gluoncv_file_names(net, 'resnest14')
    mixed = _gluoncv_format_file(net, 'resnest14', str(tmp_path / 'm.params'), extra={
        names['box_predictor.weight']: mx.nd.zeros((28, 1024)),
        names['box_predictor.bias']: mx.nd.zeros(28)})
    with pytest.raises(PretrainedWeightsError, match='its class_predictor.weight, '
                                                     'class_predictor.bias fit, its '
                                                     'box_predictor.weight'):
        get_detection_model('faster_rcnn_fpn', backbone='resnest14', classes=3,
                            pretrained=mixed)
