"""Segmentation: GluonCV weight parity, any input size, metrics, multi-scale inference, losses,
data readers and transforms, scenes, export."""
import json
import os
import random
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest
from PIL import Image

import gluon_resnest as gr
from gluon_resnest.segmentation import get_segmentation_model
from gluon_resnest.segmentation.data import (SegmentationDataError, SegmentationTrainTransform,
                                             open_dataset)
from gluon_resnest.segmentation.metrics import confusion_matrix, segmentation_scores
from gluon_resnest.segmentation.predict import predict_probabilities
from gluon_resnest.segmentation.task import pixel_loss
from helpers import ROOT, randomize


def _gluoncv_deeplab(backbone, height, width):
    gcv = pytest.importorskip('gluoncv.model_zoo')
    ref = gcv.get_model('deeplab_%s_ade' % backbone, pretrained=False, pretrained_base=False,
                        height=height, width=width, crop_size=height)
    ref.initialize()  # the trunk; GluonCV initializes the heads itself
    ref(mx.nd.zeros((1, 3, height, width)))
    randomize(ref, seed=3)
    return ref


def _dropblocks(block):
    found = [block] if isinstance(block, gr.DropBlock) else []
    for child in block._children.values():
        found += _dropblocks(child)
    return found


def _bilinear_align_corners(x, height, width):
    """NumPy statement of bilinear resizing with corners aligned (MXNet's default), NCHW."""
    n, c, h, w = x.shape

    def weights(out, size):
        pos = np.zeros(out) if out == 1 else np.arange(out) * (size - 1) / (out - 1.0)
        lo = np.minimum(np.floor(pos).astype(int), size - 1)
        hi = np.minimum(lo + 1, size - 1)
        return lo, hi, pos - lo

    y0, y1, wy = weights(height, h)
    x0, x1, wx = weights(width, w)
    top = x[:, :, y0][:, :, :, x0] * (1 - wx) + x[:, :, y0][:, :, :, x1] * wx
    bottom = x[:, :, y1][:, :, :, x0] * (1 - wx) + x[:, :, y1][:, :, :, x1] * wx
    return top * (1 - wy[:, None]) + bottom * wy[:, None]


def _write_voc(root, ids, size=(12, 10), classes=4, label_size=None, bad_label=None):
    for sub in ('JPEGImages', 'SegmentationClass', 'ImageSets/Segmentation'):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    rng = np.random.RandomState(0)
    for i in ids:
        w, h = size
        Image.fromarray(rng.randint(0, 255, (h, w, 3)).astype(np.uint8)).save(
            os.path.join(root, 'JPEGImages', i + '.jpg'))
        lw, lh = label_size or size
        label = rng.randint(0, classes, (lh, lw)).astype(np.uint8)
        label[0, 0] = 255
        if bad_label is not None:
            label[1, 1] = bad_label
        png = Image.fromarray(label, mode='P')
        png.putpalette(list(range(256)) * 3)  # VOC's label files are palette PNGs
        png.save(os.path.join(root, 'SegmentationClass', i + '.png'))
    with open(os.path.join(root, 'ImageSets/Segmentation/train.txt'), 'w') as f:
        f.write('\n'.join(ids) + '\n')


@pytest.fixture(scope='module')
def tiny_scenes(tmp_path_factory):
    """A VOC-layout dataset of 16 training and 6 validation scenes made of synthetic garments."""
    from experiments.scenes import compose_scene
    root = str(tmp_path_factory.mktemp('scenes'))
    rng = np.random.RandomState(0)
    garments = np.zeros((4, 28, 28), np.uint8)
    for k in range(4):
        garments[k, 4 + 3 * k:24, 6:22 - 2 * k] = 120 + 30 * k
    for sub in ('JPEGImages', 'SegmentationClass', 'ImageSets/Segmentation'):
        os.makedirs(os.path.join(root, sub))
    for split, count in (('train', 16), ('val', 6)):
        ids = []
        for i in range(count):
            image, label = compose_scene(rng, garments, np.arange(4), size=40)
            name = '%s_%d' % (split, i)
            Image.fromarray(image).save(os.path.join(root, 'JPEGImages', name + '.jpg'))
            png = Image.fromarray(label, mode='P')
            png.putpalette(list(range(256)) * 3)
            png.save(os.path.join(root, 'SegmentationClass', name + '.png'))
            ids.append(name)
        with open(os.path.join(root, 'ImageSets/Segmentation', split + '.txt'), 'w') as f:
            f.write('\n'.join(ids) + '\n')
    return root


def _seg_flags(root, save_dir, epochs):
    return ['--data-root', root, '--classes', '5', '--backbone', 'resnest14_small',
            '--output-stride', '16', '--aspp-rates', '1,2,3', '--head-channels', '16',
            '--base-size', '40', '--crop-size', '32', '--epochs', str(epochs), '--batch-size',
            '4', '--workers', '1', '--save-dir', save_dir, '--no-progress', '--resume']


def _write_mixed_voc(root, sizes, classes=5):
    """A VOC-layout dataset whose images differ in size, as real datasets' do: split 'train'
    and split 'val' both list every image."""
    ids = ['img%d' % i for i in range(len(sizes))]
    for i, size in zip(ids, sizes):
        _write_voc(root, [i], size=size, classes=classes)
    for split in ('train', 'val'):
        with open(os.path.join(root, 'ImageSets/Segmentation', split + '.txt'), 'w') as f:
            f.write('\n'.join(ids) + '\n')
    return ids


MIXED_SIZES = [(40, 32), (48, 40), (40, 32), (36, 44), (48, 40)]  # (width, height)


@pytest.mark.slow
@pytest.mark.parametrize('backbone', ['resnest50', 'resnest101'])
def test_gluoncv_deeplab_weights_load_strictly_and_give_the_same_outputs(backbone, tmp_path):
    ref = _gluoncv_deeplab(backbone, 96, 96)
    path = str(tmp_path / 'deeplab.params')
    ref.save_parameters(path)
    ours = get_segmentation_model('deeplabv3', backbone=backbone, classes=150)
    ours.load_parameters(path)  # strict: every name and shape must match
    ours.hybridize(static_alloc=True)
    ref.cast('float64')
    ours.cast('float64')
    x = mx.nd.random.uniform(-2, 2, shape=(1, 3, 96, 96), dtype='float64')
    expected = [o.asnumpy() for o in ref(x)]
    got = [o.asnumpy() for o in ours(x)]
    assert len(got) == 2 and got[0].shape == (1, 150, 96, 96)
    for e, g in zip(expected, got):  # main and auxiliary logits
        assert 0.1 < np.abs(e).max() < 1e3
        assert np.abs(g - e).max() <= 1e-6 * np.abs(e).max()
    # the same hybridized network at a second, non-square size; GluonCV needs a model built
    # for that size, which given the same weights must agree
    ref2 = _gluoncv_deeplab(backbone, 72, 88)
    ref2.load_parameters(path)
    ref2.cast('float64')
    x2 = mx.nd.random.uniform(-2, 2, shape=(2, 3, 72, 88), dtype='float64')
    for e, g in zip(ref2(x2), ours(x2)):
        assert g.shape == (2, 150, 72, 88)
        assert np.abs(g.asnumpy() - e.asnumpy()).max() <= 1e-6 * np.abs(e.asnumpy()).max()


@pytest.mark.parametrize('backbone', ['resnest14', 'resnetd50', 'resnest50_fast_1s2x40d',
                                      'resnest14_small'])
@pytest.mark.parametrize('output_stride', [8, 16])
def test_any_backbone_and_size_with_one_hybridized_network(backbone, output_stride):
    net = get_segmentation_model(backbone=backbone, classes=5, output_stride=output_stride,
                                 head_channels=32)
    net.initialize()
    net.hybridize(static_alloc=True)
    c4 = net.trunk.stage_channels[2]
    assert net.auxlayer.block[0].weight.shape[1] == c4
    for shape in ((1, 3, 64, 64), (2, 3, 48, 80)):
        main, aux = net(mx.nd.random.uniform(shape=shape))
        assert main.shape == aux.shape == (shape[0], 5) + shape[2:]
    # DropBlock is off by default (the paper uses it on ImageNet only)
    blocks = _dropblocks(net)
    assert all(b.drop_prob == 0 for b in blocks)


def test_published_weights_offline_say_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv('MXNET_GLUON_REPO', 'http://127.0.0.1:9/')
    with pytest.raises(gr.PretrainedWeightsError, match='a8312db6e30a464151580f2bda83479786455724'):
        get_segmentation_model(backbone='resnest50', pretrained=True, root=str(tmp_path))
    with pytest.raises(ValueError, match='no published deeplabv3 weights for backbone resnest14'):
        get_segmentation_model(backbone='resnest14', pretrained=True)


@pytest.mark.parametrize('kwargs, message', [
    (dict(backbone='resnest5O'), "unknown backbone 'resnest5O' \\(did you mean resnest50"),
    (dict(model='pspnet'), "unknown segmentation model 'pspnet'; available: deeplabv3"),
    (dict(output_stride=32), 'output_stride must be 8 or 16'),
    (dict(classes=0), 'classes must be a positive integer')])
def test_bad_model_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        get_segmentation_model(**kwargs)


def test_a_crop_smaller_than_the_output_stride_is_refused():
    net = get_segmentation_model(backbone='resnest14', classes=3, head_channels=16)
    net.initialize()
    with pytest.raises(ValueError, match='too small.*at least 8'):
        net(mx.nd.zeros((1, 3, 6, 6)))


def test_confusion_matrix_and_scores_by_hand():
    label = np.array([[0, 0, 1, 1], [2, 2, 255, 1]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 2, 1]])
    conf = confusion_matrix(pred, label, classes=4)
    # rows: true class; the ignored pixel is not counted
    assert conf.tolist() == [[1, 1, 0, 0], [0, 3, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
    scores = segmentation_scores(conf)
    assert scores['pixel_acc'] == pytest.approx(100 * 5 / 7)
    # IoU: class 0: 1/(2+2-1)=1/3, class 1: 3/(3+4-3)=3/4, class 2: 1/(2+1-1)=1/2; class 3 is
    # in neither labels nor predictions, so it has no IoU and is left out of the mean
    assert scores['iou'][3] is None
    assert scores['miou'] == pytest.approx(100 * (1 / 3 + 3 / 4 + 1 / 2) / 3)
    with pytest.raises(ValueError, match='label 7 is outside 0..3 and is not the ignore'):
        confusion_matrix(pred, np.full_like(label, 7), classes=4)


def test_scores_agree_with_gluoncv_when_every_class_is_present():
    metrics = pytest.importorskip('gluoncv.utils.metrics.segmentation')
    rng = np.random.RandomState(0)
    logits = rng.normal(size=(2, 5, 16, 16))
    label = rng.randint(0, 5, (2, 16, 16))
    label[0, :2] = -1  # GluonCV's ignore label
    reference = metrics.SegmentationMetric(5)
    reference.update(mx.nd.array(label), mx.nd.array(logits))
    pix_acc, miou = reference.get()
    conf = confusion_matrix(logits.argmax(1), label, 5, ignore_label=-1)
    scores = segmentation_scores(conf)
    assert scores['pixel_acc'] == pytest.approx(100 * pix_acc, rel=1e-9)
    assert scores['miou'] == pytest.approx(100 * miou, rel=1e-9)


def test_multi_scale_flip_probabilities_equal_a_hand_computation():
    # a model that is not mirror-symmetric: a 1x3 horizontal convolution, so a missing flip
    # back of the mirrored prediction would show
    net = mx.gluon.nn.Conv2D(3, (1, 3), padding=(0, 1), in_channels=2)
    net.initialize()
    rng = np.random.RandomState(1)
    weight = rng.normal(size=(3, 2, 1, 3))
    bias = rng.normal(size=3)
    net.weight.set_data(mx.nd.array(weight))
    net.bias.set_data(mx.nd.array(bias))
    image = rng.uniform(-1, 1, (1, 2, 5, 6))

    def conv(x):  # NumPy 1x3 convolution, zero padding
        padded = np.pad(x, ((0, 0), (0, 0), (0, 0), (1, 1)))
        out = np.zeros((x.shape[0], 3) + x.shape[2:])
        for k in range(3):
            out += np.einsum('oc,nchw->nohw', weight[:, :, 0, k],
                             padded[:, :, :, k:k + x.shape[3]])
        return out + bias[None, :, None, None]

    def softmax(z):
        e = np.exp(z - z.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    scales = (0.5, 1.0, 1.5)
    expected = np.zeros((1, 3, 5, 6))
    for s in scales:
        h, w = int(round(5 * s)), int(round(6 * s))
        scaled = _bilinear_align_corners(image, h, w) if (h, w) != (5, 6) else image
        for mirrored in (False, True):
            logits = conv(scaled[..., ::-1] if mirrored else scaled)
            logits = logits[..., ::-1] if mirrored else logits
            if (h, w) != (5, 6):
                logits = _bilinear_align_corners(logits, 5, 6)
            expected += softmax(logits)
    expected /= 2 * len(scales)
    got = predict_probabilities(net, mx.nd.array(image), scales, flip=True).asnumpy()
    assert np.abs(got - expected).max() < 1e-5
    # and flipping matters for this model: without it the result differs
    no_flip = predict_probabilities(net, mx.nd.array(image), scales).asnumpy()
    assert np.abs(no_flip - expected).max() > 1e-3


def test_pixel_loss_ignores_ignored_pixels():
    rng = np.random.RandomState(2)
    logits = rng.normal(size=(2, 4, 3, 3))
    label = rng.randint(0, 4, (2, 3, 3)).astype(float)
    label[0, 0, :] = 255
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    keep = label != 255
    picked = np.take_along_axis(logp, np.where(keep, label, 0).astype(int)[:, None], 1)[:, 0]
    expected = -(picked * keep).sum() / keep.sum()
    got = pixel_loss(mx.nd, mx.nd.array(logits), mx.nd.array(label)).asscalar()
    assert got == pytest.approx(expected, rel=1e-5)


def test_voc_layout_reads_pairs_and_names_bad_files(tmp_path):
    _write_voc(str(tmp_path / 'ok'), ['a', 'b'])
    data = open_dataset('voc', str(tmp_path / 'ok'), 'train', classes=4)
    image, label = data[1]
    assert image.shape == (10, 12, 3) and label.shape == (10, 12) and label[0, 0] == 255
    with pytest.raises(SegmentationDataError, match="split 'val'.*splits here: train"):
        open_dataset('voc', str(tmp_path / 'ok'), 'val', classes=4)
    _write_voc(str(tmp_path / 'size'), ['a'], label_size=(11, 10))
    with pytest.raises(SegmentationDataError, match='a.png: the label map is 11x10 but the '
                                                    'image is 12x10'):
        open_dataset('voc', str(tmp_path / 'size'), 'train', classes=4)[0]
    _write_voc(str(tmp_path / 'label'), ['a'], bad_label=9)
    with pytest.raises(SegmentationDataError, match='label 9 is not a class of this dataset '
                                                    '\\(0..3\\) nor the ignore label 255'):
        open_dataset('voc', str(tmp_path / 'label'), 'train', classes=4)[0]
    with pytest.raises(SegmentationDataError, match='folder .*JPEGImages not found'):
        open_dataset('voc', str(tmp_path / 'missing'), 'train')
    with pytest.raises(SegmentationDataError, match="unknown dataset 'coco'"):
        open_dataset('coco', str(tmp_path), 'train')


def test_ade20k_and_cityscapes_layouts_through_gluoncv(tmp_path):
    pytest.importorskip('gluoncv')
    rng = np.random.RandomState(0)
    ade = tmp_path / 'ade' / 'ADEChallengeData2016'
    for sub in ('images/training', 'annotations/training'):
        os.makedirs(str(ade / sub))
    Image.fromarray(rng.randint(0, 255, (8, 9, 3)).astype(np.uint8)).save(
        str(ade / 'images/training/ADE_train_00000001.jpg'))
    ade_label = np.array([[0, 1, 150] * 3] * 8, np.uint8)  # 0 = "other": ignored
    Image.fromarray(ade_label).save(str(ade / 'annotations/training/ADE_train_00000001.png'))
    image, label = open_dataset('ade20k', str(tmp_path / 'ade'), 'train')[0]
    assert image.shape == (8, 9, 3)
    assert label[0, :3].tolist() == [255, 0, 149]
    assert open_dataset('ade20k', str(tmp_path / 'ade'), 'training')[0][0].shape == (8, 9, 3)
    # any other name read validation/ (GluonCV's rule): a typo trained on validation images
    for typo in ('trian', 'test'):
        with pytest.raises(SegmentationDataError, match="ade20k has no split '%s'; its splits: "
                                                        'train, training, val, validation' % typo):
            open_dataset('ade20k', str(tmp_path / 'ade'), typo)

    city = tmp_path / 'city'
    for sub in ('leftImg8bit/val/bonn', 'gtFine/val/bonn'):
        os.makedirs(str(city / sub))
    Image.fromarray(rng.randint(0, 255, (8, 9, 3)).astype(np.uint8)).save(
        str(city / 'leftImg8bit/val/bonn/bonn_000000_000000_leftImg8bit.png'))
    ids = np.array([[7, 26, 0] * 3] * 8, np.uint8)  # road -> 0, car -> 13, unlabeled -> ignore
    Image.fromarray(ids).save(str(city / 'gtFine/val/bonn/bonn_000000_000000_gtFine_labelIds.png'))
    image, label = open_dataset('cityscapes', str(city), 'val')[0]
    assert label[0, :3].tolist() == [0, 13, 255]
    with pytest.raises(SegmentationDataError, match="cityscapes has no split 'test'; its "
                                                    'splits: train, val, trainval'):
        open_dataset('cityscapes', str(city), 'test')
    with pytest.raises(SegmentationDataError, match='cityscapes: folder .*leftImg8bit not found'):
        open_dataset('cityscapes', str(tmp_path / 'nothing'), 'val')


def test_train_transform_pads_with_the_ignore_label_and_replays_from_its_seed():
    image = np.full((20, 30, 3), 200, np.uint8)
    label = np.ones((20, 30), np.float32)
    transform = SegmentationTrainTransform(crop_size=48, base_size=24, mean=(0.5,) * 3,
                                           std=(0.25,) * 3)
    random.seed(4)
    out_image, out_label = transform(image, label)
    assert out_image.shape == (3, 48, 48) and out_label.shape == (48, 48)
    # the resized image (long side <= 48) is smaller than the crop: padding is ignored, not 0
    assert (out_label == 255).any() and set(np.unique(out_label)) <= {1.0, 255.0}
    padded = out_label == 255
    assert np.allclose(out_image[:, padded], (0 - 0.5) / 0.25)
    assert np.allclose(out_image[:, ~padded], (200 / 255.0 - 0.5) / 0.25, atol=1e-6)
    random.seed(4)
    again_image, again_label = transform(image, label)
    assert np.array_equal(again_label, out_label) and np.array_equal(again_image, out_image)


def test_segmentation_export_reloads_at_any_size(tmp_path):
    from gluon_resnest.segmentation.deploy import export_segmentation
    net = get_segmentation_model(backbone='resnest14_small', classes=4, head_channels=16,
                                 rates=(1, 2, 3))
    net.initialize()
    randomize(net, seed=2)
    sym, params = export_segmentation(net, str(tmp_path / 'seg'), (1, 3, 48, 48))
    deployed = mx.gluon.SymbolBlock.imports(sym, ['data'], params)
    for shape in ((1, 3, 48, 48), (2, 3, 40, 56)):
        x = mx.nd.random.uniform(shape=shape)
        with mx.autograd.predict_mode():
            expected = net(x)[0].asnumpy()
        got = deployed(x).asnumpy()
        assert got.shape == (shape[0], 4) + shape[2:]
        assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()


def test_segmentation_onnx_matches_mxnet_at_its_size(tmp_path):
    ort = pytest.importorskip('onnxruntime')
    from gluon_resnest.segmentation.deploy import export_segmentation_onnx
    net = get_segmentation_model(backbone='resnest14_small', classes=4, head_channels=16,
                                 rates=(1, 2, 3))
    net.initialize()
    randomize(net, seed=4)
    path = export_segmentation_onnx(net, str(tmp_path / 'seg.onnx'), (1, 3, 48, 48))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])
    x = np.random.RandomState(0).uniform(-2, 2, (2, 3, 48, 48)).astype('f4')
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    with mx.autograd.predict_mode():
        expected = net(mx.nd.array(x))[0].asnumpy()
    assert got.shape == (2, 4, 48, 48)
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()
    # the network itself still runs at any size after the export
    assert net(mx.nd.zeros((1, 3, 40, 56)))[0].shape == (1, 4, 40, 56)


@pytest.mark.slow
def test_two_process_segmentation_training_resumes_and_evaluates_exactly(tiny_scenes, tmp_path):
    import json
    import subprocess
    import sys
    from helpers import require_horovodrun
    launcher = require_horovodrun()
    root_dir = ROOT
    script = os.path.join(root_dir, 'train', 'train_segmentation.py')
    save_dir = str(tmp_path / 'run')
    env = dict(os.environ, OMP_NUM_THREADS='1')
    hvd = [launcher, '--gloo', '-np', '2', '-H', 'localhost:2', sys.executable]
    for epochs, pipeline in ((1, 'workers'), (2, 'auto')):  # the second call resumes
        # BN statistics of the global batch across the two processes; the first epoch reads
        # through worker processes, the second from memory (auto: small scenes)
        proc = subprocess.run(hvd + [script] + _seg_flags(tiny_scenes, save_dir, epochs)
                              + ['--norm', 'sync', '--pipeline', pipeline],
                              env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert 'resumed from' in proc.stdout
    history = [json.loads(line) for line in open(os.path.join(save_dir, 'metrics.jsonl'))]
    assert [h['epoch'] for h in history] == [1, 2]
    assert all(np.isfinite(h['train_loss']) and 0 <= h['val_miou'] <= 100 for h in history)
    assert os.path.isfile(os.path.join(save_dir, 'curves.png'))
    # evaluation under horovodrun sums the ranks' confusion matrices: the same figures as one
    # process evaluating every image
    evaluate = os.path.join(root_dir, 'eval', 'evaluate_segmentation.py')
    args = ['--checkpoint', os.path.join(save_dir, 'best'), '--data-root', tiny_scenes,
            '--split', 'val']
    single = subprocess.run([sys.executable, evaluate] + args, env=env, capture_output=True,
                            text=True, timeout=300)
    multi = subprocess.run(hvd + [evaluate] + args, env=env, capture_output=True, text=True,
                           timeout=300)
    assert single.returncode == 0 and multi.returncode == 0, single.stderr + multi.stderr
    one = json.loads(single.stdout.strip().splitlines()[-1])
    two = [json.loads(line.split('<stdout>:', 1)[1]) for line in multi.stdout.splitlines()
           if '<stdout>:{' in line]
    assert len(two) == 1 and one['pixels'] == two[0]['pixels'] == 6 * 40 * 40
    assert one['miou'] == two[0]['miou'] and one['pixel_acc'] == two[0]['pixel_acc']
    assert one['miou'] == pytest.approx(max(h['val_miou'] for h in history), abs=0.01)


@pytest.mark.parametrize('flags, message', [
    (['--crop-size', '2'], '--crop-size 2 is too small for resnest14_small at output stride 16'),
    (['--backbone', 'resnest5O'], "unknown model 'resnest5O'"),
    (['--norm', 'group'], "--norm 'group': allowed bn, sync, frozen"),
    (['--aspp-rates', '1,2'], '--aspp-rates must be 3 positive integers'),
    (['--base-lr', 'nan'], '--base-lr must be a finite number in (0, inf), got nan'),
    (['--ignore-label', '3'], '--ignore-label 3 must be >= --classes'),
    (['--val-split', 'vla'], "split 'vla': "),
    (['--min-scale', '3'], '--max-scale 2 is below --min-scale 3')])
def test_training_flags_are_checked_before_anything_runs(tiny_scenes, tmp_path, flags, message):
    import subprocess
    import sys
    script = os.path.join(ROOT, 'train',
                          'train_segmentation.py')
    proc = subprocess.run([sys.executable, script] + _seg_flags(tiny_scenes, str(tmp_path / 'r'),
                                                                1) + flags,
                          capture_output=True, text=True, timeout=120, cwd=str(tmp_path))
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr[-2000:]
    assert 'Traceback' not in proc.stderr
    assert not os.path.exists(str(tmp_path / 'r'))  # nothing half-written


def test_published_weights_through_the_store_for_other_classes_and_without_aux(tmp_path,
                                                                              monkeypatch):
    """The store path of pretrained=True, with a file of our own standing in for GluonCV's:
    verified by sha1, loaded whole at 150 classes, all but the classifiers at 21, without the
    auxiliary head when aux=False."""
    import hashlib
    from gluon_resnest.segmentation import model as seg_model
    source = get_segmentation_model(backbone='resnest14', classes=150, head_channels=16)
    source.initialize()
    randomize(source, seed=6)
    plain = str(tmp_path / 'w.params')
    source.save_parameters(plain)
    sha1 = hashlib.sha1(open(plain, 'rb').read()).hexdigest()
    from gluon_resnest.zoo.published import _deeplab
    info = _deeplab('resnest14', sha1, None)
    os.replace(plain, str(tmp_path / ('%s-%s.params' % (info.name, sha1[:8]))))
    from gluon_resnest.zoo import registry
    monkeypatch.setitem(registry._TASK_REGISTRY['segmentation'], info.name, info)
    expected = {k: v.data().asnumpy() for k, v in source._collect_params_with_prefix().items()}
    for classes, aux in ((150, True), (21, True), (150, False)):
        net = get_segmentation_model(backbone='resnest14', classes=classes, aux=aux,
                                     head_channels=16, pretrained=True, root=str(tmp_path))
        got = {k: v.data().asnumpy() for k, v in net._collect_params_with_prefix().items()}
        assert ('auxlayer.block.0.weight' in got) == aux
        for key, value in got.items():
            if key in seg_model.CLASSIFIERS and classes != 150:
                assert value.shape[0] == classes
            else:
                np.testing.assert_array_equal(value, expected[key], err_msg=key)
        net(mx.nd.zeros((1, 3, 32, 32)))  # every parameter initialized


@pytest.mark.parametrize('pipeline', ['workers', 'memory'])
def test_training_and_evaluation_take_images_of_mixed_sizes(tmp_path, pipeline):
    """Validation and evaluation batch whole images of one size together: a batch of two
    images of different sizes used to fail after the first training epoch."""
    from gluon_resnest.segmentation.evaluate import evaluate_split
    from gluon_resnest.segmentation.task import SegTrainConfig, train_segmentation
    root = str(tmp_path / 'voc')
    _write_mixed_voc(root, MIXED_SIZES)
    cfg = SegTrainConfig(data_root=root, classes=5, backbone='resnest14_small',
                         output_stride=16, aspp_rates='1,2,3', head_channels=16, base_size=40,
                         crop_size=32, epochs=1, batch_size=2, workers=1, pipeline=pipeline,
                         save_dir=str(tmp_path / 'run'), progress=False)
    net, summary = train_segmentation(cfg, log=lambda *a: None)
    assert 0 <= summary['history'][0]['val_miou'] <= 100
    pixels = sum(w * h for w, h in MIXED_SIZES)
    scores = {batch: evaluate_split(net, 'voc', root, 'val', 5, 'resnest14_small',
                                    batch_size=batch, workers=0) for batch in (1, 2, 3)}
    assert all(s['pixels'] <= pixels for s in scores.values())
    assert scores[1]['pixels'] == scores[2]['pixels'] == scores[3]['pixels'] > 0
    assert scores[2]['miou'] == pytest.approx(scores[1]['miou'], abs=1e-6)
    assert scores[3]['miou'] == pytest.approx(scores[1]['miou'], abs=1e-6)


def test_full_image_batches_hold_one_size_and_cover_each_shard_once(tmp_path):
    from gluon_resnest.segmentation.data import (SegmentationEvalTransform, full_image_loader,
                                                 image_size, open_dataset)
    root = str(tmp_path / 'voc')
    _write_mixed_voc(root, MIXED_SIZES)
    data = open_dataset('voc', root, 'val', classes=5)
    assert [image_size(data, i) for i in range(len(data))] == [(h, w) for w, h in MIXED_SIZES]
    transform = SegmentationEvalTransform((0.5,) * 3, (0.25,) * 3)
    seen = []
    for rank in (0, 1):
        for images, labels in full_image_loader(data, transform, 2, rank, 2):
            assert images.shape[0] == labels.shape[0] <= 2
            seen += [tuple(images.shape[2:])] * images.shape[0]
    assert sorted(seen) == sorted((h, w) for w, h in MIXED_SIZES)


def test_segmentation_refuses_to_mix_another_run_into_its_folder(tmp_path):
    from gluon_resnest.segmentation.task import SegTrainConfig, train_segmentation
    root = str(tmp_path / 'voc')
    _write_mixed_voc(root, MIXED_SIZES[:2])
    common = dict(data_root=root, classes=5, output_stride=16, aspp_rates='1,2,3',
                  head_channels=16, base_size=40, crop_size=32, epochs=1, batch_size=2,
                  workers=0, save_dir=str(tmp_path / 'run'), progress=False)
    train_segmentation(SegTrainConfig(backbone='resnest14_small', **common), log=lambda *a: None)
    with pytest.raises(ValueError, match='holds another run .*--backbone resnest14_small there, '
                                         'resnetd14_small here.*--fresh'):
        train_segmentation(SegTrainConfig(backbone='resnetd14_small', **common))
    longer = dict(common, epochs=2, backbone='resnest14_small')
    with pytest.raises(ValueError, match='--epochs 1 there, 2 here'):  # another run's length
        train_segmentation(SegTrainConfig(**longer))
    said = []
    _, summary = train_segmentation(SegTrainConfig(resume=True, **longer), log=said.append)
    assert any('resumed from' in line and '(epoch 1 done)' in line for line in said)
    assert [h['epoch'] for h in summary['history']] == [1, 2]


@pytest.mark.slow
def test_every_pretrained_base_failure_is_one_clear_error(tmp_path, tiny_scenes):
    import json
    import subprocess
    import sys
    from gluon_resnest.segmentation import get_segmentation_model
    small = dict(backbone='resnest14_small', classes=5, output_stride=16, rates=(1, 2, 3),
                 head_channels=16)
    with pytest.raises(FileNotFoundError, match='runs/pretrain/bset: no such file or checkpoint '
                                                'folder .*imagenet, a sha1 tag'):
        get_segmentation_model(pretrained_base='runs/pretrain/bset', **small)
    for task, model, message in (
            ('segmentation', 'deeplabv3', 'is a segmentation checkpoint; the base takes'),
            ('classification', 'resnetd14_small', 'holds resnetd14_small weights, but the '
                                                  'backbone is resnest14_small')):
        folder = tmp_path / task
        os.makedirs(str(folder))
        (folder / 'model.params').write_bytes(b'')
        (folder / 'meta.json').write_text(json.dumps({'task': task, 'config': {'model': model}}))
        with pytest.raises(ValueError, match=message):
            get_segmentation_model(pretrained_base=str(folder), **small)
    # through the command: one line, no traceback, no run folder (imagenet offline included)
    script = os.path.join(ROOT, 'train',
                          'train_segmentation.py')
    env = dict(os.environ, MXNET_HOME=str(tmp_path / 'empty-store'))
    for base, backbone, message in (
            ('runs/pretrain/bset', 'resnest14_small', 'no such file or checkpoint folder'),
            (str(tmp_path / 'segmentation'), 'resnest14_small', 'is a segmentation checkpoint'),
            ('imagenet', 'resnest14', 'resnest14-')):
        flags = _seg_flags(tiny_scenes, str(tmp_path / 'run'), 1)
        flags[flags.index('--backbone') + 1] = backbone
        proc = subprocess.run([sys.executable, script] + flags + ['--pretrained-base', base],
                              capture_output=True, text=True, timeout=120, env=env)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 1 and 'Traceback' not in proc.stderr, proc.stderr[-2000:]
        assert lines[-1].startswith('error: ') and message in lines[-1], lines
        assert not os.path.exists(str(tmp_path / 'run'))


def test_bad_label_maps_are_found_before_training_and_skipped_on_request(tmp_path):
    """A bad label map in the validation split used to end the run after the first training
    epoch (workers pipeline); an RGB label PNG passed the checks and failed after a step."""
    from gluon_resnest.segmentation.task import SegTrainConfig, train_segmentation
    root = str(tmp_path / 'voc')
    _write_voc(root, ['bad'], size=(40, 32), classes=5, bad_label=9)  # label 9 of 5 classes
    ids = _write_mixed_voc(root, MIXED_SIZES)  # rewrites the split files: 'bad' in neither
    rgb = Image.fromarray(np.zeros((40, 48, 3), np.uint8))  # a colour-coded label map
    rgb.save(os.path.join(root, 'SegmentationClass', ids[1] + '.png'))
    with open(os.path.join(root, 'ImageSets/Segmentation/val.txt'), 'a') as f:
        f.write('bad\n')
    cfg = dict(data_root=root, classes=5, backbone='resnest14_small', output_stride=16,
               aspp_rates='1,2,3', head_channels=16, base_size=40, crop_size=32, epochs=1,
               batch_size=2, workers=1, pipeline='workers', save_dir=str(tmp_path / 'run'),
               progress=False)
    with pytest.raises(SegmentationDataError, match='img1.png: the label map has 3 channels.*'
                                                    'voc split train; --bad-labels skip'):
        train_segmentation(SegTrainConfig(**cfg))
    assert not os.path.exists(str(tmp_path / 'run'))
    said = []
    _, summary = train_segmentation(SegTrainConfig(bad_labels='skip', **cfg), log=said.append)
    warnings = [line for line in said if line.startswith('warning:')]
    assert len(warnings) == 3, said  # img1 in both splits, 'bad' in validation
    assert any('voc split val left out' in w and 'bad.png: label 9 is not a class' in w
               for w in warnings)
    assert 0 <= summary['history'][0]['val_miou'] <= 100
    with pytest.raises(ValueError, match="--bad-labels 'ignore': allowed stop, skip"):
        train_segmentation(SegTrainConfig(bad_labels='ignore', **cfg))


def test_a_pretrained_base_checkpoint_loads_without_a_warning_per_parameter(tmp_path, tiny_rec):
    """The trainer initialized the whole loaded network again: one 'already initialized'
    warning per parameter (342 lines for the demo's backbone)."""
    import warnings
    from gluon_resnest.segmentation.task import SegTrainConfig, train_segmentation
    from gluon_resnest.classification.task import TrainConfig, train
    train(TrainConfig(model='resnest14_small', rec_train=tiny_rec[0], rec_val=tiny_rec[1],
                      classes=4, save_dir=str(tmp_path / 'base'), epochs=1, batch_size=8,
                      input_size=32, crop_ratio=1.0, workers=0, progress=False, max_iters=1),
          log=lambda *a: None)
    root = str(tmp_path / 'voc')
    _write_mixed_voc(root, MIXED_SIZES[:2])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        train_segmentation(SegTrainConfig(
            data_root=root, classes=5, backbone='resnest14_small', output_stride=16,
            aspp_rates='1,2,3', head_channels=16, base_size=40, crop_size=32, epochs=1,
            batch_size=2, workers=0, save_dir=str(tmp_path / 'run'), progress=False,
            pretrained_base=str(tmp_path / 'base' / 'best')), log=lambda *a: None)
    noisy = [str(w.message) for w in caught if 'already initialized' in str(w.message)]
    assert not noisy, noisy[:3]


@pytest.mark.slow
def test_a_segmentation_checkpoint_exports_and_the_export_says_what_it_is(tmp_path):
    """eval/export.py takes a segmentation checkpoint (it said "unknown model 'deeplabv3'"); the
    export records its backbone, so evaluating it with another backbone's normalization (which
    gave wrong scores silently) is refused and --backbone can be left out."""
    import json
    import subprocess
    import sys
    from gluon_resnest.segmentation.task import SegTrainConfig, train_segmentation
    root = str(tmp_path / 'voc')
    _write_mixed_voc(root, MIXED_SIZES[:3])
    train_segmentation(SegTrainConfig(
        data_root=root, classes=5, backbone='resnest14_small', output_stride=16,
        aspp_rates='1,2,3', head_channels=16, base_size=40, crop_size=32, epochs=1,
        batch_size=2, workers=0, save_dir=str(tmp_path / 'run'), progress=False),
        log=lambda *a: None)
    here = ROOT
    prefix = str(tmp_path / 'deploy' / 'seg')
    best = str(tmp_path / 'run' / 'best')
    proc = subprocess.run([sys.executable, os.path.join(here, 'eval', 'export.py'),
                           '--checkpoint', best, '--out', prefix], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report['symbol_max_rel_diff'] < 1e-4 and report['input_shape'] == [1, 3, 32, 32]
    meta = json.load(open(prefix + '-meta.json'))
    assert (meta['task'], meta['backbone'], meta['classes']) == ('segmentation',
                                                                 'resnest14_small', 5)
    evaluate = [sys.executable, os.path.join(here, 'eval', 'evaluate_segmentation.py'),
                '--data-root', root, '--split', 'val', '--no-progress']
    exported = ['--symbol', prefix + '-symbol.json', '--params', prefix + '-0000.params']
    scores = [subprocess.run(evaluate + args, capture_output=True, text=True, timeout=300)
              for args in (['--checkpoint', best], exported)]
    assert all(p.returncode == 0 for p in scores), [p.stderr[-2000:] for p in scores]
    one, two = [json.loads(p.stdout.strip().splitlines()[-1]) for p in scores]
    assert one['miou'] == pytest.approx(two['miou'], abs=0.01) and one['pixels'] == two['pixels']
    out_folder = tmp_path / 'scores'
    os.makedirs(str(out_folder))
    for args, message in (
            (exported + ['--backbone', 'resnetd14_small'], '--backbone resnetd14_small, but '
             '%s-symbol.json was exported from a resnest14_small network' % prefix),
            (['--checkpoint', best, '--classes', '7'], '--classes 7, but %s has 5 classes'
             % best),
            (['--checkpoint', best, '--out', str(out_folder)], '--out %s is a folder'
             % out_folder)):
        proc = subprocess.run(evaluate + args, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 1 and 'Traceback' not in proc.stderr, proc.stderr[-2000:]
        assert message in proc.stderr.strip().splitlines()[-1], proc.stderr[-2000:]
    assert os.listdir(str(out_folder)) == [] and not os.path.exists(str(tmp_path / '.tmp'))
    # prediction on a user's images: colour PNGs holding the class indices, from the checkpoint
    # and from its export alike
    predict = [sys.executable, os.path.join(here, 'eval', 'predict_segmentation.py')]
    images = [os.path.join(root, 'JPEGImages', 'img0.jpg'), str(tmp_path / 'photo.png')]
    Image.fromarray(np.random.RandomState(3).randint(0, 255, (50, 70, 3)).astype(np.uint8)).save(
        images[1])
    maps = {}
    for name, source in (('ckpt', ['--checkpoint', best]), ('export', exported)):
        proc = subprocess.run(predict + source + ['--out-dir', str(tmp_path / name)] + images,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        records = [json.loads(line) for line in proc.stdout.strip().splitlines()]
        assert [r['image'] for r in records] == images
        for record, (h, w) in zip(records, [(32, 40), (50, 70)]):
            png = Image.open(record['output'])
            labels = np.asarray(png)
            assert png.mode == 'P' and labels.shape == (h, w) and labels.max() < 5
            assert sum(record['classes'].values()) == pytest.approx(1, abs=1e-3)
            maps.setdefault(name, []).append(labels)
    assert all(np.array_equal(a, b) for a, b in zip(maps['ckpt'], maps['export']))
    text = tmp_path / 'notes.jpg'
    text.write_text('not an image')
    for args, message in ((['--checkpoint', best, str(tmp_path / 'none.jpg')],
                           'image not found: %s' % (tmp_path / 'none.jpg')),
                          (['--checkpoint', best, str(text)], 'cannot read the image %s' % text)):
        proc = subprocess.run(predict + args + ['--out-dir', str(tmp_path / 'bad')],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 1 and 'Traceback' not in proc.stderr, proc.stderr[-2000:]
        assert message in proc.stderr.strip().splitlines()[-1]


def test_an_epoch_whose_pixels_are_all_ignored_stops_instead_of_learning_nothing(tmp_path):
    """It trained on at a loss of 0.0000 (e.g. a base size that leaves no labelled pixel)."""
    from gluon_resnest.segmentation.task import SegTrainConfig, train_segmentation
    root = str(tmp_path / 'voc')
    ids = _write_mixed_voc(root, MIXED_SIZES[:2])
    for i in ids:
        png = Image.fromarray(np.full((32, 40), 255, np.uint8), mode='P')
        png.putpalette(list(range(256)) * 3)
        png.resize(Image.open(os.path.join(root, 'JPEGImages', i + '.jpg')).size).save(
            os.path.join(root, 'SegmentationClass', i + '.png'))
    with pytest.raises(ValueError, match='epoch 1: every training pixel was --ignore-label 255'):
        train_segmentation(SegTrainConfig(
            data_root=root, classes=5, backbone='resnest14_small', output_stride=16,
            aspp_rates='1,2,3', head_channels=16, base_size=40, crop_size=32, epochs=1,
            batch_size=2, workers=0, save_dir=str(tmp_path / 'run'), progress=False))
    assert not os.path.isdir(str(tmp_path / 'run' / 'epoch-0000'))


@pytest.mark.parametrize('backbone', ['regnet_sa50', 'sa_fbnetv2_f1'])
def test_a_classification_file_of_another_family_loads_into_its_dilated_trunk(tmp_path,
                                                                              backbone):
    """The trunk of every family takes its classification weights: the classifier (and
    FBNet's pooling block) left out, every other parameter loaded, dilated or not."""
    import mxnet as mx
    import gluon_resnest as gr
    from gluon_resnest.segmentation import get_segmentation_model
    classifier = gr.get_model(backbone, classes=4)
    classifier.initialize(mx.init.Xavier())
    path = str(tmp_path / 'c.params')
    classifier.save_parameters(path)
    own = {k: v.data().asnumpy() for k, v in classifier._collect_params_with_prefix().items()}
    net = get_segmentation_model('deeplabv3', backbone=backbone, classes=5, output_stride=8,
                                 pretrained_base=path, rates=(1, 2, 3), head_channels=16)
    loaded = net.trunk._collect_params_with_prefix()
    assert loaded and all(np.array_equal(v.data().asnumpy(), own[k]) for k, v in loaded.items())
    assert net(mx.nd.zeros((1, 3, 48, 48)))[0].shape == (1, 5, 48, 48)


def _tiny_seg_flags(root, save_dir):
    return ['--data-root', root, '--classes', '5', '--backbone', 'resnest14_small',
            '--output-stride', '16', '--aspp-rates', '1,2,3', '--head-channels', '16',
            '--base-size', '48', '--crop-size', '32', '--epochs', '2', '--batch-size', '2',
            '--workers', '0', '--save-dir', save_dir, '--no-progress']


def test_segmentation_trains_with_a_moving_average_of_its_weights(tmp_path):
    """--ema-decay, an engine hook: the average is validated and selected (the weights' own
    mIoU recorded beside it), and best/ holds the average."""
    from gluon_resnest.engine.checkpoint import read_meta
    from gluon_resnest.engine.cli import config_from_args, config_parser
    from gluon_resnest.segmentation.task import SegTrainConfig, train_segmentation
    root = str(tmp_path / 'voc')
    _write_mixed_voc(root, MIXED_SIZES)
    args = config_parser(SegTrainConfig).parse_args(
        _tiny_seg_flags(root, str(tmp_path / 'run')) + ['--ema-decay', '0.5'])
    _, summary = train_segmentation(config_from_args(args, SegTrainConfig), log=lambda *a: None)
    for record in summary['history']:
        assert 0 <= record['val_miou'] <= 100 and 'val_miou_weights' in record
        assert record['train_loss_main'] > 0 and record['train_loss_aux'] > 0
    best = str(tmp_path / 'run' / 'best')
    folder = str(tmp_path / 'run' / ('epoch-%04d' % read_meta(best)['epoch']))
    average = mx.nd.load(os.path.join(folder, 'ema.params'))
    kept = mx.nd.load(os.path.join(best, 'model.params'))
    assert average.keys() == kept.keys()
    for key in average:
        np.testing.assert_array_equal(average[key].asnumpy(), kept[key].asnumpy())


def test_segmentation_trains_in_bfloat16_where_the_cpu_can_and_says_so_where_not(tmp_path):
    """--amp through the command (AMP is set up once per process): refused in one line on a
    CPU without AVX-512 (shown on any CPU by capping oneDNN), trained where bfloat16 runs."""
    from gluon_resnest.runtime import cpu_supports_bfloat16
    root = str(tmp_path / 'voc')
    _write_mixed_voc(root, MIXED_SIZES)
    command = [sys.executable, os.path.join(ROOT, 'train', 'train_segmentation.py')]
    capped = subprocess.run(command + _tiny_seg_flags(root, str(tmp_path / 'capped')) +
                            ['--amp'], capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, ONEDNN_MAX_CPU_ISA='AVX2'))
    assert capped.returncode != 0 and 'needs AVX-512' in capped.stderr, capped.stderr[-2000:]
    assert 'Traceback' not in capped.stderr
    if not cpu_supports_bfloat16():
        pytest.skip('this CPU has no AVX-512: bfloat16 training cannot run (refusal tested)')
    run = subprocess.run(command + _tiny_seg_flags(root, str(tmp_path / 'run')) +
                         ['--amp', '--ema-decay', '0.5'], capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    history = [json.loads(line) for line in open(str(tmp_path / 'run' / 'metrics.jsonl'))]
    assert len(history) == 2 and all(np.isfinite(h['train_loss']) for h in history)
    meta = json.load(open(str(tmp_path / 'run' / 'epoch-0001' / 'meta.json')))
    assert meta['config']['amp'] is True and meta['task'] == 'segmentation'
