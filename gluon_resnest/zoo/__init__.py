"""Model zoo: registry, model table and pretrained-weight store."""
from . import models
from . import fbnet_models, regnet_models
from .models import *  # noqa: F401,F403  (the factories: resnest50(), ...)
from .regnet_models import *  # noqa: F401,F403
from .fbnet_models import *  # noqa: F401,F403
from .registry import ModelInfo, get_model, get_model_info, list_models, register_model
from .store import PretrainedWeightsError, default_root, get_model_file
