"""Every task the engine trains, registered by name as its module is imported (engine.task's
registry: classification, segmentation, detection), found by name, and each task's export of
its checkpoints (eval/export.py)."""
from .classification import deploy as classification_deploy
from .classification.task import ClassificationTask
from .detection import deploy as detection_deploy
from .detection.task import DetectionTask
from .engine.checkpoint import read_meta
from .engine.task import TASKS
from .segmentation import deploy as segmentation_deploy
from .segmentation.task import SegmentationTask

__all__ = ['get_task', 'export_checkpoint', 'TASKS']

# the export of each task's checkpoint folders: (checkpoint, prefix, input_size, batch_size,
# preprocess, onnx) -> deploy.export.Exported
EXPORTS = {ClassificationTask.name: classification_deploy.export_checkpoint,
           SegmentationTask.name: segmentation_deploy.export_checkpoint,
           DetectionTask.name: detection_deploy.export_checkpoint}


def get_task(name):
    """A new Task object of the registered task ``name``."""
    if name not in TASKS:
        raise ValueError('unknown task %r: allowed %s' % (name, ', '.join(sorted(TASKS))))
    return TASKS[name]()


def export_checkpoint(checkpoint, prefix, input_size=None, batch_size=1, preprocess=False,
                      onnx=False):
    """Export a checkpoint folder any trainer wrote, by the export of the task it records."""
    task = read_meta(checkpoint).get('task', 'classification')  # before tasks were recorded
    if task not in EXPORTS:
        raise ValueError('%s holds a %s checkpoint, which has no export' % (checkpoint, task))
    return EXPORTS[task](checkpoint, prefix, input_size, batch_size, preprocess, onnx)
