"""ResNeSt (Split-Attention Networks) for MXNet Gluon."""
from .runtime import configure_cpu_threads

configure_cpu_threads()  # before MXNet loads: it would otherwise use half the cores

from .backbone import Bottleneck, ResNeSt
from .deploy import export_model, export_onnx
from .layers import DropBlock, SplitAttention, SplitAttentionConv, deploy_mode, set_drop_prob
from .zoo import ModelInfo, PretrainedWeightsError, get_model, get_model_info, list_models
from .zoo.models import *  # noqa: F401,F403
from .zoo.regnet_models import *  # noqa: F401,F403
from .zoo.fbnet_models import *  # noqa: F401,F403

__version__ = '0.1.0'
