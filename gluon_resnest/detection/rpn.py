"""The region proposal network's training targets and losses: GluonCV's anchor targets (256
anchors sampled per image, positives at IoU >= 0.7, negatives below 0.3, at most half
positive), made from the anchors the network itself returns, each image's against its own size;
objectness by sigmoid cross-entropy, box regression by smooth L1 (beta 1/9)."""
import functools

import mxnet as mx
import numpy as np

from .losses import per_image_mean, sigmoid_cross_entropy, smooth_l1

__all__ = ['rpn_target_generator', 'anchor_targets', 'rpn_losses']


@functools.lru_cache(maxsize=None)
def rpn_target_generator():
    """GluonCV's RPN target generator with its FasterRCNNDefaultTrainTransform's settings (it
    keeps no state: one serves every detector). Its sampling draws from NumPy's global
    generator, which the data pipeline seeds per image."""
    from gluoncv.model_zoo.rcnn.rpn.rpn_target import RPNTargetGenerator
    return RPNTargetGenerator(num_sample=256, pos_iou_thresh=0.7, neg_iou_thresh=0.3,
                              pos_ratio=0.5)


def anchor_targets(boxes, anchors, size, ctx):
    """(class targets, box targets, box masks) of one image whose ground-truth corners are
    ``boxes`` (rows of -1 are padding) against ``anchors``; anchors crossing the image's own
    border (``size``: height, width; not the batch's padding) are ignored; an image without
    objects gets sampled negatives only."""
    real = boxes[boxes[:, 0] >= 0] if len(boxes) else boxes
    empty = len(real) == 0
    stand_in = -np.ones((1, 4), np.float32)
    with np.errstate(divide='ignore', invalid='ignore'):  # the stand-in box has no size
        cls_t, box_t, box_m = (mx.nd.array(np.asarray(t), ctx=ctx) for t in rpn_target_generator()(
            mx.nd.array(stand_in if empty else real), anchors, size[1], size[0]))
    if empty:  # the stand-in box's best anchor became a positive: make it a negative
        cls_t = mx.nd.where(cls_t > 0, mx.nd.zeros_like(cls_t), cls_t)
        box_t, box_m = mx.nd.zeros_like(box_t), mx.nd.zeros_like(box_m)
    return cls_t, box_t, box_m


def rpn_losses(raw_scores, raw_boxes, anchors, targets):
    """{'rpn_cls', 'rpn_box'}: each image's objectness and box losses, from the RPN's raw
    outputs over every level's ``anchors`` (the network's own) and the batch's ``targets``
    (DetectionTargets)."""
    ctx = targets.boxes.context
    anchors = mx.nd.concat(*[a.reshape((-1, 4)) for a in anchors], dim=0).as_in_context(
        mx.cpu())
    boxes = targets.boxes.asnumpy()
    made = [anchor_targets(boxes[i], anchors, size, ctx) for i, size in enumerate(targets.sizes)]
    cls_t, box_t, box_m = (mx.nd.stack(*parts) for parts in zip(*made))
    valid = cls_t >= 0
    objectness = sigmoid_cross_entropy(raw_scores.reshape((0, -1)), cls_t) * valid
    return dict(rpn_cls=per_image_mean(objectness, valid),
                rpn_box=per_image_mean(smooth_l1(raw_boxes, box_t, box_m, 1.0 / 9), valid))
