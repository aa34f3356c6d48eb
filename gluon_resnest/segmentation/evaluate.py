"""Evaluation of a trained segmentation network (checkpoint or exported graph) on a dataset:
pixel accuracy and mIoU, single-scale or multi-scale with flips, exact across Horovod ranks."""
import os

import mxnet as mx

from ..engine.checkpoint import read_meta
from ..engine.distributed import Comm, device
from ..engine.progress import validation_bar
from ..zoo.registry import get_model_info
from .data import SegmentationEvalTransform, full_image_loader, open_dataset

__all__ = ['load_segmentation', 'evaluate_split', 'segmentation_meta']


def load_segmentation(checkpoint=None, symbol=None, params=None, backbone=None, ctx=None):
    """(network, config dict) from a checkpoint folder the trainer wrote, or from an exported
    ``symbol`` + ``params`` (``backbone`` then names the preprocessing)."""
    from .task import SegTrainConfig, build_model
    ctx = ctx or mx.cpu()
    if checkpoint:
        meta = read_meta(checkpoint)
        if meta.get('task') != 'segmentation':
            raise ValueError('%s is not a segmentation checkpoint' % checkpoint)
        cfg = SegTrainConfig(**meta['config'])
        cfg.pretrained_base = ''  # the checkpoint holds every weight
        cfg.norm = 'bn'  # inference: every variant is plain BN with running statistics
        net = build_model(cfg, ctx)
        net.load_parameters(os.path.join(checkpoint, 'model.params'), ctx=ctx)
        return net, meta['config']
    if not (symbol and params):
        raise ValueError('pass a checkpoint folder, or --symbol and --params')
    for path in (symbol, params):
        if not os.path.isfile(path):
            raise FileNotFoundError('%s not found' % path)
    from ..deploy.export import read_export_meta
    meta = read_export_meta(symbol) or {}
    if meta and meta.get('task') != 'segmentation':
        raise ValueError('%s is a %s export, not a segmentation one'
                         % (symbol, meta.get('task', 'another')))
    if backbone and meta.get('backbone') and backbone != meta['backbone']:
        # the backbone names the normalization: the wrong one gives wrong scores, no error
        raise ValueError('--backbone %s, but %s was exported from a %s network (leave '
                         '--backbone out)' % (backbone, symbol, meta['backbone']))
    backbone = backbone or meta.get('backbone')
    if not backbone:
        raise ValueError('%s has no -meta.json beside it: pass --backbone (it names the '
                         'preprocessing)' % symbol)
    get_model_info(backbone)
    from ..deploy.export import import_symbol
    config = {k: meta[k] for k in ('classes', 'ignore_label', 'output_stride') if k in meta}
    return import_symbol(symbol, params, ctx), dict(config, backbone=backbone)


def segmentation_meta(config):
    """What an export of a network trained with ``config`` (a SegTrainConfig dict) records
    beside its graph: task, backbone, classes, ignore label, output stride (the smallest input
    side) and the input normalization."""
    info = get_model_info(config['backbone'])
    return dict(task='segmentation', model=config.get('model', 'deeplabv3'),
                backbone=config['backbone'], classes=config['classes'],
                ignore_label=config.get('ignore_label', 255),
                output_stride=config.get('output_stride', 8), mean=list(info.mean),
                std=list(info.std))


def evaluate_split(net, dataset, root, split, classes, backbone, scales=(1.0,), flip=False,
                   batch_size=1, workers=2, ignore_label=255, comm=None, progress=False):
    """Scores (``segmentation_scores``) of ``net`` on a dataset split; images are evaluated
    whole, normalized with the backbone's mean/std, in batches of one image size."""
    from .task import evaluate_segmentation
    comm = comm or Comm()
    info = get_model_info(backbone)
    data = open_dataset(dataset, root, split, classes, ignore_label)
    loader = full_image_loader(data, SegmentationEvalTransform(info.mean, info.std),
                               batch_size, comm.rank, comm.size, workers)
    comm.start()
    return evaluate_segmentation(net, loader, classes, device(comm.local_rank), comm, scales,
                                 flip, ignore_label,
                                 progress=validation_bar(progress, comm, loader,
                                                         'evaluating %s' % split))
