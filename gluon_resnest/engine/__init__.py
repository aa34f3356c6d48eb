"""The training engine every task runs on: one epoch loop (loop.train), the Task and Evaluator
interfaces (task), hooks, the shared run config, Horovod communication, sharding, schedules,
checkpoints and command-line plumbing. It imports no task."""
from .config import RunConfig
from .loop import run_evaluator, train
from .task import Evaluator, Optimizer, Task
