"""A feature pyramid (Lin et al., 2017) over any zoo trunk, as GluonCV's R-CNN models build it,
so their published files load into it: for C5 down to C2 a 1x1 lateral convolution and a
BatchNorm, the coarser level upsampled (nearest) and added, a 3x3 output convolution and a
BatchNorm; P6 is a stride-2 3x3 convolution of C5's lateral and a BatchNorm.
The BatchNorms are GluonCV's symbol defaults: eps 1e-3, gamma fixed at 1. Native Gluon blocks,
so the parameter names do not depend on what else a process has built."""
from mxnet.gluon import nn

__all__ = ['FPN', 'DetectionFeatures', 'FPN_LEVELS']

FPN_LEVELS = (2, 3, 4, 5)  # the trunk's C2..C5 become P2..P5 (and P6)


def _norm(norm_layer, norm_kwargs):
    kwargs = dict(epsilon=1e-3, scale=False)  # GluonCV's symbol BatchNorm: fixed gamma
    kwargs.update(norm_kwargs or {})
    return norm_layer(**kwargs)


class FPN(nn.HybridBlock):
    """[C2, C3, C4, C5] -> [P2, P3, P4, P5, P6], ``channels`` each."""

    def __init__(self, channels=256, norm_layer=nn.BatchNorm, norm_kwargs=None, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            for level in FPN_LEVELS:
                for kind, kernel in (('lateral', 1), ('output', 3)):
                    setattr(self, '%s%d' % (kind, level),
                            nn.Conv2D(channels, kernel, padding=kernel // 2, use_bias=False,
                                      weight_initializer='xavier'))
                    setattr(self, '%s%d_bn' % (kind, level), _norm(norm_layer, norm_kwargs))
            self.p6 = nn.Conv2D(channels, 3, strides=2, padding=1, use_bias=False,
                                weight_initializer='xavier')
            self.p6_bn = _norm(norm_layer, norm_kwargs)

    def hybrid_forward(self, F, c2, c3, c4, c5):
        outputs, top = [], None
        for level, c in zip(reversed(FPN_LEVELS), (c5, c4, c3, c2)):
            lateral = getattr(self, 'lateral%d_bn' % level)(getattr(self, 'lateral%d' % level)(c))
            if top is None:
                p6 = self.p6_bn(self.p6(lateral))
            else:  # the coarser level, upsampled and cut to this one's size
                top = F.slice_like(F.UpSampling(top, scale=2, sample_type='nearest'), lateral,
                                   axes=(2, 3))
                lateral = lateral + top
            top = lateral
            outputs.append(getattr(self, 'output%d_bn' % level)(
                getattr(self, 'output%d' % level)(lateral)))
        return outputs[::-1] + [p6]


class DetectionFeatures(nn.HybridBlock):
    """A ``features_only`` zoo trunk and its FPN: an image batch -> [P2, ..., P6]."""

    def __init__(self, trunk, channels=256, norm_layer=nn.BatchNorm, norm_kwargs=None,
                 **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.trunk = trunk
            self.fpn = FPN(channels, norm_layer, norm_kwargs)

    def hybrid_forward(self, F, x):
        return self.fpn(*self.trunk(x))
