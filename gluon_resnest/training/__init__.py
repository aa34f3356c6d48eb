"""Training: RecordIO data sharded across Horovod ranks, the paper's recipe, atomic checkpoints."""
from .loop import TrainConfig, count_correct, evaluate, train
