"""Deployment of a classifier: the symbol graph (and ONNX), with its metadata."""
import os

from ..deploy.export import Exported, export_model, export_onnx, traced_shape
from ..engine.checkpoint import read_meta
from ..zoo.registry import get_model, get_model_info

__all__ = ['export_classifier', 'export_checkpoint']


def export_classifier(net, info, classes, prefix, input_size=None, batch_size=1,
                      preprocess=False, onnx=False):
    """Export ``net`` (a zoo model described by ``info``, ``classes`` outputs) as
    ``prefix``-symbol.json/-0000.params/-meta.json (and ``prefix``.onnx), traced at
    ``input_size`` (default: the model's evaluation crop); returns :class:`Exported`."""
    shape = traced_shape(batch_size, input_size or info.eval_crop, preprocess)
    normalization = info if preprocess else None
    meta = dict(task='classification', model=info.name, classes=classes, mean=list(info.mean),
                std=list(info.std))
    sym, params = export_model(net, prefix, shape, preprocess=normalization, meta=meta)
    onnx_path = export_onnx(net, prefix + '.onnx', shape, preprocess=normalization) \
        if onnx else None
    return Exported(net, info, shape, sym, params, onnx_path)


def export_checkpoint(checkpoint, prefix, input_size=None, batch_size=1, preprocess=False,
                      onnx=False):
    """:func:`export_classifier` of a checkpoint folder train/train.py wrote."""
    config = read_meta(checkpoint)['config']
    net = get_model(config['model'], classes=config['classes'])
    net.load_parameters(os.path.join(checkpoint, 'model.params'))
    return export_classifier(net, get_model_info(config['model']), config['classes'], prefix,
                             input_size, batch_size, preprocess, onnx)
