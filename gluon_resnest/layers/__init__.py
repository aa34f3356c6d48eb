"""Building blocks: Split-Attention convolution and DropBlock."""
from .dropblock import DropBlock, Dropout, deploy_mode, set_drop_prob
from .splat import SplitAttentionConv, attention_channels
