"""Image classification: RecordIO data, the paper's recipe, and the task the engine trains."""
from .task import ClassificationTask, TrainConfig, count_correct, evaluate, train
