"""The element-wise losses of the R-CNN heads (GluonCV's definitions), each normalized per image
by what that image sampled: the RPN's anchors, the box head's RoIs, the mask head's pixels."""
import mxnet as mx

__all__ = ['smooth_l1', 'sigmoid_cross_entropy', 'per_image_mean', 'classification_loss',
           'box_regression_loss', 'mask_loss']


def smooth_l1(pred, target, mask, beta):
    """Smooth L1 (Huber with ``beta``) of the masked elements."""
    diff = mx.nd.abs(pred - target) * mask
    return mx.nd.where(diff < beta, 0.5 * diff * diff / beta, diff - 0.5 * beta)


def sigmoid_cross_entropy(logits, targets):
    """Element-wise sigmoid cross-entropy from logits, stable for large ones:
    max(x, 0) - x z + log(1 + exp(-|x|))."""
    return mx.nd.relu(logits) - logits * targets + mx.nd.Activation(-mx.nd.abs(logits),
                                                                     act_type='softrelu')


def per_image_mean(values, valid):
    """Each image's sum of ``values`` (B x ...) over its ``valid`` entries, divided by their
    number (GluonCV's normalization: by the sampled anchors or RoIs)."""
    axes = tuple(range(1, values.ndim))
    count = mx.nd.maximum(valid.sum(axis=tuple(range(1, valid.ndim))), 1)
    return values.sum(axis=axes) / count


def classification_loss(logits, targets):
    """(each image's softmax cross-entropy over its RoIs whose target is not -1, those RoIs'
    mask)."""
    valid = targets >= 0
    picked = mx.nd.pick(mx.nd.log_softmax(logits, axis=-1), mx.nd.maximum(targets, 0), axis=-1)
    return per_image_mean(-picked * valid, valid), valid


def box_regression_loss(pred, targets, masks, valid):
    """Each image's smooth L1 (beta 1) of the box deltas its positive RoIs regress, normalized
    by its sampled RoIs (``valid``)."""
    return per_image_mean(smooth_l1(pred, targets, masks, 1.0), valid)


def mask_loss(logits, targets, weights):
    """Each image's per-pixel sigmoid cross-entropy over its weighted mask pixels."""
    return per_image_mean(sigmoid_cross_entropy(logits, targets) * weights, weights)
