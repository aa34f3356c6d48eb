"""Building blocks: Split-Attention (the module and the convolution), SE, conv-BN-activation
units and DropBlock."""
from .dropblock import DropBlock, Dropout, deploy_mode, set_drop_prob
from .splat import SplitAttention, SplitAttentionConv, attention_channels
