"""COCO box AP through the engine's evaluator interface: hand-computed APs, the dataset's own
image and category ids, original-image coordinates, and exact gathering across ranks."""
import json

import mxnet as mx
import numpy as np
import pytest

from gluon_resnest.detection.evaluate import COCODetectionEvaluator

# four objects of category 7 (class index 1) and one of category 3 (index 0), ids not contiguous
BOXES = {11: [(7, [10, 10, 50, 40]), (3, [60, 20, 30, 30])], 25: [(7, [0, 0, 64, 48])],
         31: [(7, [5, 30, 40, 20]), (7, [50, 50, 20, 25])]}


@pytest.fixture()
def ground_truth(tmp_path):
    images = [dict(id=i, width=128, height=96, file_name='%d.jpg' % i) for i in BOXES]
    annotations = [dict(id=n + 1, image_id=i, category_id=c, bbox=box, area=box[2] * box[3],
                        iscrowd=0)
                   for n, (i, c, box) in enumerate((i, c, b) for i in BOXES for c, b in BOXES[i])]
    path = tmp_path / 'instances_val.json'
    path.write_text(json.dumps(dict(images=images, annotations=annotations, categories=[
        dict(id=3, name='three'), dict(id=7, name='seven')])))
    return str(path)


def _detections(image_id, keep=None, scale=1.0, score=0.9):
    """GluonCV-style (ids, scores, corner boxes) of the ground truth of ``image_id`` in an image
    resized by ``scale``, plus one invalid (-1) row."""
    rows = [(c, b) for n, (c, b) in enumerate(BOXES[image_id]) if keep is None or n in keep]
    ids = [[{3: 0, 7: 1}[c]] for c, _ in rows] + [[-1]]
    boxes = [[x * scale, y * scale, (x + w) * scale, (y + h) * scale] for _, (x, y, w, h)
             in rows] + [[0, 0, 0, 0]]
    return np.array(ids, 'f'), np.full((len(ids), 1), score, 'f'), np.array(boxes, 'f')


def test_perfect_detections_score_100_and_half_of_the_objects_51_of_101(ground_truth):
    evaluator = COCODetectionEvaluator(ground_truth)
    for image_id in BOXES:
        evaluator.add(image_id, *_detections(image_id, scale=2.0), scale=2.0)
    scores = evaluator.evaluate()
    assert scores['ap'] == pytest.approx(100.0) and scores['ap50'] == pytest.approx(100.0)
    assert scores['images'] == 3 and scores['detections'] == 5
    # category 7 found in images 11 and 25 only (2 of 4, precision 1), category 3 found:
    # COCO's 101 recall points give 51/101 for 7 and 1 for 3, averaged over the categories
    evaluator.reset()
    evaluator.add(11, *_detections(11))
    evaluator.add(25, *_detections(25))
    evaluator.add(31, *_detections(31, keep=()))
    expected = 100.0 * (51 / 101.0 + 1.0) / 2
    scores = evaluator.evaluate()
    for key in ('ap', 'ap50', 'ap75'):
        assert scores[key] == pytest.approx(expected, abs=1e-6), key
    # below 32 x 32 px: category 3's one object (found) and category 7's two of image 31
    # (missed); nothing above 96 x 96 px
    assert scores['ap_small'] == pytest.approx(50.0) and scores['ap_large'] is None


class _Shards(object):
    """What Comm.gather returns on two ranks: every rank's object, in rank order."""

    def __init__(self, rank, shares):
        self.rank, self.shares = rank, shares

    def gather(self, obj, name=None):
        self.shares[self.rank] = obj
        return [self.shares[r] for r in sorted(self.shares)]


def test_ranks_gather_detections_by_the_datasets_image_ids(ground_truth, tmp_path):
    """Two ranks with their own shards give what one process gives, keyed by image id, and the
    results file holds the detections in the original image's coordinates."""
    single = COCODetectionEvaluator(ground_truth)
    for image_id in BOXES:
        single.add(image_id, *_detections(image_id, keep=(0,)))
    expected = single.evaluate()
    shares = {}
    rank1 = COCODetectionEvaluator(ground_truth)
    rank1.add(25, *_detections(25, keep=(0,)))
    _Shards(1, shares).gather((rank1.results, rank1.image_ids))
    path = str(tmp_path / 'results.json')
    rank0 = COCODetectionEvaluator(ground_truth, results_path=path)
    for image_id in (31, 11):
        rank0.add(image_id, *_detections(image_id, keep=(0,), scale=0.5), scale=0.5)
    assert rank0.evaluate(_Shards(0, shares)) == expected
    written = json.load(open(path))
    assert [r['image_id'] for r in written] == [11, 25, 31]
    assert written[0] == dict(image_id=11, category_id=7, bbox=[10.0, 10.0, 50.0, 40.0],
                              score=0.9)


def test_the_evaluator_runs_a_detector_and_names_unknown_images(ground_truth):
    class Detector(object):  # GluonCV's outputs: (ids, scores, boxes) per image
        def __call__(self, data):
            ids, scores, boxes = _detections(int(data[0, 0, 0, 0].asscalar()))
            return [mx.nd.array(v[None]) for v in (ids, scores, boxes)]
    evaluator = COCODetectionEvaluator(ground_truth)
    for image_id in BOXES:
        data = mx.nd.full((1, 3, 96, 128), image_id)
        evaluator.process(Detector(), (data, [image_id], [1.0]))
    assert evaluator.evaluate()['ap'] == pytest.approx(100.0)
    with pytest.raises(ValueError, match='image id 99 is not in the ground truth'):
        evaluator.add(99, *_detections(11))


def _voc_truth():
    """Class 'a' (id 1): image 1 has one object and one difficult object; class 'b' (id 2):
    image 2 has two objects."""
    boxes = [(1, 1, [0, 0, 10, 10], 0), (2, 1, [20, 20, 10, 10], 1),
             (3, 2, [0, 0, 10, 10], 0), (4, 2, [20, 20, 10, 10], 0)]
    return dict(images=[dict(id=1, width=64, height=64), dict(id=2, width=64, height=64)],
                categories=[dict(id=1, name='a'), dict(id=2, name='b')],
                annotations=[dict(id=n, image_id=(1 if c == 1 else 2), category_id=c, bbox=b,
                                  area=b[2] * b[3], iscrowd=d) for n, c, b, d in boxes])


@pytest.mark.parametrize('metric, expected_b', [
    # class b: detections 0.9 hit, 0.8 miss, 0.7 hit: recall 0.5 at precision 1, then 1 at 2/3
    ('voc07', (6 * 1.0 + 5 * 2 / 3.0) / 11),  # 11 recall points: 0..0.5 at 1, 0.6..1 at 2/3
    ('voc12', 0.5 * 1.0 + 0.5 * 2 / 3.0)])    # the area under the precision envelope
def test_voc_map_by_hand_with_difficult_objects_ignored(metric, expected_b):
    evaluator = COCODetectionEvaluator(_voc_truth(), metric=metric)
    # class a: a hit (0.9), a miss (0.8), the difficult object found (0.7: neither): AP 1
    evaluator.add(1, [[0], [0], [0]], [[0.9], [0.8], [0.7]],
                  [[0, 0, 10, 10], [40, 40, 50, 50], [20, 20, 30, 30]])
    evaluator.add(2, [[1], [1], [1]], [[0.9], [0.8], [0.7]],
                  [[0, 0, 10, 10], [40, 40, 50, 50], [20, 20, 30, 30]])
    scores = evaluator.evaluate()
    assert scores['ap_a'] == pytest.approx(100.0)
    assert scores['ap_b'] == pytest.approx(100.0 * expected_b)
    assert scores['map'] == pytest.approx(100.0 * (1.0 + expected_b) / 2)


def test_mask_ap_scores_the_pasted_masks(ground_truth):
    """Every object is a filled rectangle (its polygon the box): masks of ones pasted into
    exact boxes find them all at IoU 0.5 (the paste is within a pixel), masks of zeros none,
    while the box AP stays 100."""
    data = json.load(open(ground_truth))
    for a in data['annotations']:
        x, y, w, h = a['bbox']
        a['segmentation'] = [[x, y, x + w, y, x + w, y + h, x, y + h]]
    for fill, expected in ((1.0, 100.0), (0.0, 0.0)):
        evaluator = COCODetectionEvaluator(data, masks=True)
        for image_id in BOXES:
            ids, scores, boxes = _detections(image_id)
            evaluator.add(image_id, ids, scores, boxes,
                          masks=np.full((len(ids), 14, 14), fill, np.float32))
        scores = evaluator.evaluate()
        assert scores['ap'] == pytest.approx(100.0)
        assert scores['mask_ap50'] == pytest.approx(expected)
        assert (scores['mask_ap'] >= 80.0) if fill else scores['mask_ap'] == 0.0


def test_metric_arguments_are_checked(ground_truth):
    with pytest.raises(ValueError, match="metric 'voc': allowed coco, voc07, voc12"):
        COCODetectionEvaluator(ground_truth, metric='voc')
    with pytest.raises(ValueError, match='mask AP is a COCO metric'):
        COCODetectionEvaluator(ground_truth, metric='voc07', masks=True)
