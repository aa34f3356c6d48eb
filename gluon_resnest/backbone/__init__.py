"""The ResNet-D trunk that every model shares."""
from .resnet import Bottleneck, ResNeSt, check_input
