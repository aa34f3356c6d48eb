"""Squeeze-and-Excitation (Hu et al. 2018) as pycls and mobile-vision define it: global average
pool, 1x1 conv with bias, ReLU, 1x1 conv with bias, a sigmoid (or hard sigmoid) gate that
scales each channel."""
from mxnet.gluon import nn
from mxnet.gluon.block import HybridBlock

from .splat import global_avg_pool

__all__ = ['SqueezeExcite', 'GATES', 'ACTIVATIONS']

# hard sigmoid: relu6(x + 3) / 6 (MobileNetV3, FBNetV2)
GATES = {'sigmoid': lambda F, x: F.sigmoid(x),
         'hsigmoid': lambda F, x: F.clip(x + 3.0, 0.0, 6.0) / 6.0}
# h-swish: x * hard sigmoid(x)
ACTIVATIONS = {'relu': lambda F, x: F.Activation(x, act_type='relu'),
               'hswish': lambda F, x: x * GATES['hsigmoid'](F, x)}


class SqueezeExcite(HybridBlock):
    """``x * gate(fc2(act(fc1(mean(x)))))`` with ``hidden`` bottleneck channels; ``act`` is
    ReLU, or h-swish inside mobile-vision's h-swish blocks."""

    def __init__(self, channels, hidden, gate='sigmoid', act='relu', **kwargs):
        super(SqueezeExcite, self).__init__(**kwargs)
        if gate not in GATES or act not in ACTIVATIONS:
            raise ValueError('gate %r, act %r: gates are %s, activations %s'
                             % (gate, act, ', '.join(GATES), ', '.join(ACTIVATIONS)))
        for name, value in (('channels', channels), ('hidden', hidden)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError('SqueezeExcite: %s must be an integer >= 1, got %r'
                                 % (name, value))
        self.gate, self.act = gate, act
        with self.name_scope():
            self.fc1 = nn.Conv2D(hidden, 1, in_channels=channels)
            self.fc2 = nn.Conv2D(channels, 1, in_channels=hidden)

    def hybrid_forward(self, F, x):
        w = self.fc2(ACTIVATIONS[self.act](F, self.fc1(global_avg_pool(F, x))))
        return F.broadcast_mul(x, GATES[self.gate](F, w))
