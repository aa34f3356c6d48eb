"""Cascade R-CNN (Cai and Vasconcelos, 2018) with FPN: three box stages after the RPN, each
labelling the boxes the previous stage refined against a higher IoU threshold (0.5, 0.6, 0.7),
regressing them class-agnostically with its own (smaller) standard deviations, and passing its
decoded boxes on without a gradient; in training each stage's pooled features pass on a third
of their gradient (Detectron2's: the trunk and FPN learn from the three stages' mean, not their
sum); at inference the class probabilities of the stages are averaged and the boxes of the last
stage kept. Boxes are corners (x1, y1, x2, y2), widths
x2 - x1, as GluonCV's encoders take them. The rules take ``F`` (mx.nd or mx.sym) so the
network that uses them hybridizes and exports."""
import functools

import mxnet as mx
from mxnet import autograd
from mxnet.gluon import nn

from .losses import box_regression_loss, classification_loss, mask_loss
from .rcnn import faster_rcnn_class, register_detector
from .rpn import rpn_losses

__all__ = ['CASCADE_STAGES', 'stage_targets', 'best_matches', 'encode_boxes', 'decode_boxes',
           'next_stage_boxes', 'average_stage_scores', 'scale_gradient', 'cascade_class']

# (IoU threshold, box standard deviations) of the three stages: Detectron's (0.1, 0.1, 0.2,
# 0.2), then halved, then a third
CASCADE_STAGES = tuple((iou, tuple(s / div for s in (0.1, 0.1, 0.2, 0.2)))
                       for iou, div in ((0.5, 1.0), (0.6, 2.0), (0.7, 3.0)))


def _columns(F, boxes):
    return [F.slice_axis(boxes, axis=-1, begin=i, end=i + 1) for i in range(4)]


def _centers(F, boxes):
    x1, y1, x2, y2 = _columns(F, boxes)
    width, height = x2 - x1, y2 - y1
    return x1 + 0.5 * width, y1 + 0.5 * height, width, height


def encode_boxes(boxes, targets, stds, F=mx.nd):
    """Regression targets of ``boxes`` towards ``targets`` (both ... x 4):
    ((tx - bx) / bw, (ty - by) / bh, log(tw / bw), log(th / bh)), each divided by its std."""
    bx, by, bw, bh = _centers(F, boxes)
    tx, ty, tw, th = _centers(F, targets)
    bw, bh = F.maximum(bw, 1e-6), F.maximum(bh, 1e-6)  # a degenerate proposal: no inf
    deltas = ((tx - bx) / bw, (ty - by) / bh, F.log(tw / bw), F.log(th / bh))
    return F.concat(*[d / s for d, s in zip(deltas, stds)], dim=-1)


def decode_boxes(boxes, deltas, stds, clip=4.135, F=mx.nd):
    """The boxes ``deltas`` (... x 4, scaled by ``stds``) move ``boxes`` to; size changes are
    clipped at exp(``clip``) (log(1000 / 16), as Detectron)."""
    dx, dy, dw, dh = (d * s for d, s in zip(_columns(F, deltas), stds))
    bx, by, bw, bh = _centers(F, boxes)
    cx, cy = bx + dx * bw, by + dy * bh
    w, h = bw * F.exp(F.minimum(dw, clip)), bh * F.exp(F.minimum(dh, clip))
    return F.concat(cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h, dim=-1)


def best_matches(rois, gt_boxes, gt_labels):
    """(index N, IoU N) of the ground-truth box each RoI overlaps most; rows of -1 (padding)
    match nothing (IoU -1)."""
    iou = mx.nd.contrib.box_iou(rois, gt_boxes, format='corner')
    iou = mx.nd.where(mx.nd.broadcast_like((gt_labels >= 0).reshape((1, -1)), iou), iou,
                      mx.nd.zeros_like(iou) - 1)
    return iou.argmax(axis=1), iou.max(axis=1)


def stage_targets(rois, gt_boxes, gt_labels, iou_threshold, stds):
    """(class targets N, box targets N x 4, box masks N x 4) of one stage: each RoI is matched
    to the ground-truth box it overlaps most; with IoU >= ``iou_threshold`` it is foreground
    (its class + 1) and regresses towards that box (class-agnostic, ``stds``), else background
    (0) with a zero mask. Ground-truth rows of -1 (padding) match nothing."""
    best, overlap = best_matches(rois, gt_boxes, gt_labels)
    foreground = overlap >= iou_threshold
    fg = mx.nd.broadcast_to(foreground.reshape((-1, 1)), (rois.shape[0], 4))
    matched = mx.nd.where(fg, gt_boxes.take(best), rois)  # background: a zero delta, no NaN
    labels = (gt_labels.take(best) + 1) * foreground
    return labels, encode_boxes(rois, matched, stds) * fg, fg


def next_stage_boxes(rois, deltas, stds, F=mx.nd):
    """A stage's decoded boxes as the next stage's RoIs: no gradient flows back through them."""
    return F.stop_gradient(decode_boxes(F.stop_gradient(rois), deltas, stds, F=F))


def scale_gradient(x, scale, F=mx.nd):
    """``x`` unchanged forward (exactly: x + scale * 0); backward, its gradient times
    ``scale``."""
    fixed = F.stop_gradient(x)
    return fixed + scale * (x - fixed)


def average_stage_scores(stage_probabilities, F=mx.nd):
    """Inference: the class probabilities of every stage's classifier, averaged."""
    return F.add_n(*stage_probabilities) / len(stage_probabilities)


class CascadeStage(nn.HybridBlock):
    """A later stage's box head, classifier and class-agnostic regressor."""

    def __init__(self, head, classes, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.box_features = head
            self.class_predictor = nn.Dense(classes + 1,
                                            weight_initializer=mx.init.Normal(0.01))
            self.box_predictor = nn.Dense(4, weight_initializer=mx.init.Normal(0.001))


@functools.lru_cache(maxsize=None)
def cascade_class():
    """The Cascade R-CNN class built on GluonCV's FasterRCNN (faster_rcnn_class): its RPN,
    sampler (stage 1's RoIs, ground truth included), pyramid RoI pooling and first box head;
    its box predictor made class-agnostic; two more stages."""

    class CascadeRCNN(faster_rcnn_class()):
        def __init__(self, box_head, mask_head=None, rcnn_max_dets=100, **kwargs):
            super().__init__(box_features=box_head(), **kwargs)
            with self.name_scope():
                self.box_predictor = nn.Dense(4, weight_initializer=mx.init.Normal(0.001))
                self.stage2 = CascadeStage(box_head(), self.num_class)
                self.stage3 = CascadeStage(box_head(), self.num_class)
                # Cascade Mask R-CNN: the mask head, trained on the first stage's positives
                # (Detectron2's) and run on the last stage's detections
                self.mask = mask_head
                if mask_head is not None:
                    from gluoncv.model_zoo.rcnn.mask_rcnn.rcnn_target import \
                        MaskTargetGenerator
                    self.mask_target = MaskTargetGenerator(
                        self._batch_size, self._num_sample, self.num_class,
                        tuple(2 * s for s in self._roi_size))
            self._mask_dets = min(rcnn_max_dets, self._rpn_test_post_nms * self.num_class)
            from gluoncv.nn.bbox import BBoxClipToImage
            self.clip_to_image = BBoxClipToImage()

        def prepare_training(self):
            """Nothing: the stages label their boxes themselves."""

        def stages(self):
            return [(self.box_features, self.class_predictor, self.box_predictor),
                    (self.stage2.box_features, self.stage2.class_predictor,
                     self.stage2.box_predictor),
                    (self.stage3.box_features, self.stage3.class_predictor,
                     self.stage3.box_predictor)]

        def run_stages(self, F, x, feat, boxes, training):
            """Each stage's (input boxes B x N x 4, class logits B x N x C + 1, box deltas
            B x N x 4) and the first stage's pooled features, from the RPN's (training: the
            sampler's) ``boxes``."""
            batch = self._batch_size if training else 1
            count = self._num_sample if training else self._rpn_test_post_nms
            batch_ids = F.repeat(F.arange(0, batch), count).reshape((-1, 1))
            outputs, first_pooled = [], None
            for (head, classify, regress), (_, stds) in zip(self.stages(), CASCADE_STAGES):
                boxes = F.stop_gradient(boxes)
                rois = F.concat(batch_ids, boxes.reshape((-1, 4)), dim=-1)
                pooled = self._pyramid_roi_feats(F, feat, rois, self._roi_size, self._strides,
                                                 roi_mode=self._roi_mode)
                first_pooled = pooled if first_pooled is None else first_pooled
                if training:
                    pooled = scale_gradient(pooled, 1.0 / len(CASCADE_STAGES), F=F)
                features = head(pooled)
                logits = classify(features).reshape((batch, count, self.num_class + 1))
                deltas = regress(features).reshape((batch, count, 4))
                outputs.append((boxes, logits, deltas))
                boxes = self.clip_to_image(next_stage_boxes(boxes, deltas, stds, F=F), x)
            return outputs, first_pooled, boxes

        def losses(self, x, targets):
            """The RPN's losses, each stage's classification and class-agnostic box losses
            (labels by :func:`stage_targets` at the stage's IoU; Detectron2's weights: the
            stages count alike) and, with a mask head, the mask loss."""
            feat = self.features(x)
            rpn_score, rpn_box, raw_rpn_score, raw_rpn_box, anchors = \
                self.rpn(mx.nd.zeros_like(x), *feat)
            boxes, _, _ = self.sampler(rpn_box, rpn_score, targets.boxes)
            stages, first_pooled, _ = self.run_stages(mx.nd, x, feat, boxes, training=True)
            losses = rpn_losses(raw_rpn_score, raw_rpn_box, anchors, targets)
            for stage, ((boxes, logits, deltas), (iou, stds)) in enumerate(
                    zip(stages, CASCADE_STAGES)):
                with autograd.pause():
                    labels, box_targets, box_masks = (mx.nd.stack(*parts) for parts in zip(*[
                        stage_targets(boxes[i], targets.boxes[i],
                                      targets.labels[i].reshape((-1,)), iou, stds)
                        for i in range(boxes.shape[0])]))
                cls, valid = classification_loss(logits, labels)
                losses['stage%d_cls' % (stage + 1)] = cls
                losses['stage%d_box' % (stage + 1)] = box_regression_loss(
                    deltas, box_targets, box_masks, valid)
            if self.mask is not None:
                losses['mask'] = self._mask_loss(stages[0][0], first_pooled, targets)
            return losses

        def _mask_loss(self, boxes, pooled, targets, positive_ratio=0.25):
            """Cascade Mask R-CNN's mask loss on the first stage's positives (IoU >= 0.5,
            Detectron2's choice): a quarter of each image's RoIs, positives first (GluonCV's
            count), their pooled features through the mask head."""
            images, count = boxes.shape[:2]
            keep = max(1, int(count * positive_ratio))
            with autograd.pause():
                rows, labels, matches = [], [], []
                for i in range(images):
                    gt_labels = targets.labels[i].reshape((-1,))
                    best, overlap = best_matches(boxes[i], targets.boxes[i], gt_labels)
                    foreground = overlap >= CASCADE_STAGES[0][0]
                    order = mx.nd.argsort(foreground, is_ascend=False)[:keep]
                    rows.append(order + i * count)
                    labels.append(((gt_labels.take(best) + 1) * foreground).take(order))
                    matches.append(best.take(order))
                rows = mx.nd.concat(*rows, dim=0)
                chosen = boxes.reshape((-1, 4)).take(rows).reshape((images, keep, 4))
                mask_t, mask_m = self.mask_target(chosen, targets.masks, mx.nd.stack(*matches),
                                                  mx.nd.stack(*labels))
            return mask_loss(self.mask(pooled.take(rows)), mask_t, mask_m)

        def hybrid_forward(self, F, x, gt_box=None, gt_label=None):
            """Inference: GluonCV's (class ids, scores, boxes) after per-class NMS, the
            last stage's boxes scored by the stages' average (and each detection's mask of
            its class with a mask head). Training goes through :meth:`losses`."""
            if autograd.is_training():
                raise ValueError('Cascade R-CNN trains through net(images, targets)')
            feat = self.features(x)
            _, boxes = self.rpn(F.zeros_like(x), *feat)
            stages, _, boxes = self.run_stages(F, x, feat, boxes, training=False)
            probabilities = [F.softmax(logits, axis=-1) for _, logits, _ in stages]
            # the last stage's boxes (clipped, as above), every class scored by the average
            scores = F.slice_axis(average_stage_scores(probabilities, F=F), axis=-1, begin=1,
                                  end=None)
            ids = F.broadcast_like(F.arange(0, self.num_class).reshape((1, 1, -1)), scores)
            boxes = F.repeat(F.stop_gradient(boxes), repeats=self.num_class, axis=1)
            result = F.contrib.box_nms(
                F.concat(ids.reshape((1, -1, 1)), scores.reshape((1, -1, 1)), boxes, dim=-1),
                overlap_thresh=self.nms_thresh, topk=self.nms_topk, valid_thresh=0.0001,
                id_index=0, score_index=1, coord_start=2, force_suppress=False)
            if self.mask is not None:  # NMS sorted by score: the best detections first
                result = F.slice_axis(result, axis=1, begin=0, end=self._mask_dets)
            ids = F.slice_axis(result, axis=-1, begin=0, end=1)
            scores = F.slice_axis(result, axis=-1, begin=1, end=2)
            boxes = F.slice_axis(result, axis=-1, begin=2, end=6)
            if self.mask is None:
                return ids, scores, boxes
            rois = F.concat(F.zeros_like(ids).reshape((-1, 1)), boxes.reshape((-1, 4)), dim=-1)
            pooled = self._pyramid_roi_feats(F, feat, F.stop_gradient(rois), self._roi_size,
                                             self._strides, roi_mode=self._roi_mode)
            # each detection's mask of its own class: (1, K, C, M, M) -> (1, K, M, M)
            logits = self.mask(pooled)
            count = F.arange(0, self._mask_dets)
            picked = F.gather_nd(logits, F.stack(F.zeros_like(count), count,
                                                 F.clip(ids.reshape((-1,)), 0,
                                                        self.num_class - 1),
                                                 axis=0))
            return ids, scores, boxes, F.sigmoid(picked).expand_dims(0)

    CascadeRCNN.__module__ = __name__
    return CascadeRCNN


def _cascade(box_head, norm_layer, norm_kwargs, mask=False, **parts):
    mask_settings = {key: parts.pop(key) for key in
                     ('mask_channels', 'rcnn_max_dets', 'target_roi_scale', 'num_fcn_convs')
                     if key in parts}
    head = None
    if mask:
        from .heads import mask_head
        head = mask_head(parts['per_device_batch_size'], parts['classes'],
                         mask_settings['mask_channels'], mask_settings['num_fcn_convs'])
    return cascade_class()(box_head=box_head, mask_head=head,
                           rcnn_max_dets=mask_settings.get('rcnn_max_dets', 100), **parts)


register_detector('cascade_rcnn_fpn')(functools.partial(_cascade, mask=False))
register_detector('cascade_mask_rcnn_fpn', masks=True)(functools.partial(_cascade, mask=True))
