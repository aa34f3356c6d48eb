"""Run by test_reliability.py with MXNET_ENGINE_TYPE=NaiveEngine: each detector trains one step,
is evaluated, predicts an image and is exported and reloaded, in this one process; one JSON
line per detector."""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..'))

import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402

from gluon_resnest import export_model  # noqa: E402
from gluon_resnest.deploy.export import import_symbol  # noqa: E402
from gluon_resnest.detection import evaluate_detection, load_detector  # noqa: E402
from gluon_resnest.detection.config import DetTrainConfig  # noqa: E402
from gluon_resnest.detection.data import COCOFormat, read_image  # noqa: E402
from gluon_resnest.detection.predict import detect  # noqa: E402
from gluon_resnest.detection.task import train_detection  # noqa: E402
from gluon_resnest.zoo.registry import get_model_info  # noqa: E402


def main(images, train, val, out):
    for model in ('faster_rcnn_fpn', 'mask_rcnn_fpn', 'cascade_rcnn_fpn',
                  'cascade_mask_rcnn_fpn'):
        save_dir = os.path.join(out, model)
        cfg = DetTrainConfig(layout='coco-json', data_root=images, train_annotations=train,
                             val_annotations=val, model=model, backbone='resnest14_small',
                             head='light', norm='bn', short='128,128', test_short=128,
                             max_size=128, epochs=1, max_iters=1, batch_size=2,
                             warmup_iters=1, num_sample=32, rpn_train_post_nms=100,
                             rpn_test_post_nms=50, save_dir=save_dir, progress=False)
        _, summary = train_detection(cfg, log=lambda *a: None)
        net, cfg, _, _ = load_detector(os.path.join(save_dir, 'best'))
        scores = evaluate_detection(net, COCOFormat(val, images), mx.cpu(), cfg.backbone, 128,
                                    128, masks='mask' in model)
        info = get_model_info(cfg.backbone)
        found = detect(net, read_image(os.path.join(images, 'val_000.jpg')), info.mean,
                       info.std, 128, 128, threshold=0.0)
        x = mx.nd.array(np.random.RandomState(0).uniform(-2, 2, (1, 3, 128, 128)))
        sym, params = export_model(net, os.path.join(save_dir, 'deploy'), x.shape)
        diff = max(float(np.abs(a.asnumpy() - b.asnumpy()).max())
                   for a, b in zip(net(x), import_symbol(sym, params)(x)))
        print(json.dumps(dict(model=model, engine=os.environ.get('MXNET_ENGINE_TYPE'),
                              train_loss=summary['history'][0]['train_loss'],
                              images=scores['images'], has_masks=found[3] is not None,
                              export_max_abs_diff=diff)), flush=True)


if __name__ == '__main__':
    main(*sys.argv[1:])
