"""COCO box AP of a detector through pycocotools, as an engine Evaluator: detections are kept
in the original image's coordinates and keyed by the dataset's own image ids, gathered from
every rank exactly (GluonCV's COCO metric numbers images by a running counter, which sharded
evaluation breaks), and optionally written as a COCO results JSON."""
import json

import numpy as np

from ..engine.task import Evaluator

__all__ = ['COCODetectionEvaluator', 'COCO_STATS', 'coco_box_results']

# pycocotools' summary, in its order: AP over IoU 0.5:0.95, at 0.5, at 0.75, and by object area
COCO_STATS = ('ap', 'ap50', 'ap75', 'ap_small', 'ap_medium', 'ap_large')


def coco_box_results(image_id, ids, scores, boxes, scale, category_ids, min_score=0.0):
    """COCO result entries of one image's detections: GluonCV's (class ids, scores, corner
    boxes) of the resized image, ``scale`` the resize factor, ``category_ids[k]`` the dataset's
    category id of class index k; invalid entries (class id < 0) and scores below
    ``min_score`` are left out."""
    ids, scores, boxes = (np.asarray(v).reshape(-1, n) for v, n in ((ids, 1), (scores, 1),
                                                                    (boxes, 4)))
    results = []
    for (k,), (score,), (x1, y1, x2, y2) in zip(ids, scores, boxes / float(scale)):
        if k < 0 or score < min_score:
            continue
        results.append(dict(image_id=int(image_id), category_id=int(category_ids[int(k)]),
                            bbox=[round(float(x1), 3), round(float(y1), 3),
                                  round(float(x2 - x1), 3), round(float(y2 - y1), 3)],
                            score=round(float(score), 5)))
    return results


class COCODetectionEvaluator(Evaluator):
    """Box AP (%) on a COCO-format ground truth.

    annotations : path of the ground truth JSON (``instances_<split>.json`` or a custom one)
    category_ids : the dataset's category id of each class index (default: the file's, sorted)
    results_path : where :meth:`evaluate` writes the gathered COCO results JSON (None: nowhere)

    ``process(net, (data, image_ids, scales))`` runs ``net`` on a batch of one image and keeps
    its detections; ``add`` takes detections computed elsewhere."""

    def __init__(self, annotations, ctx=None, category_ids=None, results_path=None):
        from pycocotools.coco import COCO
        import contextlib
        import io
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints as it loads
            self.coco = COCO(annotations)
        self.category_ids = list(category_ids or sorted(self.coco.getCatIds()))
        self.ctx, self.results_path = ctx, results_path
        self.reset()

    def reset(self):
        self.results, self.image_ids = [], []

    def add(self, image_id, ids, scores, boxes, scale=1.0):
        if int(image_id) not in self.coco.imgs:
            raise ValueError('image id %r is not in the ground truth' % (image_id,))
        self.image_ids.append(int(image_id))
        self.results += coco_box_results(image_id, ids, scores, boxes, scale,
                                         self.category_ids)

    def process(self, net, batch):
        data, image_ids, scales = batch
        if self.ctx is not None:
            data = data.as_in_context(self.ctx)
        ids, scores, boxes = net(data)[:3]
        for i, image_id in enumerate(np.asarray(image_ids).ravel()):
            self.add(image_id, ids[i].asnumpy(), scores[i].asnumpy(), boxes[i].asnumpy(),
                     float(np.asarray(scales).ravel()[i]))

    def evaluate(self, comm=None):
        """{'ap', 'ap50', 'ap75', 'ap_small', 'ap_medium', 'ap_large'} in % (None for an area
        range without ground truth), over the images every rank processed (each counted once),
        and ``images``, ``detections``."""
        results, image_ids = self.results, self.image_ids
        if comm is not None:
            shares = comm.gather((results, image_ids), 'coco_detections')
            results = [r for share, _ in shares for r in share]
            image_ids = [i for _, share in shares for i in share]
        image_ids = sorted(set(image_ids))
        results.sort(key=lambda r: (r['image_id'], -r['score'], r['category_id'], r['bbox']))
        if self.results_path and (comm is None or comm.rank == 0):
            from ..engine.checkpoint import write_text
            write_text(self.results_path, json.dumps(results))
        scores = dict(images=len(image_ids), detections=len(results))
        if not results:
            return dict(scores, **{name: 0.0 for name in COCO_STATS})
        import contextlib
        import io
        from pycocotools.cocoeval import COCOeval
        with contextlib.redirect_stdout(io.StringIO()):
            found = self.coco.loadRes(results)
            run = COCOeval(self.coco, found, 'bbox')
            run.params.imgIds = image_ids
            run.evaluate()
            run.accumulate()
            run.summarize()
        # pycocotools' -1: no ground truth in that area range
        return dict(scores, **{name: None if v < 0 else 100.0 * float(v)
                               for name, v in zip(COCO_STATS, run.stats)})
