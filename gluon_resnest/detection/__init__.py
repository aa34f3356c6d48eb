"""Object detection and instance segmentation: Faster and Mask R-CNN with a feature pyramid on
the zoo's trunks, GluonCV's R-CNN machinery and its published COCO weights (GluonCV is imported
lazily, when a model is built)."""
from .model import get_detection_model, list_detection_weights
