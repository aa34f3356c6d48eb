"""The Fashion-MNIST instance scenes (COCO layout, each garment's visible silhouette as its
mask) and the Mask R-CNN demo end to end under two processes."""
import json
import os

import numpy as np
import pytest
from PIL import Image


def test_instance_masks_are_the_visible_silhouettes_and_boxes_their_extent():
    from experiments.instance_scenes import annotate
    from experiments.scenes import compose_instances
    from gluon_resnest.detection.data import decode_masks
    garments = np.zeros((4, 28, 28), np.uint8)
    garments[:, 3:25, 5:23] = 200
    image, instances, classes = compose_instances(
        np.random.RandomState(3), garments, np.array([1, 4, 6, 9]), size=128, min_items=2,
        max_items=6, scale=(1.0, 3.0))
    assert len(classes) >= 2 and instances.max() == len(classes)
    annotations = annotate(instances, classes, 7, 1)
    masks = decode_masks([a['segmentation'] for a in annotations], 128, 128)
    for a, mask in zip(annotations, masks):
        k = [n + 1 for n in range(len(classes))
             if ((instances == n + 1) == mask.astype(bool)).all()]
        assert len(k) == 1 and a['category_id'] == classes[k[0] - 1] + 1
        ys, xs = np.nonzero(mask)
        assert a['bbox'] == [xs.min(), ys.min(), xs.max() + 1 - xs.min(),
                             ys.max() + 1 - ys.min()]
        assert a['area'] == mask.sum() and a['image_id'] == 7
        assert (image[..., 0][mask.astype(bool)] > 20).all()  # garment pixels only


def test_a_garment_hidden_below_the_visible_minimum_is_not_annotated():
    from experiments.instance_scenes import annotate
    instances = np.zeros((32, 32), np.int32)
    instances[:10, :10] = 1
    instances[20, 20:25] = 2  # 5 visible pixels
    annotations = annotate(instances, [3, 5], 1, 1, min_visible=20)
    assert [a['category_id'] for a in annotations] == [4]


@pytest.mark.slow
def test_the_instance_demo_end_to_end_small_under_two_processes(tmp_path):
    """Scenes through the COCO reader, garment pretraining and Mask R-CNN under horovodrun
    -np 2 with synchronized BN, the test scenes evaluated once across both ranks, the
    picture, the export, the summary."""
    from helpers import require_horovodrun, write_raw_fashion_mnist
    from experiments.instance_demo import run_instance_demo
    require_horovodrun()
    rng = np.random.RandomState(0)
    labels = np.repeat(np.arange(10), 12).astype(np.uint8)
    garments = (rng.rand(len(labels), 28, 28) * 60).astype(np.uint8)
    garments[:, 6:22, 8:20] += (100 + 10 * labels)[:, None, None]
    src = write_raw_fashion_mnist(str(tmp_path / 'raw'), garments, labels)
    summary = run_instance_demo(str(tmp_path / 'scenes'), str(tmp_path / 'run'), processes=2,
                                progress=False, log=lambda *_: None, counts=(8, 4, 4),
                                source=src, pretrain=dict(epochs=1, batch_size=16,
                                                          max_iters=2),
                                epochs=1, batch_size=2, max_iters=2)
    assert summary['processes'] == 2 and summary['epochs'] == 1
    for key in ('test_box_ap', 'test_mask_ap', 'val_box_ap', 'val_mask_ap'):
        assert 0 <= summary[key] <= 100
    test = json.load(open(str(tmp_path / 'run' / 'test.json')))
    assert test['split'] == 'test' and test['images'] == 4  # every test scene once
    assert round(test['ap'], 2) == summary['test_box_ap']
    assert os.path.isfile(summary['symbol']) and os.path.isfile(summary['params'])
    picture = Image.open(summary['test_scenes_picture'])  # truth beside predictions
    assert picture.size[0] > 2 * 128 and picture.size[1] > 4 * 128
