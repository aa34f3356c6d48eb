"""Cascade R-CNN's per-stage rules (Cai and Vasconcelos, 2018): each stage samples the boxes
the previous stage refined against a higher IoU threshold, regresses them class-agnostically
with its own (smaller) standard deviations, and passes its decoded boxes on without a
gradient; at inference the class scores of the stages are averaged and the boxes of the last
stage kept. These are the pieces a cascade head is built from; the head itself is not built
yet. Boxes are corners (x1, y1, x2, y2), widths x2 - x1, as GluonCV's encoders take them."""
import mxnet as mx

__all__ = ['CASCADE_STAGES', 'stage_targets', 'encode_boxes', 'decode_boxes', 'next_stage_boxes',
           'average_stage_scores']

# (IoU threshold, box standard deviations) of the three stages: Detectron's (0.1, 0.1, 0.2,
# 0.2), then halved, then a third
CASCADE_STAGES = tuple((iou, tuple(s / div for s in (0.1, 0.1, 0.2, 0.2)))
                       for iou, div in ((0.5, 1.0), (0.6, 2.0), (0.7, 3.0)))


def _centers(boxes):
    x1, y1, x2, y2 = (boxes.slice_axis(axis=-1, begin=i, end=i + 1) for i in range(4))
    width, height = x2 - x1, y2 - y1
    return x1 + 0.5 * width, y1 + 0.5 * height, width, height


def encode_boxes(boxes, targets, stds):
    """Regression targets of ``boxes`` towards ``targets`` (both N x 4):
    ((tx - bx) / bw, (ty - by) / bh, log(tw / bw), log(th / bh)), each divided by its std."""
    bx, by, bw, bh = _centers(boxes)
    tx, ty, tw, th = _centers(targets)
    deltas = mx.nd.concat((tx - bx) / bw, (ty - by) / bh, mx.nd.log(tw / bw),
                          mx.nd.log(th / bh), dim=-1)
    return deltas / mx.nd.array(stds, ctx=boxes.context)


def decode_boxes(boxes, deltas, stds, clip=4.135):
    """The boxes ``deltas`` (N x 4, scaled by ``stds``) move ``boxes`` to; size changes are
    clipped at exp(``clip``) (log(1000 / 16), as Detectron)."""
    deltas = deltas * mx.nd.array(stds, ctx=deltas.context)
    bx, by, bw, bh = _centers(boxes)
    dx, dy, dw, dh = (deltas.slice_axis(axis=-1, begin=i, end=i + 1) for i in range(4))
    cx, cy = bx + dx * bw, by + dy * bh
    w, h = bw * mx.nd.exp(mx.nd.minimum(dw, clip)), bh * mx.nd.exp(mx.nd.minimum(dh, clip))
    return mx.nd.concat(cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h, dim=-1)


def stage_targets(rois, gt_boxes, gt_labels, iou_threshold, stds):
    """(class targets N, box targets N x 4, box masks N x 4) of one stage: each RoI is matched
    to the ground-truth box it overlaps most; with IoU >= ``iou_threshold`` it is foreground
    (its class + 1) and regresses towards that box (class-agnostic, ``stds``), else background
    (0) with a zero mask."""
    iou = mx.nd.contrib.box_iou(rois, gt_boxes, format='corner')
    best = iou.argmax(axis=1)
    foreground = iou.max(axis=1) >= iou_threshold
    matched = gt_boxes.take(best)
    labels = (gt_labels.take(best) + 1) * foreground
    masks = mx.nd.broadcast_to(foreground.reshape((-1, 1)), (rois.shape[0], 4))
    return labels, encode_boxes(rois, matched, stds) * masks, masks


def next_stage_boxes(rois, deltas, stds):
    """A stage's decoded boxes as the next stage's RoIs: no gradient flows back through them."""
    return mx.nd.stop_gradient(decode_boxes(mx.nd.stop_gradient(rois), deltas, stds))


def average_stage_scores(stage_probabilities):
    """Inference: the class probabilities of every stage's classifier, averaged."""
    return mx.nd.add_n(*stage_probabilities) / len(stage_probabilities)
