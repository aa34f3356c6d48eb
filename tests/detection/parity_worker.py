"""Run in a fresh process (GluonCV's parameter names are then those of its published files):
build GluonCV's faster_rcnn_fpn_syncbn_<backbone>_coco with random weights and non-trivial BN
statistics, save it, load the file into ours, and print one JSON line comparing the two
models' detections on images of three sizes."""
import json
import os
import sys

sys.path[:0] = [os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'),
                os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..')]

import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402

from helpers import randomize  # noqa: E402

SIZES = ((96, 128), (128, 96), (160, 160))


def top_detections(result, k=100):
    """The ``k`` highest-scoring valid detections (class id >= 0) of image 0, by score."""
    ids, scores, boxes = (v[0].asnumpy() for v in result)
    keep = ids[:, 0] >= 0
    order = np.argsort(-scores[keep][:, 0], kind='stable')[:k]
    return ids[keep][order], scores[keep][order], boxes[keep][order], int(keep.sum())


def matched_fraction(expected, got, score_tol=1e-4, box_tol=0.05):
    """The fraction of ``expected``'s top detections (from :func:`top_detections`) that ``got``
    has too: the same class, score within ``score_tol``, box within ``box_tol`` px. Kernels'
    last bits (MXNet's threaded engine) can move a detection across an NMS threshold, so two
    equal networks agree on nearly all detections, not always on every one."""
    found = 0
    for k, score, box in zip(*expected[:3]):
        same = ((got[0][:, 0] == k[0]) & (np.abs(got[1][:, 0] - score[0]) <= score_tol)
                & (np.abs(got[2] - box).max(axis=1) <= box_tol))
        found += bool(same.any())
    return found / max(len(expected[0]), 1)


def random_detector(net, seed):
    """Random weights and BN statistics for an initialized R-CNN (its anchors, constants, kept),
    with small box deltas (boxes near the anchors and proposals) and peaked class scores: the
    detections are then boxes of image size with distinct scores, not near-ties that the last
    bits of a kernel can reorder."""
    anchors = {key: p.data().copy() for key, p in net._collect_params_with_prefix().items()
               if key.endswith('.anchors')}
    randomize(net, seed=seed)
    for key, p in net._collect_params_with_prefix().items():
        if key in anchors:
            p.set_data(anchors[key])
    for block, scale in ((net.rpn.rpn_head.loc, 0.05), (net.box_predictor, 0.05),
                         (net.class_predictor, 6.0)):
        for p in block.collect_params().values():
            p.set_data(p.data() * scale)


def main(backbone, path):
    from gluoncv.model_zoo.rcnn.faster_rcnn import predefined_models
    theirs = getattr(predefined_models, 'faster_rcnn_fpn_syncbn_%s_coco' % backbone)(
        pretrained=False, pretrained_base=False)
    theirs.initialize()
    theirs(mx.nd.zeros((1, 3, 64, 64)))  # shapes inferred
    random_detector(theirs, seed=3)
    theirs.target_generator  # adds the two _target_generator keys its files carry
    theirs.save_parameters(path)
    file_keys = len(mx.nd.load(path))
    from gluon_resnest.detection import get_detection_model
    ours = get_detection_model('faster_rcnn_fpn', backbone=backbone, pretrained=path)
    rng = np.random.RandomState(0)
    results = []
    for height, width in SIZES:
        x = mx.nd.array(rng.uniform(-2, 2, (1, 3, height, width)))
        a, b = top_detections(theirs(x)), top_detections(ours(x))
        widths = a[2][:, 2] - a[2][:, 0]
        results.append(dict(size=[height, width], detections=[a[3], b[3]],
                            matched=matched_fraction(a, top_detections(ours(x), k=200)),
                            ids_equal=bool((a[0] == b[0]).all()),
                            score_diff=float(np.abs(a[1] - b[1]).max()),
                            box_diff=float(np.abs(a[2] - b[2]).max()),
                            median_box_width=float(np.median(widths)),
                            top_score=float(a[1][0, 0])))
    print(json.dumps(dict(backbone=backbone, file_keys=file_keys,
                          model_params=len(ours._collect_params_with_prefix()),
                          sizes=results)))


if __name__ == '__main__':
    main(sys.argv[1], sys.argv[2])
