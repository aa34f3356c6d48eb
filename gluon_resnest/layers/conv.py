"""Conv -> BN -> (DropBlock) -> activation, the unit the RegNet and FBNet trunks are built of."""
from mxnet.gluon import nn
from mxnet.gluon.block import HybridBlock

from .dropblock import DropBlock
from .se import ACTIVATIONS

__all__ = ['ConvBNAct']


class ConvBNAct(HybridBlock):
    """A convolution (``dilation``, padded to keep the size at stride 1), then BN made by ``norm(channels, **extra)`` (None:
    no BN) with its gamma starting at zero if ``zero_gamma``, DropBlock when ``dropblock`` is a
    probability, and ``act`` (a key of ACTIVATIONS, or None)."""

    def __init__(self, in_channels, channels, kernel=1, strides=1, groups=1, use_bias=False,
                 norm=None, act=None, dropblock=None, zero_gamma=False, dilation=1, **kwargs):
        super(ConvBNAct, self).__init__(**kwargs)
        self.act = act
        with self.name_scope():
            self.conv = nn.Conv2D(channels, kernel, strides, dilation * (kernel // 2),
                                  dilation=dilation, groups=groups, use_bias=use_bias,
                                  in_channels=in_channels)
            self.bn = norm(channels, gamma_initializer='zeros' if zero_gamma else 'ones') \
                if norm else None
            self.drop = DropBlock(dropblock, channels=channels) if dropblock is not None \
                else None

    def hybrid_forward(self, F, x):
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        if self.drop is not None:
            x = self.drop(x)
        return x if self.act is None else ACTIVATIONS[self.act](F, x)
