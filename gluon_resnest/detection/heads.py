"""The R-CNN heads this project builds for GluonCV's detectors: the box head (GluonCV's
4conv1fc or Detectron's 2fc), the FPN mask head with a deconvolution oneDNN can run, and RoI
pooling over the pyramid that pools every RoI on its own level only."""
import mxnet as mx
import numpy as np
from mxnet.gluon import nn

__all__ = ['box_head', 'mask_head', 'pyramid_roi_features', 'Upsample2x']


def box_head(norm_layer, norm_kwargs, fpn_channels, box_convs, box_fcs, box_units):
    head = nn.HybridSequential()
    for _ in range(box_convs):
        head.add(nn.Conv2D(fpn_channels, 3, padding=1, use_bias=False),
                 norm_layer(**(norm_kwargs or {})), nn.Activation('relu'))
    for _ in range(box_fcs):
        head.add(nn.Dense(box_units, weight_initializer=mx.init.Normal(0.01)),
                 nn.Activation('relu'))
    return head


def pyramid_roi_features(self, F, features, rpn_rois, roi_size, strides, roi_mode='align',
                          roi_canonical_scale=224.0, sampling_ratio=2, eps=1e-6):
    """RoIAlign of each RoI on its pyramid level (FPN's rule: level 4 + log2(sqrt(area) /
    224), clipped to P2..P5). GluonCV hands each level's RoIAlign the other levels' RoIs with
    batch index -1 and adds the outputs up; MXNet's CPU RoIAlign leaves such RoIs' outputs
    unwritten (uninitialized memory: pooled features of 1e20 in training, detections that
    changed from call to call) and spoils some of the others'. Here every level pools its own
    RoIs, the others as a point outside the image (zeros), and keeps its own."""
    top = self._max_stage - 1 if self._max_stage > 5 else self._max_stage  # P6: RPN only
    # FPN's 224 px at level 4 holds for a stride-4 P2; a trunk of finer strides keeps the
    # ratio of RoI to cell size
    roi_canonical_scale *= strides[0] / 4.0
    _, x1, y1, x2, y2 = F.split(rpn_rois, axis=-1, num_outputs=5)
    size = F.sqrt((x2 - x1 + 1) * (y2 - y1 + 1))
    level = F.squeeze(F.clip(F.floor(4 + F.log2(size / roi_canonical_scale + eps)),
                             self._min_stage, top))
    if F is mx.nd:  # imperative (training, evaluation): each level pools only its own RoIs
        return _pooled_by_level(features, rpn_rois, level, range(self._min_stage, top + 1),
                                roi_size, strides, sampling_ratio)
    # other levels' RoIs become a point far outside the image: pooled as zeros, quickly, and
    # without the cost of their gradients (most of a training step's RoIAlign time otherwise)
    outside = F.concat(F.slice_axis(rpn_rois, axis=-1, begin=0, end=1),
                       F.ones_like(F.slice_axis(rpn_rois, axis=-1, begin=1, end=None)) * -1e4,
                       dim=-1)
    pooled = []
    for i, stage in enumerate(range(self._min_stage, top + 1)):
        here = level == stage
        features_here = F.contrib.ROIAlign(features[i], F.where(here, rpn_rois, outside),
                                           roi_size, 1. / strides[i],
                                           sample_ratio=sampling_ratio)
        pooled.append(F.where(here, features_here, F.zeros_like(features_here)))
    return F.ElementWiseSum(*pooled)


def _pooled_by_level(features, rois, level, stages, roi_size, strides, sampling_ratio):
    """RoIAlign of each RoI on its level, imperatively: the RoIs are grouped by level, each
    group pooled on its own level and the rows put back in the RoIs' order. The same values as
    pooling every RoI on every level and keeping its own (the graph's way, whose shapes cannot
    depend on the data), at a quarter of RoIAlign's cost, most of which is its backward. A
    level without RoIs pools one placeholder outside the image, so every rank records the same
    operators in the same order: synchronized BatchNorm's collectives run in backward's order,
    which follows the recorded graph, and ranks whose graphs differed waited for each other
    forever."""
    levels = level.asnumpy()
    placeholder = mx.nd.array([[0, -1e4, -1e4, -1e4, -1e4]], ctx=rois.context)
    positions = np.empty(len(levels), np.int64)
    pooled, offset = [], 0
    for i, stage in enumerate(stages):
        rows = np.flatnonzero(levels == stage)
        chosen = mx.nd.take(rois, mx.nd.array(rows, ctx=rois.context)) if len(rows) else \
            placeholder
        pooled.append(mx.nd.contrib.ROIAlign(features[i], chosen, roi_size, 1. / strides[i],
                                             sample_ratio=sampling_ratio))
        positions[rows] = offset + np.arange(len(rows))
        offset += max(len(rows), 1)
    return mx.nd.take(mx.nd.concat(*pooled, dim=0), mx.nd.array(positions, ctx=rois.context))


class Upsample2x(nn.HybridBlock):
    """A 2x2, stride-2 transposed convolution (``nn.Conv2DTranspose``'s parameters and result)
    computed as a 1x1 convolution to 4x the channels and ``depth_to_space``: MXNet 1.9.1's
    CPU (oneDNN) deconvolution crashes in backward when it ran more than once before it, as
    the mask head does for each image of a batch."""

    def __init__(self, channels, in_channels, weight_initializer=None, **kwargs):
        super().__init__(**kwargs)
        self.channels = channels
        with self.name_scope():
            self.weight = self.params.get('weight', shape=(in_channels, channels, 2, 2),
                                          init=weight_initializer)
            self.bias = self.params.get('bias', shape=(channels,), init='zeros')

    def hybrid_forward(self, F, x, weight, bias):
        # output (2i + a, 2j + b) of channel o is sum_c x[c, i, j] * weight[c, o, a, b]: a 1x1
        # convolution with filter (a * 2 + b) * channels + o, which depth_to_space places there
        # the last operator a transpose: oneDNN refuses a reshaped view as the weight under
        # MXNet's naive engine ("Check failed: !is_view")
        kernel = F.transpose(F.transpose(weight, axes=(0, 2, 3, 1)).reshape((0, -1, 1, 1)),
                             axes=(1, 0, 2, 3))
        y = F.Convolution(x, kernel, F.tile(bias, reps=4), kernel=(1, 1),
                          num_filter=4 * self.channels)
        # depth_to_space as a reshape and a transpose: the same order, at half the cost of
        # MXNet's depth_to_space (forward and backward)
        y = y.reshape((0, -4, 2, -1, -2)).reshape((0, 0, -4, 2, -1, -2))  # N, 2, 2, C, H, W
        return y.transpose((0, 3, 4, 1, 5, 2)).reshape((0, 0, -3, -3))


def mask_head(batch_images, classes, channels, convs):
    """GluonCV's FPN mask head (``convs`` 3x3 convolutions and ReLUs, a 2x upsampling, a 1x1
    classifier; structural names as GluonCV's, so its files load) with :class:`Upsample2x`."""
    from gluoncv.model_zoo.rcnn.mask_rcnn.mask_rcnn import Mask
    # built with one convolution, whose layers are then replaced (a block's attribute can only
    # be replaced by one of its type)
    head = Mask(batch_images, classes, channels, num_fcn_convs=1)
    init = mx.init.Xavier(rnd_type='gaussian', factor_type='out', magnitude=2)
    with head.name_scope():
        deconv = nn.HybridSequential()
        for _ in range(convs):
            deconv.add(nn.Conv2D(channels, 3, padding=1, weight_initializer=init),
                       nn.Activation('relu'))
        deconv.add(Upsample2x(channels, channels, weight_initializer=init))
        head.deconv = deconv
    return head
