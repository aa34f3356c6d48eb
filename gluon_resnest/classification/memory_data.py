"""Small-image datasets decoded once into memory and augmented a whole batch at a time.

For 28-64 px images (Fashion-MNIST: 47 MB decoded) the per-image path (a DataLoader worker
decoding each record and running MXNet's image operators on it) costs more CPU than the
model's own forward/backward. Here every record is decoded once, and a batch is augmented in
the training process with OpenCV/NumPy: the same random resized crop, flip, colour jitter and
PCA lighting as ``data.train_transform`` (and optionally random erasing), each record's draws
taken from a table made per (seed, epoch), so augmentation stays a function of (seed, epoch,
record) and a resumed run sees what an uninterrupted one does. Large images (ImageNet) keep the
per-image path, where decoding dominates and workers pay off.
"""
import math
from concurrent.futures import ThreadPoolExecutor

import cv2
import mxnet as mx
import numpy as np

from ..engine.data import ShardSampler, fits_in_memory, make_loader
from .data import INTERPOLATION, PCA_EIGVAL, PCA_EIGVEC, eval_resize_crop, eval_transform

__all__ = ['decode_all', 'BatchAugment', 'MemoryLoader', 'evaluation_loader']

_ATTEMPTS = 10         # random resized crop: draws before the centre-crop fallback (as mx.image)
_GRAY = np.array([0.299, 0.587, 0.114], np.float32)  # mx.image's contrast/saturation weights


def decode_all(dataset):
    """(N x H x W x C uint8 images, N int64 labels) of every record; all images must share a
    size (the per-image path handles mixed sizes)."""
    images, labels = [], []
    for i in range(len(dataset)):
        image, label = dataset.read_numpy(i)
        if images and image.shape != images[0].shape:
            raise ValueError('%s: record %d is %s, record 0 is %s; images of mixed sizes need '
                             'the per-image pipeline (--pipeline workers)'
                             % (dataset.rec_path, i, 'x'.join(map(str, image.shape)),
                                'x'.join(map(str, images[0].shape))))
        images.append(image)
        labels.append(label)
    return np.stack(images), np.asarray(labels, np.int64)


class BatchAugment(object):
    """``data.train_transform`` (without AutoAugment) for a batch of same-sized uint8 images,
    then, with probability ``erase_prob``, random erasing (Zhong et al., 2017): a rectangle of
    ``erase_area`` of the image at aspect ratio (height / width) in [erase_ratio,
    1 / erase_ratio], its pixels replaced by uniform random values in [0, 255] (the paper's
    RE-R); sizes are drawn until one fits, then the position is uniform over where it fits.

    ``draws(seed, epoch, n)`` makes the epoch's table of random numbers, one row per record;
    ``__call__(images, rows)`` augments ``images`` with their records' rows and returns float32
    N x size x size x C pixels on the 0-255 scale (before ToTensor's /255 and normalization).
    """

    def __init__(self, size, min_scale=0.08, jitter=0.0, lighting=0.0,
                 interpolation='bilinear', ratio=(3.0 / 4.0, 4.0 / 3.0), erase_prob=0.0,
                 erase_area=(0.02, 0.4), erase_ratio=0.3):
        self.size, self.min_scale = size, min_scale
        self.erase_prob, self.erase_area, self.erase_ratio = erase_prob, erase_area, erase_ratio
        self.jitter, self.lighting = jitter, lighting
        self.interp = INTERPOLATION[interpolation]
        self.log_ratio = (math.log(ratio[0]), math.log(ratio[1]))

    def draws(self, seed, epoch, n):
        rng = np.random.default_rng([seed, epoch])
        rows = dict(area=rng.uniform(self.min_scale, 1.0, (n, _ATTEMPTS)),
                    log_ratio=rng.uniform(self.log_ratio[0], self.log_ratio[1], (n, _ATTEMPTS)),
                    position=rng.random((n, 2)), flip=rng.random(n) < 0.5,
                    jitter=rng.uniform(-self.jitter, self.jitter, (n, 3)),
                    order=np.argsort(rng.random((n, 3)), axis=1),
                    lighting=rng.normal(0.0, self.lighting, (n, 3)) if self.lighting else None)
        if self.erase_prob:  # drawn after the others: without erasing the table is unchanged
            rows.update(erase=rng.random(n) < self.erase_prob,
                        erase_area=rng.uniform(*self.erase_area, (n, _ATTEMPTS)),
                        erase_ratio=rng.uniform(self.erase_ratio, 1.0 / self.erase_ratio,
                                                (n, _ATTEMPTS)),
                        erase_position=rng.random((n, 2)),
                        erase_seed=rng.integers(0, 2 ** 63, n))
        return rows

    def erase_boxes(self, rows):
        """(x0, y0, w, h) of each row's erased rectangle in the output (w = h = 0: none)."""
        area = rows['erase_area'] * float(self.size * self.size)
        box_h = np.round(np.sqrt(area * rows['erase_ratio'])).astype(np.int64)
        box_w = np.round(np.sqrt(area / rows['erase_ratio'])).astype(np.int64)
        fits = (box_w < self.size) & (box_h < self.size)
        first = np.argmax(fits, axis=1)
        pick = np.arange(len(first))
        erased = rows['erase'] & fits.any(axis=1)
        box_w = np.where(erased, box_w[pick, first], 0)
        box_h = np.where(erased, box_h[pick, first], 0)
        x0 = np.floor(rows['erase_position'][:, 0] * (self.size - box_w + 1)).astype(np.int64)
        y0 = np.floor(rows['erase_position'][:, 1] * (self.size - box_h + 1)).astype(np.int64)
        return x0, y0, box_w, box_h

    def crop_boxes(self, height, width, rows):
        """(x0, y0, w, h) per row: mx.image.random_size_crop's rule (the first of its attempts
        whose box fits, else its centre crop) on this table's draws."""
        area = rows['area'] * (height * width)
        ratio = np.exp(rows['log_ratio'])
        box_w = np.round(np.sqrt(area * ratio)).astype(np.int64)
        box_h = np.round(np.sqrt(area / ratio)).astype(np.int64)
        fits = (box_w <= width) & (box_h <= height)
        first = np.argmax(fits, axis=1)
        pick = np.arange(len(first))
        box_w, box_h = box_w[pick, first], box_h[pick, first]
        # random.randint(0, w - new_w) from a uniform draw: every offset equally likely
        x0 = np.floor(rows['position'][:, 0] * (width - box_w + 1)).astype(np.int64)
        y0 = np.floor(rows['position'][:, 1] * (height - box_h + 1)).astype(np.int64)
        # no attempt fits: mx.image.center_crop to the output size, scaled down to fit
        fallback = ~fits.any(axis=1)
        fall_w, fall_h = mx.image.scale_down((width, height), (self.size, self.size))
        box_w[fallback], box_h[fallback] = fall_w, fall_h
        x0[fallback], y0[fallback] = int((width - fall_w) / 2), int((height - fall_h) / 2)
        return x0, y0, box_w, box_h

    def __call__(self, images, rows):
        n, height, width, channels = images.shape
        x0, y0, box_w, box_h = self.crop_boxes(height, width, rows)
        out = np.empty((n, self.size, self.size, channels), np.float32)
        for k in range(n):
            crop = images[k, y0[k]:y0[k] + box_h[k], x0[k]:x0[k] + box_w[k]]
            if crop.shape[:2] != (self.size, self.size):
                crop = cv2.resize(crop, (self.size, self.size), interpolation=self.interp)
            if crop.ndim == 2:
                crop = crop[:, :, None]
            out[k] = crop[:, ::-1] if rows['flip'][k] else crop
        if self.jitter:
            self._color_jitter(out, rows)
        if self.lighting:
            # mx.image.LightingAug: one RGB offset per image from the PCA of ImageNet colours
            out += ((PCA_EIGVEC[None] * rows['lighting'][:, None, :]) @ PCA_EIGVAL).astype(
                np.float32)[:, None, None, :]
        if self.erase_prob:
            self._erase(out, rows)
        return out

    def _erase(self, out, rows):
        x0, y0, box_w, box_h = self.erase_boxes(rows)
        for k in np.nonzero(box_w)[0]:
            # the fill comes from the record's own seed: a function of (seed, epoch, record)
            noise = np.random.default_rng(rows['erase_seed'][k]).uniform(
                0.0, 255.0, (box_h[k], box_w[k], out.shape[3]))
            out[k, y0[k]:y0[k] + box_h[k], x0[k]:x0[k] + box_w[k]] = noise

    @staticmethod
    def _color_jitter(out, rows):
        """mx.image's brightness, contrast and saturation jitter, each image in its own order."""
        alpha = (1.0 + rows['jitter']).astype(np.float32)
        for position in range(3):
            for op in range(3):
                chosen = np.nonzero(rows['order'][:, position] == op)[0]
                if not len(chosen):
                    continue
                a = alpha[chosen, op][:, None, None, None]
                part = out[chosen]
                if op == 0:    # brightness
                    part = part * a
                elif op == 1:  # contrast: towards the image's mean gray
                    mean_gray = (part * _GRAY).sum(axis=(1, 2, 3), keepdims=True) * (
                        3.0 / part[0].size)
                    part = part * a + mean_gray * (1.0 - a)
                else:          # saturation: towards each pixel's gray
                    gray = (part * _GRAY).sum(axis=3, keepdims=True)
                    part = part * a + gray * (1.0 - a)
                out[chosen] = part


class MemoryLoader(object):
    """Batches of (normalized NCHW float32 data, float32 labels) over a sampler's shard of
    in-memory images: augmented by ``augment`` (training) or resized and centre-cropped once
    as ``data.eval_transform`` does (evaluation, ``augment=None``). Training drops the last
    partial batch, evaluation keeps it (as ``data.make_loader``)."""

    def __init__(self, images, labels, sampler, batch_size, mean, std, augment=None, seed=0,
                 eval_size=None, crop_ratio=1.0):
        self.labels, self.sampler, self.batch_size = labels, sampler, batch_size
        self.augment, self.seed = augment, seed
        self.mean = np.asarray(mean, np.float32) * 255.0
        self.std = np.asarray(std, np.float32) * 255.0
        if augment is None and eval_size is not None:
            images = _eval_images(images, eval_size, crop_ratio)
        self.images = images

    def __len__(self):
        n = len(self.sampler)
        return n // self.batch_size if self.augment else -(-n // self.batch_size)

    def __iter__(self):
        order = np.fromiter(iter(self.sampler), np.int64)
        rows = (self.augment.draws(self.seed, self.sampler.epoch, len(self.images))
                if self.augment else None)
        batches = [order[start:start + self.batch_size]
                   for start in range(0, len(self) * self.batch_size, self.batch_size)]
        # the next batch is made in a thread (OpenCV and NumPy release the GIL) while the
        # model computes this one: made in line, the model would wait for it every step
        with ThreadPoolExecutor(1) as pool:
            future = pool.submit(self._batch, batches[0], rows) if batches else None
            for k in range(len(batches)):
                pixels, labels = future.result()
                if k + 1 < len(batches):
                    future = pool.submit(self._batch, batches[k + 1], rows)
                yield mx.nd.array(pixels, dtype='float32'), mx.nd.array(labels, dtype='float32')

    def _batch(self, index, rows):
        if rows is not None:
            pixels = self.augment(self.images[index], {key: None if value is None
                                                       else value[index]
                                                       for key, value in rows.items()})
        else:
            pixels = self.images[index].astype(np.float32)
        pixels = ((pixels - self.mean) / self.std).transpose(0, 3, 1, 2)
        return np.ascontiguousarray(pixels), self.labels[index]


def evaluation_loader(dataset, batch_size, mean, std, size, crop_ratio, rank=0, ranks=1,
                      workers=2, memory=None):
    """Batches of this rank's share of ``dataset`` (every record exactly once across ranks)
    with the evaluation preprocessing: from memory (``memory=None``: when the images are small
    enough), else through per-image DataLoader workers."""
    if memory is None:
        memory = fits_in_memory(dataset)
    if not memory:
        return make_loader(dataset, eval_transform(size, mean, std, crop_ratio), batch_size,
                           rank, ranks, train=False, workers=workers)[0]
    sampler = ShardSampler(len(dataset), rank, ranks, shuffle=False, pad=False)
    return MemoryLoader(*decode_all(dataset), sampler, batch_size, mean, std, eval_size=size,
                        crop_ratio=crop_ratio)


def _eval_images(images, size, crop_ratio):
    """The evaluation resize and centre crop of every image, once (uint8, as the per-image
    path has them before ToTensor); a no-op for images already at the input size."""
    if images.shape[1:3] == (size, size) and int(round(size / crop_ratio)) == size:
        return images
    steps = eval_resize_crop(size, crop_ratio)
    out = []
    for image in images:
        x = mx.nd.array(image, dtype='uint8')
        for step in steps:
            x = step(x)
        out.append(x.asnumpy())
    return np.stack(out)
