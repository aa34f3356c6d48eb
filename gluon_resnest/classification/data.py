"""RecordIO image data and the paper's train/eval transforms (sharding: engine.data)."""
import os
import random

import cv2
import mxnet as mx
import numpy as np
from mxnet.gluon.data import Dataset
from mxnet.gluon.data.vision import transforms as T

from .autoaugment import ImageNetPolicy

__all__ = ['RecordDataset', 'train_transform', 'eval_transform', 'eval_resize_crop',
           'RecordError', 'write_records', 'records_exist']

# OpenCV interpolation codes, as mxnet.image and the Gluon transforms take them
INTERPOLATION = {'bilinear': 1, 'bicubic': 3}


class RecordError(ValueError):
    """A record that cannot be read, decoded or labelled."""


def _check_files(rec_path):
    idx_path = os.path.splitext(rec_path)[0] + '.idx'
    for path, what in ((rec_path, 'RecordIO file'), (idx_path, 'index file (.idx)')):
        if not os.path.isfile(path):
            raise FileNotFoundError('%s %s not found%s' % (
                what, path, '; im2rec writes it next to the .rec' if path == idx_path else ''))
    return idx_path


class RecordDataset(Dataset):
    """Images and integer labels from a RecordIO pair ``x.rec`` + ``x.idx``.

    The file is opened lazily in each process, so DataLoader workers never share a handle.
    ``classes`` makes a label outside ``0..classes-1`` an error that names the record.
    """

    def __init__(self, rec_path, classes=None, flag=1):
        self.rec_path = rec_path
        self.idx_path = _check_files(rec_path)
        with open(self.idx_path) as f:
            self.keys = [int(line.split('\t', 1)[0]) for line in f if line.strip()]
        if not self.keys:
            raise RecordError('%s lists no records' % self.idx_path)
        self.classes = classes
        self.flag = flag
        self._reader, self._pid = None, None

    def __len__(self):
        return len(self.keys)

    def _record(self, key):
        if self._pid != os.getpid():
            self._reader = mx.recordio.MXIndexedRecordIO(self.idx_path, self.rec_path, 'r')
            self._pid = os.getpid()
        return self._reader.read_idx(key)

    def read(self, i):
        """(HWC uint8 image NDArray, int label) of record number ``i``."""
        image, label = self.read_numpy(i)
        return mx.nd.array(image, dtype='uint8'), label

    def read_numpy(self, i):
        """(HWC uint8 NumPy image, int label) of record number ``i``."""
        key = self.keys[i]
        try:
            header, payload = mx.recordio.unpack(self._record(key))
            # OpenCV directly: much cheaper per small image than the mx.image.imdecode operator
            image = cv2.imdecode(np.frombuffer(payload, np.uint8),
                                 cv2.IMREAD_COLOR if self.flag else cv2.IMREAD_GRAYSCALE)
            if image is None:
                raise ValueError('not a decodable image')
            image = np.ascontiguousarray(image[:, :, ::-1]) if self.flag else image[:, :, None]
        except Exception as err:
            raise RecordError('record %d of %s is corrupt (%s: %s)' % (
                key, self.rec_path, type(err).__name__, err)) from None
        label = header.label
        label = int(label if np.isscalar(label) else label[0])
        if self.classes is not None and not 0 <= label < self.classes:
            raise RecordError('record %d of %s has label %d; the model has %d classes, so labels '
                              'must lie in 0..%d' % (key, self.rec_path, label, self.classes,
                                                     self.classes - 1))
        return image, label

    def __getitem__(self, i):
        return self.read(i)


class _AutoAugment(object):
    def __init__(self):
        self.policy = ImageNetPolicy()

    def __call__(self, image):
        from PIL import Image
        out = self.policy(Image.fromarray(image.asnumpy()))
        return mx.nd.array(np.asarray(out), dtype='uint8')


class _ColorJitter(object):
    """mx.image's brightness, contrast and saturation jitter in an order drawn per image (its
    ColorJitterAug shuffles its own list in place, so the order would depend on history)."""

    def __init__(self, strength):
        self.augs = mx.image.ColorJitterAug(strength, strength, strength).ts

    def __call__(self, image):
        for aug in random.sample(self.augs, len(self.augs)):
            image = aug(image)
        return image


# AlexNet's PCA of ImageNet RGB (0-255 scale), as mx.image.CreateAugmenter uses for pca_noise
PCA_EIGVAL = np.array([55.46, 4.794, 1.148])
PCA_EIGVEC = np.array([[-0.5675, 0.7192, 0.4009],
                       [-0.5808, -0.0045, -0.8140],
                       [-0.5836, -0.6948, 0.4203]])


def train_transform(size, mean, std, min_scale=0.08, jitter=0.4, lighting=0.1,
                    autoaugment=False, interpolation='bilinear'):
    """Random resized crop, flip, (AutoAugment), color jitter, PCA lighting, normalization.

    Every random draw comes from Python's or NumPy's generator (the mx.image augmenters, not the
    Gluon operators that draw from MXNet's): those are re-seeded per sample for reproducible
    runs in microseconds, where re-seeding MXNet's costs ~1 ms, more than the augmentation."""
    steps = [T.RandomResizedCrop(size, scale=(min_scale, 1.0),
                                 interpolation=INTERPOLATION[interpolation]),
             mx.image.HorizontalFlipAug(0.5)]
    if autoaugment:
        steps.append(_AutoAugment())
    if jitter or lighting:
        steps.append(mx.image.CastAug('float32'))
    if jitter:
        steps.append(_ColorJitter(jitter))
    if lighting:
        steps.append(mx.image.LightingAug(lighting, PCA_EIGVAL, PCA_EIGVEC))
    steps += [T.ToTensor(), T.Normalize(mean, std)]
    return T.Compose(steps)


def eval_resize_crop(crop, crop_ratio=0.875):
    """The evaluation geometry: resize the short side to crop / crop_ratio (bicubic above
    256 px), centre crop; a list of transforms on HWC uint8 images."""
    interpolation = INTERPOLATION['bicubic' if crop > 256 else 'bilinear']
    return [T.Resize(int(round(crop / crop_ratio)), keep_ratio=True,
                     interpolation=interpolation),
            T.CenterCrop(crop, interpolation=interpolation)]


def eval_transform(crop, mean, std, crop_ratio=0.875):
    """``eval_resize_crop``, then ToTensor and normalization."""
    return T.Compose(eval_resize_crop(crop, crop_ratio) + [T.ToTensor(), T.Normalize(mean, std)])


def write_records(prefix, images, labels):
    """Write ``prefix.rec`` / ``prefix.idx`` atomically: PNG-encoded images (HxW gray or HxWx3
    RGB uint8) with their labels."""
    tmp_rec, tmp_idx = prefix + '.rec.tmp', prefix + '.idx.tmp'
    writer = mx.recordio.MXIndexedRecordIO(tmp_idx, tmp_rec, 'w')
    for i, (image, label) in enumerate(zip(images, labels)):
        ok, png = cv2.imencode('.png', image[:, :, ::-1] if image.ndim == 3 else image)
        if not ok:
            raise ValueError('cannot encode image %d' % i)
        writer.write_idx(i, mx.recordio.pack(mx.recordio.IRHeader(0, float(label), i, 0),
                                             png.tobytes()))
    writer.close()
    os.replace(tmp_rec, prefix + '.rec')
    os.replace(tmp_idx, prefix + '.idx')
    return prefix + '.rec'


def records_exist(rec_path):
    """Whether ``x.rec`` and its ``x.idx`` are both there (write_records puts each in place
    whole)."""
    return os.path.isfile(rec_path) and os.path.isfile(os.path.splitext(rec_path)[0] + '.idx')
