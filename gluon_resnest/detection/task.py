"""Object detection and instance segmentation as a task of the engine (engine.loop.train): the
data (COCO, COCO-format or VOC, checked as they open, sized for the detector), the batches (a
padded image batch and its :class:`~.rcnn.DetectionTargets`), the optimizer (the paper's step
schedule after a linear warm-up) and the evaluator (COCO box and mask AP or VOC mAP on the
dataset's own image ids). The detector computes its own named losses; the task sums them."""
import functools

import mxnet as mx
import numpy as np

from ..engine import schedule
from ..engine.data import MAX_BYTES, DecodedPairs, make_loader
from ..engine.loop import train as train_task
from ..engine.task import Optimizer, Task, register_task
from ..zoo.registry import get_model_info
from .config import DetTrainConfig, build_detector
from .data import (DetectionEvalTransform, DetectionTrainTransform, check_image_sizes,
                   open_detection_data)
from .evaluate import COCODetectionEvaluator, eval_batch
from .model import MASK_MODELS
from .rcnn import DetectionTargets

__all__ = ['DetectionTask', 'train_detection', 'pad_batch']


def _batch_list(samples):
    """Training items stay a list (images differ in size): :func:`pad_batch` makes the batch."""
    return samples


def _pipeline(cfg, datasets):
    """(datasets to load from, workers): decoded in memory when every image fits in a quarter
    of MAX_BYTES (judged from the first), else read per image by worker processes."""
    if cfg.pipeline == 'workers':
        return datasets, cfg.workers
    if cfg.pipeline == 'auto':
        first = datasets[0][0][0]
        if first.nbytes * sum(len(d) for d in datasets) > MAX_BYTES // 4:
            return datasets, cfg.workers
    return [DecodedPairs(d) for d in datasets], 0


def pad_batch(items, ctx):
    """(images B x 3 x H x W, DetectionTargets) of training items ``(image 3 x H x W, boxes
    N x 4 corners, labels N, masks N x H x W or None)``: images padded at the bottom and right
    with zeros (the normalized mean), boxes and labels with -1 rows, which GluonCV's samplers
    skip; an image without objects is all -1 rows."""
    sizes = [item[0].shape[1:] for item in items]
    height, width = (max(s[k] for s in sizes) for k in (0, 1))
    count = max(1, max(len(item[1]) for item in items))
    images = np.zeros((len(items), 3, height, width), np.float32)
    boxes = -np.ones((len(items), count, 4), np.float32)
    labels = -np.ones((len(items), count, 1), np.float32)
    masks = None if items[0][3] is None else np.zeros((len(items), count, height, width),
                                                      np.float32)
    for i, (image, box, label, mask) in enumerate(items):
        images[i, :, :image.shape[1], :image.shape[2]] = image
        boxes[i, :len(box)] = box
        labels[i, :len(label), 0] = label
        if masks is not None:
            masks[i, :len(mask), :mask.shape[1], :mask.shape[2]] = mask
    return mx.nd.array(images, ctx=ctx), DetectionTargets(
        mx.nd.array(boxes, ctx=ctx), mx.nd.array(labels, ctx=ctx),
        None if masks is None else mx.nd.array(masks, ctx=ctx), sizes)


def _open(cfg, split, annotations, masks, empty):
    return open_detection_data(cfg.layout, cfg.data_root, split, masks, empty, annotations)


@register_task
class DetectionTask(Task):
    """The detector's losses summed per image; selected on validation box AP (VOC: mAP)."""
    name, config, summary_fields = 'detection', DetTrainConfig, ('model', 'backbone')
    # what a resumed run must share with its checkpoint: the same network and training data
    identity = ('model', 'backbone', 'head', 'classes', 'layout', 'data_root', 'train_split',
                'train_annotations')
    metric, best_key, metric_label = 'val_ap', 'best_ap', 'validation box AP (%)'
    best_label, loss_label = 'val box AP', 'train (RPN + box head + masks, per image)'
    epoch_line = 'epoch %(epoch)d: train loss %(train_loss).4f, val AP %(val_ap).2f%%'
    # imperative: hybridized, a step took as long (3.08 against 3.09 s for two 128 px images
    # with Mask R-CNN) and every image size would build its own graph
    hybridize = None

    def __init__(self):
        self.sets = None

    def datasets(self, cfg):
        """(training, validation) datasets, opened and checked once."""
        if self.sets is None:
            masks = cfg.model in MASK_MODELS
            self.sets = (_open(cfg, cfg.train_split, cfg.train_annotations, masks, cfg.empty),
                         _open(cfg, cfg.val_split, cfg.val_annotations, False, 'keep'))
            train_set, val_set = self.sets
            if list(train_set.classes) != list(val_set.classes):
                raise ValueError('the training classes (%s) are not the validation ones (%s)'
                                 % (', '.join(train_set.classes[:5]),
                                    ', '.join(val_set.classes[:5])))
            if cfg.classes and cfg.classes != len(train_set.classes):
                raise ValueError('--classes %d, but the training data have %d classes'
                                 % (cfg.classes, len(train_set.classes)))
        return self.sets

    def build_model(self, cfg, ctx):
        return build_detector(cfg, len(self.datasets(cfg)[0].classes), ctx)

    def loaders(self, cfg, comm, net, log=print):
        train_set, val_set = self.datasets(cfg)
        limits = net.image_size_limits()
        check_image_sizes(train_set, cfg.short_range(), cfg.max_size, *limits)
        check_image_sizes(val_set, (cfg.test_short, cfg.test_short), cfg.max_size, *limits)
        if comm.rank == 0:
            for what, dataset in (('training', train_set), ('validation', val_set)):
                if getattr(dataset, 'dropped', None):
                    log('%s: %s' % (what, dataset.dropped))
            if cfg.train_split == cfg.val_split and \
                    cfg.train_annotations == cfg.val_annotations:
                log('warning: the validation split is the training split: the best epoch is '
                    'chosen on images the model trains on')
            if cfg.norm == 'sync' and comm.size == 1:
                log('note: --norm sync on one process is plain BatchNorm at the cost of '
                    'synchronized BatchNorm; --norm bn is the same and faster')
        (train_set, val_set), workers = _pipeline(cfg, (train_set, val_set))
        info = get_model_info(cfg.backbone)
        train_loader, sampler = make_loader(
            train_set, DetectionTrainTransform(cfg.short_range(), cfg.max_size, info.mean,
                                               info.std),
            cfg.batch_size, comm.rank, comm.size, train=True, seed=cfg.seed, workers=workers,
            joint=True, batchify=_batch_list)
        val_loader, _ = make_loader(
            val_set, DetectionEvalTransform(cfg.test_short, cfg.max_size, info.mean, info.std),
            1, comm.rank, comm.size, train=False, workers=workers, joint=True,
            batchify=eval_batch)
        return train_loader, sampler, val_loader

    def optimizer(self, cfg):
        return Optimizer('sgd', 16, functools.partial(
            schedule.step_schedule, steps=cfg.decay_epochs(), warmup_iters=cfg.warmup_iters))

    def start_epoch(self, cfg, epoch, rank):
        # GluonCV's RPN sampling draws from NumPy's global generator: seeded per epoch and
        # rank, so a resumed run draws what an uninterrupted one would (the in-memory pipeline
        # also seeds it per image)
        np.random.seed((cfg.seed * 1000 + epoch * 97 + rank) % 2 ** 32)

    def loss(self, net, batch, ctx):
        images, targets = pad_batch(batch, ctx)
        losses = net(images, targets)
        return mx.nd.add_n(*losses.values()), len(batch), {
            'loss_' + name: value.detach().mean() for name, value in losses.items()}

    def meta(self, cfg):
        train_set = self.datasets(cfg)[0]
        return dict(class_names=list(train_set.classes),
                    category_ids=list(train_set.category_ids))

    def evaluator(self, cfg, ctx, net):
        val_set = self.datasets(cfg)[1]
        return COCODetectionEvaluator(val_set.ground_truth, ctx, val_set.category_ids,
                                      masks=cfg.model in MASK_MODELS, metric=cfg.metric)

    def record(self, scores):
        record = dict(val_ap=scores['ap'] if 'ap' in scores else scores['map'])
        if 'ap50' in scores:
            record.update(val_ap50=scores['ap50'])
        if 'mask_ap' in scores:
            record.update(val_mask_ap=scores['mask_ap'])
        return record

    def describe(self, record):
        line = Task.describe(self, record)
        if 'val_mask_ap' in record:
            line += ', mask AP %.2f%%' % record['val_mask_ap']
        losses = ', '.join('%s %.3f' % (key[len('train_loss_'):], value)
                           for key, value in record.items() if key.startswith('train_loss_'))
        return line + ' (%s), %.2f img/s' % (losses, record['img_per_s'])


def train_detection(cfg, comm=None, log=print):
    """Train a detector (a DetTrainConfig) on the engine; returns (net, summary)."""
    return train_task(DetectionTask(), cfg, comm, log)
