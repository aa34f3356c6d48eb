"""The detectors, as detectron2's ``GeneralizedRCNN``: called with a batch of images and their
:class:`DetectionTargets` under ``autograd.record()`` a detector returns its named losses;
called with images it returns detections (GluonCV's class ids, scores, boxes, and masks for the
mask models). Faster and Mask R-CNN are GluonCV's networks with this project's FPN, heads and
pyramid RoI pooling; each registers under its name (:func:`register_detector`), as Cascade
(Mask) R-CNN does in ``cascade.py``."""
import functools
from collections import namedtuple

import mxnet as mx
from mxnet import autograd

from .heads import pyramid_roi_features
from .losses import box_regression_loss, classification_loss, mask_loss
from .rpn import rpn_losses

__all__ = ['DetectionTargets', 'DETECTORS', 'register_detector', 'GeneralizedRCNN',
           'faster_rcnn_class', 'box_head_losses']

# a training batch's ground truth, padded to its largest image: boxes B x M x 4 corners and
# labels B x M x 1 (rows of -1: no object), masks B x M x H x W (mask models; else None), and
# each image's own (height, width) before padding
DetectionTargets = namedtuple('DetectionTargets', 'boxes labels masks sizes')

# a registered detector: ``build(box_head, norm_layer, norm_kwargs, **parts)`` makes it from
# the features, settings and a function returning a fresh box head; ``masks``: it predicts
# instance masks
DetectorSpec = namedtuple('DetectorSpec', 'name build masks')
DETECTORS = {}


def register_detector(name, masks=False):
    """Decorator: ``build`` makes the detector ``name`` (get_detection_model's names)."""
    def wrap(build):
        if name in DETECTORS:
            raise ValueError('detector %r is registered twice' % name)
        DETECTORS[name] = DetectorSpec(name, build, masks)
        return build
    return wrap


class GeneralizedRCNN(object):
    """What every detector adds to GluonCV's networks: ``net(images, targets)`` (training)
    returns ``losses(images, targets)``, a dict of named per-image losses; ``net(images)``
    returns detections, for a batch of any size (image by image) and with the image size
    checked against what the pyramid and the anchors allow. GluonCV's own call,
    ``net(images, gt_box, gt_label)``, still returns its training outputs."""

    def losses(self, x, targets):
        raise NotImplementedError

    def prepare_training(self):
        """Build what the first training call would add (GluonCV's box-target generator and
        its two constants), so checkpoints and resumes hold the same parameters from the
        start."""

    def forward(self, x, *args):
        if len(args) == 1 and isinstance(args[0], DetectionTargets):
            if not autograd.is_training():
                raise ValueError('a detector returns its losses in training mode: call it '
                                 'inside autograd.record()')
            self.check_image_size(x.shape[2], x.shape[3], training=True)
            if x.shape[0] != self._batch_size:
                raise ValueError('this detector trains on batches of %d images (built with '
                                 'per_device_batch_size=%d), got %d'
                                 % (self._batch_size, self._batch_size, x.shape[0]))
            return self.losses(x, args[0])
        if not args and isinstance(x, mx.nd.NDArray):
            if x.ndim != 4 or x.shape[1] != 3:
                raise ValueError('a detector takes images as N x 3 x H x W, got shape %s'
                                 % (x.shape,))
            if autograd.is_training():
                raise ValueError('in training mode a detector takes the images and their '
                                 'DetectionTargets; outside autograd.record() it detects')
            self.check_image_size(x.shape[2], x.shape[3])
            if x.shape[0] > 1:  # GluonCV's inference graph takes one image
                detect = super().forward
                per_image = [detect(mx.nd.slice_axis(x, axis=0, begin=i, end=i + 1))
                             for i in range(x.shape[0])]
                return tuple(mx.nd.concat(*parts, dim=0) for parts in zip(*per_image))
        return super().forward(x, *args)

    def image_size_limits(self):
        """(smallest, largest) image side in px: the coarsest level (P6) needs one cell, and
        the anchors were made for images up to the largest (``max_size`` at build time)."""
        generators = list(self.rpn.anchor_generator)
        largest = min(g.anchors.shape[2] * s for g, s in zip(generators, self._strides))
        return self._strides[-1], largest

    def check_image_size(self, height, width, training=False):
        """ValueError naming the image size and what is allowed, before MXNet fails deep in
        the network."""
        smallest, largest = self.image_size_limits()
        if min(height, width) < smallest:
            raise ValueError('a %dx%d image is too small for this detector: its coarsest level '
                             '(P6) has a stride of %d px, so images need at least %d px a side'
                             % (width, height, smallest, smallest))
        if max(height, width) > largest:
            raise ValueError('a %dx%d image is larger than this detector\'s anchors cover '
                             '(%d px a side, from max_size when it was built): resize it, or '
                             'build the detector with a larger max_size (load_detector(..., '
                             'max_size=N))' % (width, height, largest))
        proposals = self.rpn._train_post_nms if training else self.rpn._test_post_nms
        anchors = sum(-(-height // s) * -(-width // s) * g.num_depth
                      for g, s in zip(self.rpn.anchor_generator, self._strides))
        if anchors < proposals:
            raise ValueError('a %dx%d image has %d anchors, fewer than the %d proposals the RPN '
                             'keeps (rpn_%s_post_nms): use larger images or fewer proposals'
                             % (width, height, anchors, proposals,
                                'train' if training else 'test'))


def box_head_losses(cls_pred, box_pred, cls_targets, box_targets, box_masks):
    """{'rcnn_cls', 'rcnn_box'} of GluonCV's box head: softmax cross-entropy over the sampled
    RoIs, class-specific smooth L1 of the positives, both per image over its sampled RoIs."""
    cls, valid = classification_loss(cls_pred, cls_targets)
    return dict(rcnn_cls=cls, rcnn_box=box_regression_loss(box_pred, box_targets, box_masks,
                                                           valid))


@functools.lru_cache(maxsize=None)
def faster_rcnn_class():
    """GluonCV's FasterRCNN (its class name, so parameter prefixes are GluonCV's) as a
    GeneralizedRCNN with this project's pyramid RoI pooling."""
    from gluoncv.model_zoo.rcnn.faster_rcnn.faster_rcnn import FasterRCNN as GluonFasterRCNN

    class FasterRCNN(GeneralizedRCNN, GluonFasterRCNN):
        _pyramid_roi_feats = pyramid_roi_features

        def prepare_training(self):
            self.target_generator  # a property that builds it

        def losses(self, x, targets):
            """RPN and box-head losses, from GluonCV's training outputs."""
            (cls_pred, box_pred, _, _, _, raw_rpn_score, raw_rpn_box, anchors, cls_targets,
             box_targets, box_masks, _) = super(GeneralizedRCNN, self).forward(
                 x, targets.boxes, targets.labels)
            losses = rpn_losses(raw_rpn_score, raw_rpn_box, anchors, targets)
            losses.update(box_head_losses(cls_pred, box_pred, cls_targets, box_targets,
                                          box_masks))
            return losses

    FasterRCNN.__module__ = __name__
    return FasterRCNN


@functools.lru_cache(maxsize=None)
def mask_rcnn_class():
    """GluonCV's MaskRCNN as a GeneralizedRCNN (see :func:`faster_rcnn_class`)."""
    from gluoncv.model_zoo.rcnn.mask_rcnn.mask_rcnn import MaskRCNN as GluonMaskRCNN

    class MaskRCNN(GeneralizedRCNN, GluonMaskRCNN):
        _pyramid_roi_feats = pyramid_roi_features

        def prepare_training(self):
            self.target_generator  # a property that builds it

        def losses(self, x, targets):
            """RPN and box-head losses, and the mask head's on the positive RoIs (its
            per-pixel sigmoid cross-entropy against the ground truth's masks)."""
            (cls_pred, box_pred, mask_pred, rois, _, matches, raw_rpn_score, raw_rpn_box,
             anchors, cls_targets, box_targets, box_masks, indices) = super(
                 GeneralizedRCNN, self).forward(x, targets.boxes, targets.labels)
            losses = rpn_losses(raw_rpn_score, raw_rpn_box, anchors, targets)
            losses.update(box_head_losses(cls_pred, box_pred, cls_targets, box_targets,
                                          box_masks))

            def positives(rows):  # the rows of the RoIs the mask head saw
                return mx.nd.stack(*[mx.nd.take(rows[i], indices[i])
                                     for i in range(len(targets.sizes))])
            with autograd.pause():  # targets, not a function of the weights
                mask_t, mask_m = self.mask_target(positives(rois), targets.masks,
                                                  positives(matches), positives(cls_targets))
            losses['mask'] = mask_loss(mask_pred, mask_t, mask_m)
            return losses

    MaskRCNN.__module__ = __name__
    return MaskRCNN


@register_detector('faster_rcnn_fpn')
def _faster_rcnn(box_head, norm_layer, norm_kwargs, **parts):
    return faster_rcnn_class()(box_features=box_head(), **parts)


@register_detector('mask_rcnn_fpn', masks=True)
def _mask_rcnn(box_head, norm_layer, norm_kwargs, **parts):
    from .heads import mask_head
    net = mask_rcnn_class()(norm_layer=norm_layer, norm_kwargs=norm_kwargs,
                            box_features=box_head(), **parts)
    with net.name_scope():
        net.mask = mask_head(net._batch_size, parts['classes'], parts['mask_channels'],
                             parts['num_fcn_convs'])
    return net
