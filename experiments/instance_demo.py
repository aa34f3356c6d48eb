"""The Fashion-MNIST instance-scenes demo: build the scenes (COCO layout), pretrain the small
trunk on the garments behind the training scenes (as experiments/scenes_demo.py does), train
Mask R-CNN with FPN under horovodrun (the epoch chosen on the validation scenes), evaluate the
chosen checkpoint once on the test scenes (box and mask AP), draw test scenes with predictions
beside the ground truth, export, and summarize; and ResNeSt against ResNet-D over seeds."""
import json
import os

import numpy as np

from gluon_resnest.engine.checkpoint import RunClock, atomic_file, write_json
from gluon_resnest.engine.distributed import rank_env, run_ranks
from gluon_resnest.launch import launch_training, rank_command
from .fashion_mnist_data import DEFAULT_SOURCE
from .instance_scenes import INSTANCE_COUNTS, build_instance_scenes
from .scenes import build_pretraining_records
from .scenes_demo import _pretrain, compare_over_seeds

__all__ = ['INSTANCE_DEMO', 'instance_config', 'run_instance_demo', 'compare_instance_backbones',
           'instance_figure']

# 128 px scenes at their own size; the light heads (a 64-channel pyramid, a 2fc box head of
# 256 units, 128 sampled RoIs, 300 proposals in training and 100 at test); the trunk's
# BatchNorm statistics frozen at the garment pretraining's: with 4 images per process the
# split attention's BatchNorms normalize over 4 pooled vectors (validation box AP 44.4 per
# process against 54.7 frozen, seed 0, 4 epochs); synchronized across the two processes, a
# step took 3.3x as long (2.8 against 9.1 img/s: every BatchNorm waits for an allreduce)
INSTANCE_DEMO = dict(model='mask_rcnn_fpn', backbone='resnest14_small', head='light',
                     norm='frozen', short='128,128', test_short=128, max_size=128, epochs=5,
                     batch_size=4, base_lr=0.04, warmup_iters=50, lr_decay_epochs='4',
                     num_sample=128, rpn_train_post_nms=300, rpn_test_post_nms=100)


def instance_config(data_root, save_dir, seed=0, progress=True, **overrides):
    """The DetTrainConfig of the demo (``overrides`` replace INSTANCE_DEMO's values)."""
    from gluon_resnest.detection.config import DetTrainConfig
    return DetTrainConfig(layout='coco', data_root=data_root, train_split='train',
                          val_split='val', save_dir=save_dir, seed=seed, workers=1, resume=True,
                          progress=progress, **dict(INSTANCE_DEMO, **overrides))


def _train(data_root, records, save_dir, processes, seed, progress, overrides, pretrain=None):
    backbone = overrides.get('backbone', INSTANCE_DEMO['backbone'])
    base = _pretrain(records, os.path.join(save_dir, 'pretrain'), backbone, processes, seed,
                     progress, pretrain)
    cfg = instance_config(data_root, save_dir, seed, progress, pretrained_base=base,
                          **overrides)
    launch_training('detection', cfg, processes, os.path.join(save_dir, 'ranks.log'),
                    naive_engine=True)


def _test(save_dir, data_root, processes, progress=False):
    """Box and mask AP of the checkpoint chosen on validation (``best/``) on the test scenes,
    the only time the test split is read, split across ``processes`` ranks."""
    out = os.path.join(save_dir, 'test.json')
    flags = ['--checkpoint', os.path.join(save_dir, 'best'), '--layout', 'coco',
             '--data-root', data_root, '--split', 'test', '--out', out] + (
                 [] if progress else ['--no-progress'])
    run_ranks(rank_command('gluon_resnest.commands.evaluate_detection', flags, processes),
              rank_env(processes, naive_engine=True), os.path.join(save_dir, 'ranks.log'),
              processes)
    with open(out) as f:
        return json.load(f)


def instance_figure(net, dataset, path, backbone, classes, count=6, short=128, max_size=128,
                    threshold=0.5, zoom=3):
    """A PNG of ``count`` scenes of ``dataset``: ground truth (left) beside the predictions
    scoring at least ``threshold`` (right), ``zoom`` times enlarged; returns ``path``."""
    import cv2
    from gluon_resnest.detection.data import decode_masks
    from gluon_resnest.detection.predict import detect, draw_detections
    from gluon_resnest.zoo.registry import get_model_info
    info = get_model_info(backbone)
    rows = []
    for i in range(min(count, len(dataset))):
        image, target = dataset[i]
        masks = decode_masks(target.masks, *image.shape[:2]) if target.masks else None
        truth = draw_detections(image, target.labels, np.ones(len(target.labels)),
                                target.boxes, masks, classes)
        found = draw_detections(image, *detect(net, image, info.mean, info.std, short,
                                               max_size, threshold), class_names=classes)
        rows.append(np.concatenate([truth, np.full((image.shape[0], 4, 3), 255, np.uint8),
                                    found], axis=1))
        rows.append(np.full((4, rows[-1].shape[1], 3), 255, np.uint8))
    picture = np.concatenate(rows[:-1], axis=0)
    picture = cv2.resize(picture, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST)
    with atomic_file(path) as tmp:
        cv2.imencode('.png', picture[:, :, ::-1])[1].tofile(tmp)
    return path


def run_instance_demo(data_dir, save_dir, processes=2, seed=0, progress=True, log=print,
                      counts=INSTANCE_COUNTS, pretrain=None, source=DEFAULT_SOURCE,
                      **overrides):
    """The whole demo; returns the summary dict (also written to ``save_dir/summary.json``).
    ``overrides`` replace INSTANCE_DEMO's values, ``pretrain`` the pretraining's; ``counts``
    (train, val, test scenes) and ``source`` make smaller runs. Wall times count every
    invocation of the run (an interrupted run resumed)."""
    with RunClock(save_dir) as clock:
        log('[1/4] Fashion-MNIST instance scenes (COCO layout) in %s' % data_dir)
        build_instance_scenes(data_dir, counts, source=source)
        records = build_pretraining_records(os.path.join(data_dir, 'pretrain'), source=source)
        log('[2/4] pretraining %s on the training garments, then Mask R-CNN on the training '
            'scenes (%d process(es)); models chosen on validation'
            % (overrides.get('backbone', INSTANCE_DEMO['backbone']), processes))
        _train(data_dir, records, save_dir, processes, seed, progress, overrides, pretrain)
        train_seconds = clock.seconds()
        clock.save()
        log('[3/4] evaluating the chosen checkpoint once on the test scenes')
        test = _test(save_dir, data_dir, processes, progress)
        log('[4/4] drawing test scenes and exporting for deployment')
        from gluon_resnest import export_model
        from gluon_resnest.detection.data import coco_split
        from gluon_resnest.detection import load_detector
        from gluon_resnest.detection.deploy import detection_meta
        best = os.path.join(save_dir, 'best')
        net, cfg, classes, category_ids = load_detector(best)
        picture = instance_figure(net, coco_split(data_dir, 'test', masks=True),
                                  os.path.join(save_dir, 'test-scenes.png'), cfg.backbone,
                                  classes, short=cfg.test_short, max_size=cfg.max_size)
        prefix = os.path.join(save_dir, 'deploy', '%s_%s' % (cfg.model, cfg.backbone))
        sym, params = export_model(net, prefix, (1, 3, cfg.test_short, cfg.test_short),
                                   meta=detection_meta(cfg, classes, category_ids))
        with open(os.path.join(save_dir, 'metrics.jsonl')) as f:
            history = [json.loads(line) for line in f]
        chosen = max(history, key=lambda h: h['val_ap'])
        summary = dict(
            model=cfg.model, backbone=cfg.backbone, seed=seed, processes=processes,
            epochs=len(history), selected_epoch=chosen['epoch'],
            val_box_ap=round(chosen['val_ap'], 2), val_mask_ap=round(chosen['val_mask_ap'], 2),
            test_box_ap=round(test['ap'], 2), test_box_ap50=round(test['ap50'], 2),
            test_mask_ap=round(test['mask_ap'], 2), test_mask_ap50=round(test['mask_ap50'], 2),
            test_images=test['images'], train_img_per_s=round(history[-1]['img_per_s'], 1),
            train_seconds=round(train_seconds, 1), wall_seconds=round(clock.seconds(), 1),
            invocations=clock.invocations, checkpoint=best, symbol=sym, params=params,
            curves=os.path.join(save_dir, 'curves.png'), test_scenes_picture=picture)
        write_json(os.path.join(save_dir, 'summary.json'), summary)
        return summary


def compare_instance_backbones(data_dir, save_root, backbones=('resnest14_small',
                                                               'resnetd14_small'),
                               seeds=(0, 1, 2), processes=2, log=print, pretrain=None,
                               **overrides):
    """The demo's training for each seed and backbone (``compare_over_seeds``), the test
    scenes evaluated once per run: mean and std of box and mask AP."""
    build_instance_scenes(data_dir)
    records = build_pretraining_records(os.path.join(data_dir, 'pretrain'))

    def run_one(backbone, seed, save_dir):
        _train(data_dir, records, save_dir, processes, seed, False,
               dict(overrides, backbone=backbone), pretrain)
        test = _test(save_dir, data_dir, processes)
        return dict(test_box_ap=test['ap'], test_mask_ap=test['mask_ap'])

    return compare_over_seeds(save_root, backbones, seeds, run_one,
                              ('test_box_ap', 'test_mask_ap'), log)
