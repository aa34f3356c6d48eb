"""Data plumbing every task shares: the sampler that shards a dataset across Horovod ranks,
the seeded per-item transform, the loader over a rank's shard, and small datasets held in
memory."""
import os
import random
import zlib

import cv2
import mxnet as mx
import numpy as np
from mxnet.gluon.data import DataLoader, Dataset, Sampler

__all__ = ['ShardSampler', 'make_loader', 'data_loader', 'fits_in_memory', 'DecodedPairs',
           'MAX_SIDE', 'MAX_BYTES', 'normalize_chw']

MAX_SIDE = 64          # images larger than this keep the per-image path
MAX_BYTES = 1 << 30    # decoded size limit per process


def normalize_chw(image, mean, std):
    """An HxWx3 uint8 image as CHW float32, scaled to [0, 1] then normalized by channel."""
    image = (image.astype(np.float32) / 255.0 - np.asarray(mean, np.float32)) / np.asarray(
        std, np.float32)
    return np.ascontiguousarray(image.transpose(2, 0, 1))


class _Transformed(Dataset):
    """Applies ``transform`` to item ``(epoch, index)`` with random generators seeded from
    (seed, epoch, index): augmentation is reproducible, so a resumed run sees what an
    uninterrupted one does (workers are forked once, so the epoch travels with the index)."""

    def __init__(self, dataset, transform, seed, joint=False):
        self.dataset, self.transform, self.seed, self.joint = dataset, transform, seed, joint
        self._owner, self._configured = os.getpid(), os.getpid()

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, item):
        if self._configured != os.getpid():
            self._configured = os.getpid()
            _one_thread_per_worker()
        epoch, i = item
        image, label = self.dataset[i]
        if self.seed is not None:
            s = zlib.crc32(('%d-%d-%d' % (self.seed, epoch, i)).encode())
            random.seed(s)
            np.random.seed(s)
        if self.joint:  # the transform takes and returns the pair (segmentation)
            return self.transform(image, label)
        return self.transform(image), np.float32(label)


def _one_thread_per_worker():
    """In a DataLoader worker process: MXNet on one thread. A worker is forked with its parent's
    thread count (all cores), so N workers beside the training process would run N + 1 times
    the cores' worth of threads and slow each other down. (OpenCV's count is set before the
    fork: :func:`data_loader`.)"""
    import ctypes
    mx.base._LIB.MXSetNumOMPThreads(ctypes.c_int(1))


def data_loader(dataset, **kwargs):
    """MXNet's DataLoader(dataset, **kwargs), its worker processes (forked as it is built)
    started with one OpenCV thread: a worker that changed the count itself hung whenever the
    parent had used OpenCV's thread pool before the fork (a drawing, a resize), as the
    inherited pool's threads do not exist in the child."""
    if not kwargs.get('num_workers'):
        return DataLoader(dataset, **kwargs)
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        return DataLoader(dataset, **kwargs)
    finally:
        cv2.setNumThreads(threads)


class ShardSampler(Sampler):
    """Indices of this rank's shard, reshuffled every epoch from ``seed``.

    ``pad=True`` (training): shards are equal-sized and disjoint within the padded order; the
    order is padded with its own first records so every record is used at least once per epoch.
    ``pad=False`` (evaluation): every record exactly once across ranks, shards differ by <= 1.
    """

    def __init__(self, length, rank=0, size=1, shuffle=True, seed=0, pad=True):
        if not 0 <= rank < size:
            raise ValueError('rank %d is outside 0..%d' % (rank, size - 1))
        self.length, self.rank, self.size = length, rank, size
        self.shuffle, self.seed, self.pad = shuffle, seed, pad
        self.epoch = 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def order(self):
        order = (np.random.RandomState((self.seed or 0) + self.epoch).permutation(self.length)
                 if self.shuffle else np.arange(self.length))
        if self.pad:
            total = -(-self.length // self.size) * self.size
            order = np.concatenate([order, order[:total - self.length]])
        return order

    def __iter__(self):
        return iter(self.order()[self.rank::self.size].tolist())

    def tagged(self):
        """This sampler yielding (epoch, index) pairs."""
        return _EpochTagged(self)

    def __len__(self):
        if self.pad:
            return -(-self.length // self.size)
        return len(range(self.rank, self.length, self.size))


class _EpochTagged(Sampler):
    def __init__(self, sampler):
        self.sampler = sampler

    def __iter__(self):
        return ((self.sampler.epoch, i) for i in self.sampler)

    def __len__(self):
        return len(self.sampler)


def make_loader(dataset, transform, batch_size, rank=0, size=1, train=True, seed=0,
                workers=2, joint=False, batchify=None):
    """A DataLoader over this rank's shard; returns (loader, sampler). ``joint``: ``transform``
    maps (image, label) pairs, e.g. an image and its label map. ``batchify``: how a list of
    transformed items becomes a batch (default: stacked)."""
    sampler = ShardSampler(len(dataset), rank, size, shuffle=train, seed=seed, pad=train)
    data = _Transformed(dataset, transform, seed if train else None, joint)
    loader = data_loader(data, batch_size=batch_size, sampler=sampler.tagged(),
                        last_batch='discard' if train else 'keep', num_workers=workers,
                        thread_pool=False, batchify_fn=batchify)
    return loader, sampler


def fits_in_memory(dataset, first_image=None):
    """True when ``dataset`` holds small images (at most MAX_SIDE px a side) that fit in
    MAX_BYTES decoded, judged from its first image (a RecordDataset's, unless given)."""
    if first_image is None:
        first_image = dataset.read_numpy(0)[0]
    h, w = first_image.shape[:2]
    return max(h, w) <= MAX_SIDE and first_image.nbytes * len(dataset) <= MAX_BYTES


class DecodedPairs(Dataset):
    """Every item of a dataset of (image, label) pairs (a label map, a detection target), read
    and checked once and kept in memory; for small images, where reading dominates the
    per-image transform."""

    def __init__(self, dataset):
        self.items = [dataset[i] for i in range(len(dataset))]
        self.classes = dataset.classes

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]
