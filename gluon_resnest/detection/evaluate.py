"""Detection metrics as an engine Evaluator: COCO box and mask AP through pycocotools, and
Pascal VOC's mAP (VOC07's 11 points or VOC12's area) through GluonCV's metric. Detections are
kept in the original image's coordinates and keyed by the dataset's own image ids, gathered
from every rank exactly (GluonCV's COCO metric numbers images by a running counter, which
sharded evaluation breaks), and optionally written as a COCO results JSON."""
import json

import mxnet as mx
import numpy as np

from ..engine.data import make_loader
from ..engine.distributed import Comm, device
from ..engine.loop import run_evaluator
from ..engine.progress import validation_bar
from ..engine.task import Evaluator
from ..zoo.registry import get_model_info
from .data import DetectionEvalTransform, check_image_sizes

__all__ = ['COCODetectionEvaluator', 'COCO_STATS', 'coco_box_results', 'METRICS',
           'MASKS_PER_IMAGE', 'evaluate_detection', 'eval_batch']

METRICS = ('coco', 'voc07', 'voc12')
# masks are pasted and scored for the best detections of each image only (Detectron's 100
# per image; COCO's evaluation reads at most 100 per image and category)
MASKS_PER_IMAGE = 100

# pycocotools' summary, in its order: AP over IoU 0.5:0.95, at 0.5, at 0.75, and by object area
COCO_STATS = ('ap', 'ap50', 'ap75', 'ap_small', 'ap_medium', 'ap_large')
# the object areas (px) each of them scores: pycocotools' ranges
COCO_AREAS = ((0, 1e10),) * 3 + ((0, 32 ** 2), (32 ** 2, 96 ** 2), (96 ** 2, 1e10))


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
    """Box (and mask) AP (%) on a COCO-format ground truth, or VOC's mAP.

    annotations : the ground truth: a COCO-format JSON file (``instances_<split>.json`` or a
        custom one) or its dict (a dataset's ``ground_truth``)
    category_ids : the dataset's category id of each class index (default: the file's, sorted)
    results_path : where :meth:`evaluate` writes the gathered COCO results JSON (None: nowhere)
    masks : also score the instance masks (Mask R-CNN's fourth output)
    metric : 'coco' (AP over IoU 0.5:0.95, AP50, AP75, by area) or 'voc07' / 'voc12' (mAP at
        IoU 0.5; ``iscrowd`` marks VOC's difficult objects)

    ``process(net, (data, image_ids, scales))`` runs ``net`` on a batch of one image and keeps
    its detections; ``add`` takes detections computed elsewhere."""

    def __init__(self, annotations, ctx=None, category_ids=None, results_path=None,
                 masks=False, metric='coco'):
        from pycocotools.coco import COCO
        import contextlib
        import io
        if metric not in METRICS:
            raise ValueError('metric %r: allowed %s' % (metric, ', '.join(METRICS)))
        if masks and metric != 'coco':
            raise ValueError('mask AP is a COCO metric: pass metric="coco" with masks')
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints as it loads
            if isinstance(annotations, dict):
                self.coco = COCO()
                self.coco.dataset = annotations
                self.coco.createIndex()
            else:
                self.coco = COCO(annotations)
        self.category_ids = list(category_ids or sorted(self.coco.getCatIds()))
        self.ctx, self.results_path = ctx, results_path
        self.masks, self.metric = masks, metric
        self.reset()

    def reset(self):
        self.results, self.image_ids = [], []

    def add(self, image_id, ids, scores, boxes, scale=1.0, masks=None):
        """One image's detections: GluonCV's (class ids, scores, corner boxes) of the image
        resized by ``scale`` and, with ``masks``, each detection's mask probabilities (M x M,
        in its box)."""
        if int(image_id) not in self.coco.imgs:
            raise ValueError('image id %r is not in the ground truth' % (image_id,))
        self.image_ids.append(int(image_id))
        results = coco_box_results(image_id, ids, scores, boxes, scale, self.category_ids)
        if self.masks:
            results = results[:MASKS_PER_IMAGE]  # GluonCV's outputs come sorted by score
            self._add_masks(results, np.asarray(ids).ravel(), masks)
        self.results += results

    def _add_masks(self, results, ids, masks):
        from gluoncv.data.transforms.mask import fill
        from pycocotools import mask as mask_utils
        if not results:
            return
        image = self.coco.imgs[results[0]['image_id']]
        boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (r['bbox'] for r in results)],
                         np.float32)
        kept = np.asarray(masks)[ids >= 0][:len(results)]
        for result, mask in zip(results, fill(kept, boxes, (image['width'], image['height']))):
            rle = mask_utils.encode(np.asfortranarray(mask))
            rle['counts'] = rle['counts'].decode('ascii')
            result['segmentation'] = rle

    def process(self, net, batch):
        data, image_ids, scales = batch
        if self.ctx is not None:
            data = data.as_in_context(self.ctx)
        outputs = net(data)
        scales = np.asarray(scales).ravel()
        for i, image_id in enumerate(np.asarray(image_ids).ravel()):
            self.add(image_id, *(out[i].asnumpy() for out in outputs[:3]), scale=float(scales[i]),
                     masks=outputs[3][i].asnumpy() if self.masks else None)

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
        if self.metric != 'coco':
            return dict(scores, **self._voc(results, image_ids))
        scores.update(self._coco(results, image_ids, 'bbox', ''))
        if self.masks:
            scores.update(self._coco(results, image_ids, 'segm', 'mask_'))
        return scores

    def _coco(self, results, image_ids, kind, prefix):
        """pycocotools' summary of ``kind`` ('bbox' or 'segm') as {prefix + stat: %}."""
        if not results:  # pycocotools refuses none; what it would give: 0, or None by area
            return {prefix + name: 0.0 if self._has_objects(image_ids, area) else None
                    for name, area in zip(COCO_STATS, COCO_AREAS)}
        import contextlib
        import io
        from pycocotools.cocoeval import COCOeval
        with contextlib.redirect_stdout(io.StringIO()):
            found = self.coco.loadRes(results)
            run = COCOeval(self.coco, found, kind)
            run.params.imgIds = image_ids
            run.evaluate()
            run.accumulate()
            run.summarize()
        # pycocotools' -1: no ground truth in that area range
        return {prefix + name: None if v < 0 else 100.0 * float(v)
                for name, v in zip(COCO_STATS, run.stats)}

    def _has_objects(self, image_ids, area):
        """Whether the images hold a non-crowd object of COCO's ``area`` range (pixels)."""
        low, high = area
        return any(not a.get('iscrowd', 0) and low <= a.get('area', 0) <= high
                   for i in image_ids for a in self.coco.imgToAnns.get(i, []))

    def _voc(self, results, image_ids):
        """{'map': %, 'ap_<class>': %} at IoU 0.5 by GluonCV's VOC metric (VOC07: 11-point
        interpolation; VOC12: the area under the curve)."""
        from gluoncv.utils.metrics.voc_detection import VOC07MApMetric, VOCMApMetric
        names = [self.coco.cats[c]['name'] for c in self.category_ids]
        metric = (VOC07MApMetric if self.metric == 'voc07' else VOCMApMetric)(
            iou_thresh=0.5, class_names=names)
        index = {c: k for k, c in enumerate(self.category_ids)}
        found = {}
        for r in results:
            found.setdefault(r['image_id'], []).append(r)

        def corners(entries):
            return np.array([[x, y, x + w, y + h] for x, y, w, h in
                             (e['bbox'] for e in entries)], np.float32).reshape(1, -1, 4)

        for image_id in image_ids:
            dets, gts = found.get(image_id, []), self.coco.imgToAnns.get(image_id, [])
            metric.update(corners(dets), np.array([[index[d['category_id']] for d in dets]]),
                          np.array([[d['score'] for d in dets]]), corners(gts),
                          np.array([[index[g['category_id']] for g in gts]]),
                          np.array([[g.get('iscrowd', 0) for g in gts]]))
        labels, values = metric.get()
        return dict({'ap_' + n: 100.0 * v for n, v in zip(labels[:-1], values[:-1])},
                    map=100.0 * values[-1])


def eval_batch(samples):
    """(N x 3 x H x W images, image ids, resize factors) of a validation batch (one image, as
    the loaders give it: images differ in size)."""
    images, image_ids, scales = zip(*samples)
    return mx.nd.array(np.stack(images)), np.array(image_ids), np.array(scales, np.float32)


def evaluate_detection(net, dataset, ctx=None, backbone='resnest50', short=800, max_size=1333,
                       metric='coco', masks=False, comm=None, results_path=None, progress=False):
    """Box (and mask) AP, or VOC mAP, of ``net`` (on trunk ``backbone``, whose normalization
    the images get) on a detection dataset (its ground truth), images resized to ``short``
    (long side at most ``max_size``); under Horovod (``comm``, default: this process's ranks)
    each rank runs its shard and the detections are gathered exactly. ``results_path``: the
    COCO results JSON, written by rank 0. Image sizes the detector cannot take are an error
    before anything runs."""
    check_image_sizes(dataset, (short, short), max_size, *net.image_size_limits())
    info = get_model_info(backbone)
    comm = comm or Comm()
    ctx = ctx or device(comm.local_rank)
    loader, _ = make_loader(dataset, DetectionEvalTransform(short, max_size, info.mean,
                                                            info.std),
                            1, comm.rank, comm.size, train=False, workers=0, joint=True,
                            batchify=eval_batch)
    comm.start()
    evaluator = COCODetectionEvaluator(dataset.ground_truth, ctx, dataset.category_ids,
                                       results_path, masks=masks, metric=metric)
    return run_evaluator(evaluator, net, loader, comm,
                         validation_bar(progress, comm, loader, 'evaluating'))
