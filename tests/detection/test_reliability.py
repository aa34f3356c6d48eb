"""What a new user's probe of the detection commands and API found (issue 37), each checked
where it failed: the naive engine, the moving average, checkpoints used at other sizes, batches
and sizes the API was given, the detector's own named losses, and what the commands say."""
import json
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

from gluon_resnest.detection import (DetectionTargets, evaluate_detection,
                                     get_detection_model, load_detector)
from gluon_resnest.detection.config import DetTrainConfig
from gluon_resnest.detection.task import DetectionTask, pad_batch, train_detection
from helpers import ROOT
from tiny_data import write_coco

MODELS = ('faster_rcnn_fpn', 'mask_rcnn_fpn', 'cascade_rcnn_fpn', 'cascade_mask_rcnn_fpn')


@pytest.fixture(scope='module')
def coco_json(tmp_path_factory):
    """A COCO-format folder of 128 px scenes: (image folder, train.json, val.json)."""
    root = str(tmp_path_factory.mktemp('json'))
    train, images, _ = write_coco(root, images=4, size=(128, 128), layout='coco-json')
    val, _, _ = write_coco(root, images=2, size=(128, 128), seed=1, split='val',
                           layout='coco-json')
    return images, train, val


def _config(coco_json, save_dir, **changes):
    images, train, val = coco_json
    return DetTrainConfig(**dict(dict(
        layout='coco-json', data_root=images, train_annotations=train, val_annotations=val,
        model='mask_rcnn_fpn', backbone='resnest14_small', head='light', norm='bn',
        short='128,128', test_short=128, max_size=128, epochs=1, max_iters=1, batch_size=2,
        warmup_iters=1, num_sample=32, rpn_train_post_nms=100, rpn_test_post_nms=50,
        save_dir=save_dir, progress=False), **changes))


@pytest.fixture(scope='module')
def checkpoint(coco_json, tmp_path_factory):
    """A Mask R-CNN checkpoint trained (one step) on 128 px images."""
    save_dir = str(tmp_path_factory.mktemp('run') / 'run')
    train_detection(_config(coco_json, save_dir), log=lambda *a: None)
    return os.path.join(save_dir, 'best')


def _command(name, args, env=None):
    return subprocess.run([sys.executable, os.path.join(ROOT, name)] + args,
                          capture_output=True, text=True, timeout=600, env=env)


@pytest.mark.slow
def test_every_detector_trains_evaluates_predicts_and_exports_under_the_naive_engine(
        coco_json, tmp_path):
    """MXNet's naive engine (bitwise-reproducible runs) refused the mask head's upsampling
    weight ("Check failed: !is_view") at the first validation of a mask model."""
    images, train, val = coco_json
    proc = _command(os.path.join('tests', 'detection', 'naive_engine_worker.py'),
                    [images, train, val, str(tmp_path)],
                    env=dict(os.environ, MXNET_ENGINE_TYPE='NaiveEngine'))
    assert proc.returncode == 0, proc.stderr[-3000:]
    done = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith('{')]
    assert [d['model'] for d in done] == list(MODELS)
    for d in done:
        assert d['engine'] == 'NaiveEngine' and np.isfinite(d['train_loss'])
        assert d['images'] == 2 and d['export_max_abs_diff'] == 0.0, d
        assert d['has_masks'] == ('mask' in d['model'])


def test_the_moving_average_of_a_detector_is_kept_validated_and_saved(coco_json, tmp_path):
    """--ema-decay failed before the first step: the FPN's weights did not exist yet."""
    cfg = _config(coco_json, str(tmp_path / 'run'), model='faster_rcnn_fpn', ema_decay=0.9,
                  epochs=2)
    _, summary = train_detection(cfg, log=lambda *a: None)
    assert all('val_ap_weights' in h for h in summary['history'])
    assert os.path.isfile(os.path.join(cfg.save_dir, 'epoch-0001', 'ema.params'))


def test_a_detector_returns_its_named_losses(coco_json):
    """detectron2's GeneralizedRCNN: the network itself gives its losses, by name."""
    images, train, _ = coco_json
    task = DetectionTask()
    for model, names in (('faster_rcnn_fpn', ['rpn_cls', 'rpn_box', 'rcnn_cls', 'rcnn_box']),
                         ('mask_rcnn_fpn', ['rpn_cls', 'rpn_box', 'rcnn_cls', 'rcnn_box',
                                            'mask']),
                         ('cascade_rcnn_fpn', ['rpn_cls', 'rpn_box'] + [
                             'stage%d_%s' % (k, t) for k in (1, 2, 3) for t in ('cls', 'box')])):
        cfg = _config(coco_json, '', model=model)
        mx.random.seed(0)
        net = task.build_model(cfg, mx.cpu())
        from gluon_resnest.detection.data import DetectionTrainTransform
        from gluon_resnest.zoo.registry import get_model_info
        info = get_model_info(cfg.backbone)
        transform = DetectionTrainTransform((128, 128), 128, info.mean, info.std)
        dataset = task.datasets(cfg)[0]
        items = [transform(*dataset[i]) for i in range(2)]
        images, targets = pad_batch(items, mx.cpu())
        assert isinstance(targets, DetectionTargets) and targets.sizes == [(128, 128)] * 2
        with mx.autograd.record():
            losses = net(images, targets)
        assert list(losses) == names, model
        for name, value in losses.items():
            assert value.shape == (2,) and np.isfinite(value.asnumpy()).all(), (model, name)
        task.sets = None
        with pytest.raises(ValueError, match='trains on batches of 2 images'):
            with mx.autograd.record():
                net(images[:1], targets)
        with pytest.raises(ValueError, match='in training mode a detector takes'):
            with mx.autograd.record():
                net(images)


def test_a_checkpoint_trained_on_small_images_is_evaluated_at_any_size(coco_json, checkpoint,
                                                                      tmp_path):
    """The anchors of a 128 px run covered 768 px: 800 px failed deep in MXNet."""
    images, _, val = coco_json
    proc = _command(os.path.join('eval', 'evaluate_detection.py'), [
        '--checkpoint', checkpoint, '--layout', 'coco-json', '--data-root', images,
        '--annotations', val, '--short', '800', '--max-size', '1333', '--no-progress'])
    assert proc.returncode == 0, proc.stderr[-2000:]
    scores = json.loads(proc.stdout.splitlines()[-1])
    assert scores['images'] == 2 and scores['short'] == 800 and scores['data'] == val
    # the API says what to do instead of failing inside the network
    net, cfg, _, _ = load_detector(checkpoint)
    from gluon_resnest.detection.data import COCOFormat
    with pytest.raises(ValueError, match=r'cover 768 px a side.*max_size=800'):
        evaluate_detection(net, COCOFormat(val, images), backbone=cfg.backbone)
    big, _, _, _ = load_detector(checkpoint, max_size=1333)
    assert big(mx.nd.zeros((1, 3, 800, 1216)))[0].shape[0] == 1
    # the anchors a checkpoint holds must agree with those its settings give
    params = mx.nd.load(os.path.join(checkpoint, 'model.params'))
    key = 'rpn.anchor_generator.0.anchors'
    params[key] = params[key] + 1
    bad = tmp_path / 'bad'
    bad.mkdir()
    mx.nd.save(str(bad / 'model.params'), params)
    for name in ('meta.json',):
        (bad / name).write_text(open(os.path.join(checkpoint, name)).read())
    with pytest.raises(ValueError, match='other anchors'):
        load_detector(str(bad), max_size=1333)


def test_a_batch_is_detected_image_by_image_and_sizes_are_checked():
    net = get_detection_model('faster_rcnn_fpn', backbone='resnest14_small', classes=3,
                              head='light', max_size=160, rpn_test_post_nms=50)
    net.initialize()
    images = mx.nd.array(np.random.RandomState(0).uniform(-2, 2, (2, 3, 96, 128)))
    batch = net(images)
    for i in range(2):
        for together, alone in zip(batch, net(images[i:i + 1])):
            np.testing.assert_array_equal(together[i].asnumpy(), alone[0].asnumpy())
    with pytest.raises(ValueError, match='at least 32 px a side'):
        net(mx.nd.zeros((1, 3, 24, 64)))
    with pytest.raises(ValueError, match='N x 3 x H x W'):
        net(mx.nd.zeros((3, 64, 64)))
    few = get_detection_model('faster_rcnn_fpn', backbone='resnest14_small', classes=3,
                              head='light', rpn_test_pre_nms=6000, rpn_test_post_nms=2000)
    few.initialize()
    with pytest.raises(ValueError, match='fewer than the 2000 proposals'):
        few(mx.nd.zeros((1, 3, 32, 32)))


def test_get_detection_model_takes_the_head_the_trainer_takes():
    light = get_detection_model('mask_rcnn_fpn', backbone='resnest14_small', classes=3,
                                head='light')
    assert light.features.fpn.lateral5.weight.shape[0] == 64
    assert light.rpn._train_pre_nms == 2000
    with pytest.raises(ValueError, match="unknown head 'tiny'; available: gluoncv, light"):
        get_detection_model('faster_rcnn_fpn', head='tiny')
    with pytest.raises(ValueError, match="fit head='gluoncv'"):
        get_detection_model('faster_rcnn_fpn', backbone='resnest50', head='light',
                            pretrained=True)


def test_evaluation_and_prediction_refuse_what_they_cannot_do(coco_json, checkpoint,
                                                             tmp_path):
    images, _, val = coco_json
    evaluate = os.path.join('eval', 'evaluate_detection.py')
    base = ['--checkpoint', checkpoint, '--layout', 'coco-json', '--data-root', images]
    for args, message in (
            (['--annotations', val, '--short', '16'], '--short 16 is too small'),
            ([], '--layout coco-json needs --annotations'),
            (['--annotations', os.path.dirname(val)], 'is a folder'),
            (['--annotations', val, '--split', 'val2017'], '--split is for the coco'),
            (['--annotations', val, '--results', str(tmp_path / 'nowhere' / 'r.json')],
             '--results'),
            (['--annotations', val, '--short', '1'], 'too small')):
        proc = _command(evaluate, base + args)
        assert proc.returncode != 0 and message in proc.stderr, (args, proc.stderr[-500:])
        assert 'Traceback' not in proc.stderr
    # the classes of another dataset: the error names its file
    other = json.load(open(val))
    other['categories'][0]['name'] = 'cube'
    other_path = tmp_path / 'other.json'
    other_path.write_text(json.dumps(other))
    proc = _command(evaluate, base + ['--annotations', str(other_path)])
    assert proc.returncode != 0 and str(other_path) in proc.stderr and 'cube' in proc.stderr
    # prediction reads every image before it writes anything
    broken = tmp_path / 'broken.jpg'
    broken.write_bytes(open(os.path.join(images, 'val_000.jpg'), 'rb').read()[:300])
    out = tmp_path / 'out'
    proc = _command(os.path.join('eval', 'predict_detection.py'), [
        '--checkpoint', checkpoint, '--out-dir', str(out),
        os.path.join(images, 'val_001.jpg'), str(broken)])
    assert proc.returncode != 0 and 'truncated JPEG' in proc.stderr
    assert str(broken) in proc.stderr and not out.exists()


def test_export_names_the_detector_it_wrote(checkpoint, tmp_path):
    proc = _command(os.path.join('eval', 'export.py'),
                    ['--checkpoint', checkpoint, '--out', str(tmp_path / 'det')])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.splitlines()[-1])['model'] == 'mask_rcnn_fpn'


def test_training_says_what_it_left_out_and_what_costs_time(coco_json, tmp_path):
    images, train, val = coco_json
    data = json.load(open(train))
    crowd_image = data['images'][0]['id']
    for ann in data['annotations']:
        if ann['image_id'] == crowd_image:
            ann['iscrowd'] = 1
    crowded = tmp_path / 'train.json'
    crowded.write_text(json.dumps(data))
    lines = []
    train_detection(_config(coco_json, str(tmp_path / 'run'), train_annotations=str(crowded),
                            norm='sync', model='faster_rcnn_fpn'), log=lines.append)
    assert any('1 image(s) without objects left out, 1 of them with only crowd regions' in line
               for line in lines)
    assert any('--norm sync on one process' in line for line in lines)
