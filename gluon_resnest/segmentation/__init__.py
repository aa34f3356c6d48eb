"""Semantic segmentation: DeepLabV3 on the zoo's trunks, metrics, multi-scale inference, data,
the training task (GluonCV is imported lazily, when a model is built)."""
from .model import DeepLabV3, get_segmentation_model, list_segmentation_weights
