"""Deployment of a detector: the symbol graph of its inference (class ids, scores, boxes and,
for the mask models, masks), one image at a time at any size, with its metadata."""
from ..deploy.export import Exported, export_model, traced_shape
from ..zoo.registry import get_model_info
from .config import load_detector

__all__ = ['export_checkpoint', 'detection_meta']


def detection_meta(cfg, class_names, category_ids):
    """What an export of a detection run records beside its files."""
    info = get_model_info(cfg.backbone)
    return dict(task='detection', model=cfg.model, backbone=cfg.backbone, classes=class_names,
                category_ids=category_ids, mean=list(info.mean), std=list(info.std),
                short=cfg.test_short, max_size=cfg.max_size)


def export_checkpoint(checkpoint, prefix, input_size=None, batch_size=1, preprocess=False,
                      onnx=False):
    """The detector of a checkpoint folder train/train_detection.py wrote, traced at
    ``input_size`` (default: its validation short side, square); returns
    :class:`~gluon_resnest.deploy.export.Exported`. No ONNX: MXNet 1.9.1's exporter writes a
    Split node onnxruntime refuses to load, and cannot keep class-aware NMS."""
    if onnx:
        raise ValueError("--onnx: detectors do not export to ONNX (MXNet 1.9.1's exporter "
                         'writes a Split node onnxruntime refuses to load, and its NMS would '
                         'suppress boxes across classes); the symbol export serves any size')
    if batch_size != 1:
        raise ValueError('--batch-size: a detector\'s graph takes one image at a time')
    net, cfg, names, category_ids = load_detector(checkpoint)
    info = get_model_info(cfg.backbone)
    shape = traced_shape(1, input_size or cfg.test_short, preprocess)
    sym, params = export_model(net, prefix, shape, preprocess=info if preprocess else None,
                               meta=detection_meta(cfg, names, category_ids))
    return Exported(net, info, shape, sym, params, None)
