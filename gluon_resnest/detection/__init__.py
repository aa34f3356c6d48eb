"""Object detection and instance segmentation: Faster, Mask and Cascade (Mask) R-CNN with a
feature pyramid on the zoo's trunks, GluonCV's R-CNN machinery and its published COCO weights
(GluonCV is imported lazily, when a model is built)."""
from .config import load_detector
from .data import coco_split, open_detection_data
from .evaluate import evaluate_detection
from .model import DETECTION_MODELS, get_detection_model, list_detection_weights
from .rcnn import DetectionTargets
