"""The detection task on the engine: Faster and Mask R-CNN train on tiny images in COCO's
layout and a COCO-format folder, each loss logged, resume, checkpoints that load back for
evaluation with the figure the run recorded, two Horovod processes with synchronized BN, and
flags checked before anything runs."""
import dataclasses
import json
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

from gluon_resnest.detection.config import DetTrainConfig, load_detector
from gluon_resnest.detection.data import coco_split
from gluon_resnest.detection.evaluate import evaluate_detection
from gluon_resnest.detection.task import train_detection
from helpers import ROOT
from tiny_data import write_coco

LOSSES = ('rpn_cls', 'rpn_box', 'rcnn_cls', 'rcnn_box')


@pytest.fixture(scope='module')
def tiny_coco(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('coco'))
    write_coco(root, images=6, split='train', seed=0)
    write_coco(root, images=3, split='val', seed=1)
    return root


def _config(root, save_dir, **changes):
    settings = dict(layout='coco', data_root=root, train_split='train', val_split='val',
                    backbone='resnest14_small', norm='bn', short='96,112', test_short=96,
                    max_size=160, epochs=1, batch_size=2, base_lr=0.02, warmup_iters=2,
                    num_sample=32, rpn_train_post_nms=100, rpn_test_post_nms=50,
                    save_dir=save_dir, progress=False)
    settings.update(changes)
    return DetTrainConfig(**settings)


def test_faster_rcnn_trains_logs_each_loss_resumes_and_reloads_for_evaluation(tiny_coco,
                                                                              tmp_path):
    lines = []
    cfg = _config(tiny_coco, str(tmp_path / 'run'))
    _, summary = train_detection(cfg, log=lines.append)
    record = summary['history'][0]
    parts = [record['train_loss_' + name] for name in LOSSES]
    assert all(np.isfinite(parts)) and record['train_loss'] == pytest.approx(sum(parts),
                                                                              rel=1e-5)
    assert 0.0 <= record['val_ap'] <= 100.0 and 'val_mask_ap' not in record
    assert 'rpn_cls' in lines[-1] and 'val AP' in lines[-1]
    # the same command with more epochs resumes
    _, summary = train_detection(dataclasses.replace(cfg, epochs=2, resume=True),
                                 log=lines.append)
    assert any(line.startswith('resumed from') for line in lines)
    assert [h['epoch'] for h in summary['history']] == [1, 2]
    # the best checkpoint loads back and scores what the run recorded for it
    best = os.path.join(cfg.save_dir, 'best')
    net, saved, names, category_ids = load_detector(best)
    assert names == ['square', 'disc'] and category_ids == [3, 7]
    scores = evaluate_detection(net, coco_split(tiny_coco, 'val'), mx.cpu(), saved.backbone,
                                saved.test_short, saved.max_size)
    meta = json.load(open(os.path.join(best, 'meta.json')))
    assert scores['ap'] == pytest.approx(meta['val_ap'], abs=1e-9)
    assert scores['images'] == 3


def test_mask_rcnn_trains_from_a_coco_format_folder_with_empty_images(tmp_path):
    root = str(tmp_path / 'data')
    train_json, images, _ = write_coco(root, images=4, split='train', layout='coco-json')
    val_json, _, _ = write_coco(root, images=2, split='val', seed=1, layout='coco-json')
    with open(train_json) as f:
        data = json.load(f)
    data['annotations'] = [a for a in data['annotations'] if a['image_id'] != 1000]
    with open(train_json, 'w') as f:
        json.dump(data, f)
    cfg = _config(images, str(tmp_path / 'run'), layout='coco-json', model='mask_rcnn_fpn',
                  train_annotations=train_json, val_annotations=val_json, empty='keep')
    _, summary = train_detection(cfg, log=lambda *a: None)
    record = summary['history'][0]
    assert np.isfinite(record['train_loss_mask']) and 0 <= record['val_mask_ap'] <= 100
    assert record['train_loss'] == pytest.approx(
        sum(record['train_loss_' + n] for n in LOSSES + ('mask',)), rel=1e-5)


@pytest.mark.parametrize('changes, message', [
    (dict(short='24,64'), '--short 24 is too small for the FPN of resnest14_small: its '
                          'coarsest level .P6. has a stride of 32 px'),
    (dict(test_short=16), '--test-short 16 is too small'),
    (dict(backbone='resnest50', short='48,64'), 'its coarsest level .P6. has a stride of 64'),
    (dict(short='800,640'), '--short is one size or a range low,high'),
    (dict(max_size=100), '--max-size 100 is below the short side 112'),
    (dict(layout='coco-json'), '--layout coco-json needs --train-annotations'),
    (dict(model='mask_rcnn_fpn', metric='voc07'), '--metric voc07 has no mask AP'),
    (dict(norm='group'), "--norm 'group': allowed sync, bn, frozen"),
    (dict(lr_decay_epochs='11,8'), '--lr-decay-epochs must increase'),
    (dict(classes=5), '--classes 5, but the training data have 2 classes'),
    (dict(val_split='val2017'), "split 'val2017': .* not found; splits here: train, val")])
def test_flags_and_data_are_checked_before_anything_is_written(tiny_coco, tmp_path, changes,
                                                               message):
    cfg = _config(tiny_coco, str(tmp_path / 'run'), **changes)
    with pytest.raises(ValueError, match=message):
        train_detection(cfg, log=lambda *a: None)
    assert not os.path.exists(cfg.save_dir)


@pytest.mark.slow
def test_two_process_detection_training_with_synchronized_bn(tiny_coco, tmp_path):
    from helpers import require_horovodrun
    launcher = require_horovodrun()
    save_dir = str(tmp_path / 'run')
    flags = ['--layout', 'coco', '--data-root', tiny_coco, '--train-split', 'train',
             '--val-split', 'val', '--backbone', 'resnest14_small', '--norm', 'sync',
             '--short', '96,112', '--test-short', '96', '--max-size', '160', '--epochs', '1',
             '--batch-size', '1', '--warmup-iters', '2', '--num-sample', '32',
             '--rpn-train-post-nms', '100', '--rpn-test-post-nms', '50', '--no-progress',
             '--save-dir', save_dir]
    proc = subprocess.run([launcher, '--gloo', '-np', '2', '-H', 'localhost:2', sys.executable,
                           os.path.join(ROOT, 'train', 'train_detection.py')] + flags,
                          env=dict(os.environ, OMP_NUM_THREADS='1'), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    history = [json.loads(line) for line in open(os.path.join(save_dir, 'metrics.jsonl'))]
    assert len(history) == 1 and all(np.isfinite(history[0]['train_loss_' + n])
                                     for n in LOSSES)
    meta = json.load(open(os.path.join(save_dir, 'best', 'meta.json')))
    assert meta['world_size'] == 2
    # the ranks' detections were gathered exactly: one process scoring every validation image
    # gives the recorded figure
    net, saved, _, _ = load_detector(os.path.join(save_dir, 'best'))
    scores = evaluate_detection(net, coco_split(tiny_coco, 'val'), mx.cpu(), saved.backbone,
                                saved.test_short, saved.max_size)
    assert scores['images'] == 3
    assert scores['ap'] == pytest.approx(meta['val_ap'], abs=1e-9)


@pytest.fixture(scope='module')
def mask_checkpoint(tiny_coco, tmp_path_factory):
    save_dir = str(tmp_path_factory.mktemp('mask') / 'run')
    train_detection(_config(tiny_coco, save_dir, model='mask_rcnn_fpn', max_iters=1),
                    log=lambda *a: None)
    return os.path.join(save_dir, 'best')


def _command(name, args):
    return subprocess.run([sys.executable, os.path.join(ROOT, 'eval', name)] + args,
                          capture_output=True, text=True, timeout=300)


def test_evaluation_command_scores_what_training_recorded_and_writes_coco_results(
        tiny_coco, mask_checkpoint, tmp_path):
    results = str(tmp_path / 'detections.json')
    proc = _command('evaluate_detection.py', ['--checkpoint', mask_checkpoint, '--data-root',
                                              tiny_coco, '--split', 'val', '--results',
                                              results, '--no-progress'])
    assert proc.returncode == 0, proc.stderr[-2000:]
    scores = json.loads(proc.stdout.strip().splitlines()[-1])
    meta = json.load(open(os.path.join(mask_checkpoint, 'meta.json')))
    assert scores['images'] == 3 and scores['ap'] == round(meta['val_ap'], 2)
    assert scores['mask_ap'] == round(meta['history'][-1]['val_mask_ap'], 2)
    found = json.load(open(results))
    assert len(found) == scores['detections'] and {'bbox', 'segmentation'} <= set(found[0])
    assert {r['image_id'] for r in found} <= {1001, 1008, 1015}  # the dataset's own ids
    bad = _command('evaluate_detection.py', ['--checkpoint', mask_checkpoint, '--data-root',
                                             tiny_coco, '--split', 'test'])
    assert bad.returncode != 0 and 'Traceback' not in bad.stderr
    assert "split 'test'" in bad.stderr and 'splits here: train, val' in bad.stderr


def test_prediction_command_draws_and_lists_detections(tiny_coco, mask_checkpoint, tmp_path):
    image = os.path.join(tiny_coco, 'val', 'val_000.jpg')
    proc = _command('predict_detection.py', ['--checkpoint', mask_checkpoint, '--out-dir',
                                             str(tmp_path / 'out'), '--threshold', '0', image])
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    import cv2
    drawn = cv2.imread(record['png'])
    assert drawn.shape == cv2.imread(image).shape
    assert record['detections'] and all(d['class_name'] in ('square', 'disc') and
                                        d['mask_pixels'] is not None
                                        for d in record['detections'])
    scores = [d['score'] for d in record['detections']]
    assert scores == sorted(scores, reverse=True)
    missing = _command('predict_detection.py', ['--checkpoint', mask_checkpoint, '--out-dir',
                                                str(tmp_path / 'out'), 'nothere.jpg'])
    assert missing.returncode != 0 and 'image not found: nothere.jpg' in missing.stderr


def test_export_command_writes_a_detector_that_reloads_exactly(mask_checkpoint, tmp_path):
    prefix = str(tmp_path / 'deploy' / 'detector')
    proc = _command('export.py', ['--checkpoint', mask_checkpoint, '--out', prefix])
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report['symbol_max_abs_diff'] == 0.0 and report['input_shape'] == [1, 3, 96, 96]
    meta = json.load(open(prefix + '-meta.json'))
    assert meta['task'] == 'detection' and meta['classes'] == ['square', 'disc']
    onnx = _command('export.py', ['--checkpoint', mask_checkpoint, '--out', prefix, '--onnx'])
    assert onnx.returncode != 0 and 'detectors do not export to ONNX' in onnx.stderr


@pytest.mark.parametrize('model', ['cascade_rcnn_fpn', 'cascade_mask_rcnn_fpn'])
def test_cascade_rcnn_trains_each_stage_and_reloads_for_evaluation(tiny_coco, tmp_path, model):
    cfg = _config(tiny_coco, str(tmp_path / 'run'), model=model, head='light')
    _, summary = train_detection(cfg, log=lambda *a: None)
    record = summary['history'][0]
    stages = ['stage%d_%s' % (k, kind) for k in (1, 2, 3) for kind in ('cls', 'box')]
    stages += ['mask'] if model == 'cascade_mask_rcnn_fpn' else []
    assert ('val_mask_ap' in record) == (model == 'cascade_mask_rcnn_fpn')
    assert all(np.isfinite(record['train_loss_' + name]) for name in stages)
    assert record['train_loss'] == pytest.approx(
        sum(record['train_loss_' + n] for n in stages + ['rpn_cls', 'rpn_box']), rel=1e-5)
    net, saved, _, _ = load_detector(os.path.join(cfg.save_dir, 'best'))
    scores = evaluate_detection(net, coco_split(tiny_coco, 'val'), mx.cpu(), saved.backbone,
                                saved.test_short, saved.max_size)
    assert scores['ap'] == pytest.approx(record['val_ap'], abs=1e-9)
