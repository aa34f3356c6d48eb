"""Squeeze-and-Excitation (Hu et al. 2018) as pycls and mobile-vision define it: global average
pool, 1x1 conv with bias, ReLU, 1x1 conv with bias, a sigmoid (or hard sigmoid) gate that
scales each channel."""
from mxnet.gluon import nn
from mxnet.gluon.block import HybridBlock

from .splat import global_avg_pool

__all__ = ['SqueezeExcite', 'GATES']

# hard sigmoid: relu6(x + 3) / 6 (MobileNetV3, FBNetV2)
GATES = {'sigmoid': lambda F, x: F.sigmoid(x),
         'hsigmoid': lambda F, x: F.clip(x + 3.0, 0.0, 6.0) / 6.0}


class SqueezeExcite(HybridBlock):
    """``x * gate(fc2(relu(fc1(mean(x)))))`` with ``hidden`` bottleneck channels."""

    def __init__(self, channels, hidden, gate='sigmoid', **kwargs):
        super(SqueezeExcite, self).__init__(**kwargs)
        if gate not in GATES:
            raise ValueError('unknown gate %r; choose one of %s' % (gate, ', '.join(GATES)))
        for name, value in (('channels', channels), ('hidden', hidden)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError('SqueezeExcite: %s must be an integer >= 1, got %r'
                                 % (name, value))
        self.gate = gate
        with self.name_scope():
            self.fc1 = nn.Conv2D(hidden, 1, in_channels=channels)
            self.fc2 = nn.Conv2D(channels, 1, in_channels=hidden)

    def hybrid_forward(self, F, x):
        w = self.fc2(F.Activation(self.fc1(global_avg_pool(F, x)), act_type='relu'))
        return F.broadcast_mul(x, GATES[self.gate](F, w))
