"""Evaluation of a trained segmentation network (checkpoint or exported graph) on a dataset:
pixel accuracy and mIoU, single-scale or multi-scale with flips, exact across Horovod ranks."""
import os

import mxnet as mx

from ..training.checkpoint import read_meta
from ..training.distributed import Comm, device
from ..zoo.registry import get_model_info
from .data import SegmentationEvalTransform, full_image_loader, open_dataset

__all__ = ['load_segmentation', 'evaluate_split']


def load_segmentation(checkpoint=None, symbol=None, params=None, backbone=None, ctx=None):
    """(network, config dict) from a checkpoint folder the trainer wrote, or from an exported
    ``symbol`` + ``params`` (``backbone`` then names the preprocessing)."""
    from .train import SegTrainConfig, build_model
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
    if not (symbol and params and backbone):
        raise ValueError('pass a checkpoint folder, or --symbol, --params and --backbone')
    for path in (symbol, params):
        if not os.path.isfile(path):
            raise FileNotFoundError('%s not found' % path)
    get_model_info(backbone)
    from ..analysis.accuracy import import_symbol
    return import_symbol(symbol, params, ctx), dict(backbone=backbone)


def evaluate_split(net, dataset, root, split, classes, backbone, scales=(1.0,), flip=False,
                   batch_size=1, workers=2, ignore_label=255, comm=None, progress=False):
    """Scores (``segmentation_scores``) of ``net`` on a dataset split; images are evaluated
    whole, normalized with the backbone's mean/std, in batches of one image size."""
    from .train import evaluate_segmentation
    comm = comm or Comm()
    info = get_model_info(backbone)
    data = open_dataset(dataset, root, split, classes, ignore_label)
    loader = full_image_loader(data, SegmentationEvalTransform(info.mean, info.std),
                               batch_size, comm.rank, comm.size, workers)
    comm.start()
    bar = None
    if progress and comm.rank == 0:
        from tqdm import tqdm
        bar = tqdm(total=len(loader), desc='evaluating %s' % split, leave=False)
    try:
        return evaluate_segmentation(net, loader, classes, device(comm.local_rank), comm,
                                     scales, flip, ignore_label, progress=bar)
    finally:
        if bar is not None:
            bar.close()
