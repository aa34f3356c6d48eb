"""Top-1/top-5 of a zoo model, a training checkpoint or an exported symbol on RecordIO data."""
import os

import mxnet as mx

from ..zoo.registry import get_model, get_model_info
from ..deploy.export import import_symbol
from ..zoo.store import read_params_file
from ..engine.checkpoint import read_meta
from ..classification.data import RecordDataset, eval_transform
from ..engine.data import make_loader
from ..classification.memory_data import evaluation_loader
from ..engine.distributed import Comm, device
from ..classification.task import evaluate
from ..engine.progress import validation_bar

__all__ = ['load_network', 'evaluate_records', 'calibration_images']


def load_network(model=None, params=None, symbol=None, checkpoint=None, classes=None, ctx=None):
    """(network, ModelInfo, classes) from one of:

    - ``checkpoint``: a folder the trainer wrote (model, classes and weights from it);
    - ``symbol`` + ``params``: an exported graph (``model`` names its preprocessing);
    - ``model`` + ``params``: a zoo architecture and a ``.params`` file for it.
    """
    ctx = ctx or mx.cpu()
    if checkpoint:
        config = read_meta(checkpoint)['config']
        if classes and classes != config['classes']:
            raise ValueError('--classes %d, but the checkpoint %s has %d classes (leave --classes '
                             'out)' % (classes, checkpoint, config['classes']))
        model, classes = config['model'], config['classes']
        params = os.path.join(checkpoint, 'model.params')
    if not model:
        raise ValueError('name the model (--model): its metadata gives the preprocessing')
    info = get_model_info(model)
    for path in filter(None, (params, symbol)):
        if not os.path.isfile(path):
            raise FileNotFoundError('%s not found' % path)
    if symbol:
        if not params:
            raise ValueError('an exported symbol needs its .params file')
        return import_symbol(symbol, params, ctx), info, classes
    if not params:
        raise ValueError('pass --params (a .params file for %s) or --checkpoint' % model)
    classes = classes or _classes_in(read_params_file(params))
    net = get_model(model, classes=classes)
    try:
        net.load_parameters(params, ctx=ctx)
    except mx.base.MXNetError:
        read_params_file(params)  # names a truncated or corrupt file (ValueError)
        raise
    except (AssertionError, ValueError) as err:
        raise ValueError('%s does not fit %s with %d classes: %s'
                         % (params, model, classes, str(err).split('\n')[0])) from None
    return net, info, classes


def _classes_in(arrays):
    weight = arrays.get('fc.weight')
    return int(weight.shape[0]) if weight is not None else 1000


def evaluate_records(net, info, rec, classes=None, batch_size=64, crop=None, workers=2,
                     comm=None, ctx=None, hybridize=True, crop_ratio=None, progress=False):
    """Accuracy of ``net`` on ``rec`` with the model's evaluation preprocessing (``crop`` and
    ``crop_ratio`` override the model's). Under horovodrun each rank takes a shard and the
    counts are summed exactly. ``hybridize=False`` keeps a graph that is already optimized;
    ``progress`` shows a bar on rank 0."""
    comm = comm or Comm()
    crop = crop or info.eval_crop
    loader = evaluation_loader(RecordDataset(rec, classes=classes), batch_size, info.mean,
                               info.std, crop, crop_ratio or info.crop_ratio, comm.rank,
                               comm.size, workers)
    comm.start()
    if hybridize:
        net.hybridize(static_alloc=True)
    result = evaluate(net, loader, ctx or device(comm.local_rank), comm,
                      validation_bar(progress, comm, loader, 'evaluating %s' % rec))
    result.update(crop=crop, world_size=comm.size)
    return result


def calibration_images(info, rec, count, crop=None):
    """``count`` preprocessed images from ``rec`` (e.g. the training set) for INT8 calibration."""
    crop = crop or info.eval_crop
    loader, _ = make_loader(RecordDataset(rec), eval_transform(crop, info.mean, info.std,
                                                               info.crop_ratio),
                            batch_size=min(count, 256), train=False, workers=0)
    batches, seen = [], 0
    for data, _ in loader:
        batches.append(data)
        seen += data.shape[0]
        if seen >= count:
            break
    return mx.nd.concat(*batches, dim=0)[:count]
