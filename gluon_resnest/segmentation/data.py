"""Segmentation data in the layouts users have, and the joint image/label-map transforms.

Readers return ``(HxWx3 uint8 image, HxW float32 label map)`` with ignored pixels set to
``ignore_label`` (255 by default), after checking that the label map has the image's size and
that every other label is a class of the dataset:

- Pascal VOC layout (``JPEGImages/``, ``SegmentationClass/``, ``ImageSets/Segmentation/<split>.txt``;
  255 marks boundaries): read here, for any split file (GluonCV's reader maps ``train`` to
  ``trainval.txt`` and reads no label maps for ``test``).
- ADE20K (``ADEChallengeData2016``) and Cityscapes (``leftImg8bit``/``gtFine``): GluonCV's
  dataset classes find the files and convert the labels (ADE20K's 0 and Cityscapes' unlabelled
  ids are ignored).

GluonCV's training transform pads label maps with 0, a real class; here padding is ignored.
"""
import os
import random

import cv2
import numpy as np
from mxnet.gluon.data import Dataset
from PIL import Image

from ..engine.data import normalize_chw

__all__ = ['SegmentationDataError', 'VOCLayout', 'GluonCVLayout', 'open_dataset',
           'SegmentationTrainTransform', 'SegmentationEvalTransform', 'DATASETS',
           'image_size', 'full_image_loader', 'check_labels', 'BAD_LABELS']


class SegmentationDataError(ValueError):
    """A dataset folder, image or label map that cannot be used."""


def _require_dir(path, what):
    if not os.path.isdir(path):
        raise SegmentationDataError('%s: folder %s not found' % (what, path))


class _Checked(Dataset):
    """Checks every pair it reads: sizes agree, labels are classes or the ignore label.
    Subclasses give ``image_path(i)`` and ``read_label(i)``."""
    classes = None

    def __init__(self, ignore_label=255):
        self.ignore_label = ignore_label

    def _check(self, image_shape, label, name):
        if label.ndim != 2:
            raise SegmentationDataError(
                '%s: the label map has %d channels; it must have one, of class indices (a '
                'palette or grayscale PNG, not a colour-coded RGB one)'
                % (name, label.shape[2] if label.ndim == 3 else 0))
        if tuple(image_shape[:2]) != label.shape[:2]:
            raise SegmentationDataError('%s: the label map is %dx%d but the image is %dx%d'
                                        % (name, label.shape[1], label.shape[0],
                                           image_shape[1], image_shape[0]))
        bad = (label != self.ignore_label) & ((label < 0) | (label >= self.classes))
        if bad.any():
            raise SegmentationDataError(
                '%s: label %d is not a class of this dataset (0..%d) nor the ignore label %d'
                % (name, int(label[bad][0]), self.classes - 1, self.ignore_label))
        return label.astype(np.float32)

    def check_label(self, i):
        """SegmentationDataError naming item ``i``'s label file unless it fits its image and
        the dataset (reads the label map and the image's header only)."""
        self._check(image_size(self, i), self.read_label(i), self.label_path(i))


class VOCLayout(_Checked):
    """``root/JPEGImages/<id>.jpg`` and ``root/SegmentationClass/<id>.png`` (palette PNG,
    255 = ignored) for the ids listed in ``root/ImageSets/Segmentation/<split>.txt``. ``root``
    may also be the folder that holds ``VOC2012``."""

    def __init__(self, root, split='train', classes=21, ignore_label=255):
        super(VOCLayout, self).__init__(ignore_label)
        if os.path.isdir(os.path.join(root, 'VOC2012')):
            root = os.path.join(root, 'VOC2012')
        for sub in ('JPEGImages', 'SegmentationClass', os.path.join('ImageSets', 'Segmentation')):
            _require_dir(os.path.join(root, sub), 'Pascal VOC layout')
        split_file = os.path.join(root, 'ImageSets', 'Segmentation', split + '.txt')
        if not os.path.isfile(split_file):
            have = sorted(f[:-4] for f in os.listdir(os.path.dirname(split_file))
                          if f.endswith('.txt'))
            raise SegmentationDataError('split %r: %s not found; splits here: %s'
                                        % (split, split_file, ', '.join(have) or 'none'))
        with open(split_file) as f:
            ids = [line.strip() for line in f if line.strip()]
        if not ids:
            raise SegmentationDataError('%s lists no images' % split_file)
        self.classes, self.root = classes, root
        self.items = [(os.path.join(root, 'JPEGImages', i + '.jpg'),
                       os.path.join(root, 'SegmentationClass', i + '.png')) for i in ids]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        image_path, label_path = self.items[i]
        try:
            image = np.asarray(Image.open(image_path).convert('RGB'))
        except (OSError, ValueError) as err:
            raise SegmentationDataError('cannot read %s (%s)' % (image_path, err)) from None
        return image, self._check(image.shape, self.read_label(i), label_path)

    def read_label(self, i):
        path = self.items[i][1]
        try:
            return np.asarray(Image.open(path)).astype(np.int64)
        except (OSError, ValueError) as err:
            raise SegmentationDataError('cannot read %s (%s)' % (path, err)) from None

    def image_path(self, i):
        return self.items[i][0]

    def label_path(self, i):
        return self.items[i][1]


class GluonCVLayout(_Checked):
    """ADE20K or Cityscapes through GluonCV's dataset classes (file pairs and label mapping)."""

    LAYOUTS = {'ade20k': ('ADEChallengeData2016', ('images', 'annotations'), 150),
               'cityscapes': ('', ('leftImg8bit', 'gtFine'), 19)}
    # the split names each reader takes -> GluonCV's: its ADE20K reader reads validation/ for
    # any name but 'train', so a typo (or the folder's own name, 'training') would silently
    # train on the validation images
    SPLITS = {'ade20k': {'train': 'train', 'training': 'train', 'val': 'val',
                         'validation': 'val'},
              'cityscapes': {'train': 'train', 'val': 'val', 'trainval': 'trainval'}}

    def __init__(self, name, root, split='train', ignore_label=255):
        super(GluonCVLayout, self).__init__(ignore_label)
        if split not in self.SPLITS[name]:
            raise SegmentationDataError('%s has no split %r; its splits: %s'
                                        % (name, split, ', '.join(self.SPLITS[name])))
        split = self.SPLITS[name][split]
        base, subdirs, self.classes = self.LAYOUTS[name]
        for sub in subdirs:
            _require_dir(os.path.join(root, base, sub), name)
        from .model import gluoncv_part
        cls = gluoncv_part('data', 'ADE20KSegmentation' if name == 'ade20k'
                           else 'CitySegmentation')
        try:
            self.base = cls(root=root, split=split, mode='testval')
        except (AssertionError, RuntimeError) as err:
            raise SegmentationDataError('%s at %s, split %r: no usable image/label pairs (%s)'
                                        % (name, root, split, err or 'a file is missing')) from None
        self.name = name

    def __len__(self):
        return len(self.base)

    def __getitem__(self, i):
        image, label = self.base[i]
        return image.asnumpy(), self._check(image.shape, self._ignored(label),
                                            self.label_path(i))

    def read_label(self, i):
        path = self.label_path(i)
        try:
            with Image.open(path) as label:
                return self._ignored(self.base._mask_transform(label))  # GluonCV's mapping
        except (OSError, ValueError) as err:
            raise SegmentationDataError('cannot read %s (%s)' % (path, err)) from None

    def _ignored(self, label):
        label = label.asnumpy().astype(np.int64)
        label[label == -1] = self.ignore_label  # GluonCV marks ignored pixels -1
        return label

    def image_path(self, i):
        return self.base.images[i]

    def label_path(self, i):
        # GluonCV's ADE20K reader calls them masks, its Cityscapes reader mask_paths
        return (getattr(self.base, 'masks', None) or self.base.mask_paths)[i]


class _Subset(Dataset):
    """Items ``indices`` of a checked dataset (the ones whose labels passed)."""

    def __init__(self, dataset, indices):
        self.dataset, self.indices, self.classes = dataset, indices, dataset.classes

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        return self.dataset[self.indices[i]]

    def image_path(self, i):
        return self.dataset.image_path(self.indices[i])


BAD_LABELS = ('stop', 'skip')


def check_labels(dataset, what, policy='stop', warn=print):
    """Every label map of ``dataset`` checked before training (label maps decoded, images'
    headers read): ``policy`` 'stop' raises SegmentationDataError naming the first bad one,
    'skip' leaves the bad images out, naming each through ``warn``. Returns the dataset to use."""
    bad = []
    for i in range(len(dataset)):
        try:
            dataset.check_label(i)
        except SegmentationDataError as err:
            if policy == 'stop':
                raise SegmentationDataError('%s (%s; --bad-labels skip leaves such images out)'
                                            % (err, what)) from None
            warn('warning: %s left out: %s' % (what, err))
            bad.append(i)
    if not bad:
        return dataset
    if len(bad) == len(dataset):
        raise SegmentationDataError('%s: every label map is bad' % what)
    skipped = set(bad)
    return _Subset(dataset, [i for i in range(len(dataset)) if i not in skipped])


DATASETS = ('voc', 'ade20k', 'cityscapes')


def open_dataset(name, root, split, classes=None, ignore_label=255):
    """A reader by dataset name: 'voc' (any dataset in the Pascal VOC layout; ``classes``
    default 21), 'ade20k' or 'cityscapes'."""
    if name == 'voc':
        return VOCLayout(root, split, classes or 21, ignore_label)
    if name in GluonCVLayout.LAYOUTS:
        return GluonCVLayout(name, root, split, ignore_label)
    raise SegmentationDataError('unknown dataset %r; allowed: %s' % (name, ', '.join(DATASETS)))


def image_size(dataset, i):
    """(height, width) of item ``i``'s image: from the file's header where the dataset has
    files (nothing is decoded), else from the decoded item."""
    if hasattr(dataset, 'image_path'):
        path = dataset.image_path(i)
        try:
            with Image.open(path) as image:
                return image.size[::-1]
        except OSError as err:
            raise SegmentationDataError('cannot read %s (%s)' % (path, err)) from None
    return tuple(dataset[i][0].shape[:2])


def full_image_loader(dataset, transform, batch_size, rank=0, size=1, workers=0):
    """A loader of this rank's shard of whole images (every image exactly once across ranks),
    in batches of up to ``batch_size`` images of one size: a batch is one array, and the images
    of real datasets differ in size. ``transform`` maps (image, label) pairs."""
    from ..engine.data import ShardSampler, _Transformed, data_loader
    by_size = {}
    for i in ShardSampler(len(dataset), rank, size, shuffle=False, pad=False):
        by_size.setdefault(image_size(dataset, i), []).append((0, i))
    batches = [indices[start:start + batch_size] for indices in by_size.values()
               for start in range(0, len(indices), batch_size)]
    return data_loader(_Transformed(dataset, transform, None, joint=True),
                       batch_sampler=batches, num_workers=workers, thread_pool=False)


class SegmentationEvalTransform(object):
    """The whole image, normalized (CHW float32), and its label map."""

    def __init__(self, mean, std):
        self.mean, self.std = mean, std

    def __call__(self, image, label):
        return normalize_chw(image, self.mean, self.std), label


class SegmentationTrainTransform(SegmentationEvalTransform):
    """GluonCV's training augmentation, with padding ignored: mirror with probability 1/2,
    resize so the long side is a random integer in [scale[0], scale[1]] x ``base_size``, pad to
    ``crop_size`` (image 0, labels ``ignore_label``), random ``crop_size`` crop. Draws come from
    Python's ``random``, which the loader seeds per (seed, epoch, record)."""

    def __init__(self, crop_size, base_size, mean, std, ignore_label=255, scale=(0.5, 2.0)):
        super(SegmentationTrainTransform, self).__init__(mean, std)
        self.crop_size, self.base_size = crop_size, base_size
        self.ignore_label, self.scale = ignore_label, scale

    def __call__(self, image, label):
        if random.random() < 0.5:
            image, label = image[:, ::-1], label[:, ::-1]
        long_side = random.randint(int(self.base_size * self.scale[0]),
                                   int(self.base_size * self.scale[1]))
        h, w = image.shape[:2]
        ratio = float(long_side) / max(h, w)
        size = (max(1, int(w * ratio + 0.5)), max(1, int(h * ratio + 0.5)))
        image = cv2.resize(np.ascontiguousarray(image), size, interpolation=cv2.INTER_LINEAR)
        label = cv2.resize(np.ascontiguousarray(label), size, interpolation=cv2.INTER_NEAREST)
        crop = self.crop_size
        pad_h, pad_w = max(crop - size[1], 0), max(crop - size[0], 0)
        if pad_h or pad_w:
            image = np.pad(image, ((0, pad_h), (0, pad_w), (0, 0)))
            label = np.pad(label, ((0, pad_h), (0, pad_w)), constant_values=self.ignore_label)
        y = random.randint(0, image.shape[0] - crop)
        x = random.randint(0, image.shape[1] - crop)
        image, label = image[y:y + crop, x:x + crop], label[y:y + crop, x:x + crop]
        return normalize_chw(image, self.mean, self.std), np.ascontiguousarray(label)
