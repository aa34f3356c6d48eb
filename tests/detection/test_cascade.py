"""Cascade R-CNN's per-stage rules against a NumPy statement of the paper's (Cai and
Vasconcelos, 2018, Sec. 4): labels by IoU threshold per stage, class-agnostic targets scaled by
each stage's standard deviations, decoding, no gradient between stages, averaged scores."""
import mxnet as mx
import numpy as np
import pytest

from gluon_resnest.detection.cascade import (CASCADE_STAGES, average_stage_scores,
                                             decode_boxes, encode_boxes, next_stage_boxes,
                                             stage_targets)


def _iou(a, b):
    x1, y1 = np.maximum(a[0], b[0]), np.maximum(a[1], b[1])
    x2, y2 = np.minimum(a[2], b[2]), np.minimum(a[3], b[3])
    inter = max(x2 - x1, 0) * max(y2 - y1, 0)
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def _reference_targets(rois, gts, labels, threshold, stds):
    """Label y = class of the best-overlapping ground truth g if IoU >= u, else 0; target
    ((gx - bx) / bw, (gy - by) / bh, log(gw / bw), log(gh / bh)) / sigma for foreground."""
    out_labels, out_targets = [], []
    for roi in rois:
        ious = [_iou(roi, g) for g in gts]
        k = int(np.argmax(ious))
        if ious[k] >= threshold:
            g = gts[k]
            bw, bh, gw, gh = roi[2] - roi[0], roi[3] - roi[1], g[2] - g[0], g[3] - g[1]
            bx, by, gx, gy = roi[0] + bw / 2, roi[1] + bh / 2, g[0] + gw / 2, g[1] + gh / 2
            out_labels.append(labels[k] + 1)
            out_targets.append(np.array([(gx - bx) / bw, (gy - by) / bh, np.log(gw / bw),
                                         np.log(gh / bh)]) / np.array(stds))
        else:
            out_labels.append(0)
            out_targets.append(np.zeros(4))
    return np.array(out_labels), np.array(out_targets)


def _scene(seed=0, rois=60):
    rng = np.random.RandomState(seed)
    gts = np.array([[10, 10, 60, 50], [40, 30, 120, 90], [100, 10, 140, 40]], 'f')
    jitter = rng.uniform(-12, 12, (rois, 4)).astype('f')
    boxes = gts[rng.randint(0, 3, rois)] + jitter
    boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 4)
    return boxes, gts, np.array([2, 0, 1], 'f')


def test_the_stages_thresholds_and_deviations():
    assert [iou for iou, _ in CASCADE_STAGES] == [0.5, 0.6, 0.7]
    for (_, stds), div in zip(CASCADE_STAGES, (1, 2, 3)):
        np.testing.assert_allclose(stds, np.array([0.1, 0.1, 0.2, 0.2]) / div)


@pytest.mark.parametrize('stage', range(3))
def test_each_stage_samples_and_encodes_as_the_paper_says(stage):
    threshold, stds = CASCADE_STAGES[stage]
    rois, gts, labels = _scene(stage)
    got_labels, got_targets, masks = stage_targets(mx.nd.array(rois), mx.nd.array(gts),
                                                   mx.nd.array(labels), threshold, stds)
    want_labels, want_targets = _reference_targets(rois, gts, labels, threshold, stds)
    np.testing.assert_array_equal(got_labels.asnumpy(), want_labels)
    np.testing.assert_allclose(got_targets.asnumpy(), want_targets, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(masks.asnumpy()[:, 0], want_labels > 0)
    assert 0 < (want_labels > 0).sum() < len(rois)  # both kinds present


def test_a_later_stage_keeps_fewer_but_better_boxes():
    rois, gts, labels = _scene(5, rois=200)
    counts = [int((stage_targets(mx.nd.array(rois), mx.nd.array(gts), mx.nd.array(labels),
                                 iou, stds)[0] > 0).sum().asscalar())
              for iou, stds in CASCADE_STAGES]
    assert counts[0] > counts[1] > counts[2] > 0


def test_decoding_inverts_encoding_and_clips_growth():
    rois, gts, _ = _scene(1)
    targets = gts[np.arange(len(rois)) % 3]
    for _, stds in CASCADE_STAGES:
        deltas = encode_boxes(mx.nd.array(rois), mx.nd.array(targets), stds)
        np.testing.assert_allclose(decode_boxes(mx.nd.array(rois), deltas, stds).asnumpy(),
                                   targets, rtol=1e-4, atol=1e-3)
    box = mx.nd.array([[0, 0, 10, 10]])
    grown = decode_boxes(box, mx.nd.array([[0, 0, 100, 100]]), (1, 1, 1, 1)).asnumpy()[0]
    np.testing.assert_allclose(grown[2] - grown[0], 10 * np.exp(4.135), rtol=1e-4)


def test_no_gradient_flows_through_the_boxes_between_stages():
    rois, gts, labels = _scene(2)
    deltas = mx.nd.array(np.random.RandomState(0).normal(size=(len(rois), 4)) * 0.1)
    deltas.attach_grad()
    _, stds = CASCADE_STAGES[0]
    with mx.autograd.record():
        boxes = next_stage_boxes(mx.nd.array(rois), deltas, stds)
        through_boxes = boxes.sum()
    through_boxes.backward()
    assert not deltas.grad.asnumpy().any()
    with mx.autograd.record():  # while the stage's own decoding is differentiable
        direct = decode_boxes(mx.nd.array(rois), deltas, stds).sum()
    direct.backward()
    assert deltas.grad.asnumpy().any()


def test_inference_averages_the_stages_scores():
    probs = [mx.nd.array(np.random.RandomState(i).dirichlet(np.ones(4), 5)) for i in range(3)]
    np.testing.assert_allclose(average_stage_scores(probs).asnumpy(),
                               np.mean([p.asnumpy() for p in probs], axis=0), rtol=1e-6)


def _cascade(seed=0):
    from gluon_resnest.detection import get_detection_model
    from gluon_resnest.detection.model import LIGHT_HEAD
    settings = {k: v for k, v in LIGHT_HEAD.items() if k != 'mask_channels'}
    net = get_detection_model('cascade_rcnn_fpn', backbone='resnest14_small', classes=3,
                              max_size=160, rpn_test_post_nms=40, **settings)
    mx.random.seed(seed)
    net.initialize(mx.init.MSRAPrelu())
    return net


def test_cascade_inference_averages_the_stages_and_keeps_the_last_stages_boxes():
    """The network's detections against the stages run one by one with this module's rules:
    each detection's score is the mean of the three stages' probabilities for its class, its
    box the third stage's decoding of the second stage's boxes."""
    net = _cascade()
    x = mx.nd.array(np.random.RandomState(0).uniform(-2, 2, (1, 3, 96, 128)))
    ids, scores, boxes = (o[0].asnumpy() for o in net(x))
    features = net.features(x)
    _, proposals = net.rpn(mx.nd.zeros_like(x), *features)
    current, probabilities = proposals[0], []
    for (head, classify, regress), (_, stds) in zip(net.stages(), CASCADE_STAGES):
        rois = mx.nd.concat(mx.nd.zeros((current.shape[0], 1)), current, dim=-1)
        pooled = net._pyramid_roi_feats(mx.nd, features, rois, net._roi_size, net._strides)
        out = head(pooled)
        probabilities.append(mx.nd.softmax(classify(out), axis=-1).asnumpy())
        decoded = decode_boxes(current, regress(out), stds).asnumpy()
        current = mx.nd.array(np.clip(decoded, 0, [128, 96, 128, 96]))
    mean = np.mean(probabilities, axis=0)
    final = current.asnumpy()
    kept = np.nonzero(ids[:, 0] >= 0)[0]
    assert len(kept) > 10
    for row in kept[:20]:
        n = np.abs(final - boxes[row]).max(axis=1).argmin()
        np.testing.assert_allclose(final[n], boxes[row], atol=1e-3)
        assert scores[row, 0] == pytest.approx(mean[n, int(ids[row, 0]) + 1], abs=1e-5)
    net.hybridize(static_alloc=True, static_shape=True)  # and the same graph hybridized
    for a, b in zip((ids, scores, boxes), net(x)):
        np.testing.assert_array_equal(a, b[0].asnumpy())


def test_cascade_has_class_agnostic_regressors_and_no_published_weights():
    from gluon_resnest.detection import get_detection_model
    from gluon_resnest.zoo.store import PretrainedWeightsError
    net = _cascade()
    net(mx.nd.zeros((1, 3, 64, 64)))
    for _, classify, regress in net.stages():
        assert regress.weight.shape[0] == 4 and classify.weight.shape[0] == 3 + 1
    with pytest.raises(PretrainedWeightsError, match='no published MXNet weights for '
                                                     'cascade_rcnn_fpn'):
        get_detection_model('cascade_rcnn_fpn', pretrained=True)


def test_cascade_mask_rcnn_masks_each_final_detection_by_its_class():
    """Each detection's mask: the mask head on the detection's final box, its class's channel,
    through a sigmoid; detections as Cascade R-CNN's (the best ``rcnn_max_dets``)."""
    from gluon_resnest.detection import get_detection_model
    from gluon_resnest.detection.model import LIGHT_HEAD
    net = get_detection_model('cascade_mask_rcnn_fpn', backbone='resnest14_small', classes=3,
                              max_size=160, rpn_test_post_nms=40, rcnn_max_dets=30,
                              **LIGHT_HEAD)
    mx.random.seed(1)
    net.initialize(mx.init.MSRAPrelu())
    x = mx.nd.array(np.random.RandomState(0).uniform(-2, 2, (1, 3, 96, 128)))
    ids, scores, boxes, masks = (o[0].asnumpy() for o in net(x))
    assert ids.shape == (30, 1) and masks.shape == (30, 14, 14)
    assert (scores[:-1, 0] >= scores[1:, 0]).all()  # the best first
    features = net.features(x)
    for row in range(3):
        rois = mx.nd.array([[0] + boxes[row].tolist()])
        pooled = net._pyramid_roi_feats(mx.nd, features, rois, net._roi_size, net._strides)
        logits = net.mask(pooled)[0, 0, int(ids[row, 0])]
        np.testing.assert_allclose(masks[row], mx.nd.sigmoid(logits).asnumpy(), atol=1e-5)


def test_each_stage_passes_a_third_of_its_gradient_to_the_features(monkeypatch):
    """Detectron2's Cascade R-CNN scales the gradient of each stage's pooled features by 1/3:
    the trunk and FPN learn from the stages' mean. Forward values are unchanged."""
    from gluon_resnest.detection import cascade
    net = _cascade()
    x = mx.nd.array(np.random.RandomState(0).uniform(-2, 2, (1, 3, 96, 128)))
    gt_box = mx.nd.array([[[10, 10, 60, 50], [40, 30, 120, 90]]])
    net(x)
    weight = net.features.fpn.lateral5.weight
    rng = np.random.RandomState(1)
    mixing = None  # fixed weights of a loss linear in the logits

    def stage_logits_and_gradient():
        nonlocal mixing
        mx.random.seed(3)  # the same sampled RoIs each time
        with mx.autograd.record():
            feat = net.features(x)
            rpn_score, rpn_box = net.rpn(mx.nd.zeros_like(x), *feat)[:2]
            boxes = net.sampler(rpn_box, rpn_score, gt_box)[0]
            stages = net.run_stages(mx.nd, x, feat, boxes, training=True)[0]
            logits = [stage_logits for _, stage_logits, _ in stages]
            if mixing is None:
                mixing = [mx.nd.array(rng.normal(size=l.shape)) for l in logits]
            loss = mx.nd.add_n(*[(l * m).sum() for l, m in zip(logits, mixing)])
        loss.backward()
        return [l.asnumpy() for l in logits], weight.grad().asnumpy().copy()
    logits, scaled = stage_logits_and_gradient()
    monkeypatch.setattr(cascade, 'scale_gradient', lambda x, scale, F: x)
    same_logits, full = stage_logits_and_gradient()
    for a, b in zip(logits, same_logits):
        np.testing.assert_array_equal(a, b)
    assert np.abs(full).max() > 0
    np.testing.assert_allclose(scaled, full / 3, rtol=1e-5, atol=1e-7 * np.abs(full).max())
