"""Fashion-MNIST scenes: real garment images composed into segmentation scenes, written in the
Pascal VOC layout so the demo reads them through the same reader as real data.

Each scene is a ``size`` x ``size`` canvas of faint noise with 1-3 garments pasted at random
positions and scales (28 px scaled by 1-1.6), later garments on top, their boxes overlapping
by at most a quarter. A pixel's label is the visible garment's class + 1 inside that garment's
silhouette (its pixels brighter than ``threshold`` and the darker ones they enclose), else 0
(background). Training scenes use the first 50,000 training images, validation scenes the
other 10,000 (so no garment is shared), test scenes only the 10,000 test images. The generator
is a function of (seed, split, scene index): the same call writes the same files.
"""
import json
import os

import cv2
import numpy as np
from PIL import Image
from scipy import ndimage

from gluon_resnest.engine.checkpoint import atomic_folder
from .fashion_mnist_data import CLASSES as GARMENTS
from .fashion_mnist_data import (DEFAULT_SOURCE, ensure_source, load_split,
                                      records_exist, write_records)

__all__ = ['SCENE_CLASSES', 'SCENE_COUNTS', 'SOURCE_SPLITS', 'compose_scene', 'compose_instances',
           'build_scenes',
           'build_pretraining_records']

SCENE_CLASSES = ('background',) + GARMENTS
# scene split -> (Fashion-MNIST split, fraction range of its images): of the 60,000 training
# images 0-49,999 make training scenes and 50,000-59,999 validation scenes
SOURCE_SPLITS = {'train': ('train', (0, 5 / 6)), 'val': ('train', (5 / 6, 1)),
                 'test': ('test', (0, 1))}


def _source_range(split, count):
    """(first, end) indices of ``split``'s images in a source split of ``count`` images."""
    lo, hi = SOURCE_SPLITS[split][1]
    return int(round(lo * count)), int(round(hi * count))
# scenes per split (train, val, test) of the demo
SCENE_COUNTS = (3000, 500, 1000)
# a fixed palette for the label PNGs (VOC-style: the file stores class indices)
_PALETTE = np.random.RandomState(7).randint(0, 256, (256, 3)).astype(np.uint8)
_PALETTE[0] = 0
GENERATOR_VERSION = 3  # recorded in scenes.json: scenes from another generator are rebuilt


def compose_scene(rng, images, labels, size=64, max_items=3, threshold=20, max_scale=1.6,
                  max_overlap=0.25, attempts=10):
    """(size x size x 3 uint8 image, size x size uint8 label map) from garments drawn with the
    numpy RandomState ``rng`` out of ``images``/``labels``. A garment whose box would cover
    more than ``max_overlap`` of an earlier garment's box, or be covered so, is moved (up to
    ``attempts`` positions) or left out: occlusion stays partial, as in real scenes."""
    image, instances, classes = compose_instances(rng, images, labels, size, 1, max_items,
                                                  threshold, (1.0, max_scale), max_overlap,
                                                  attempts)
    label_map = np.zeros((size, size), np.uint8)
    for k, label in enumerate(classes):
        label_map[instances == k + 1] = label + 1
    return image, label_map


def compose_instances(rng, images, labels, size=64, min_items=1, max_items=3, threshold=20,
                      scale=(1.0, 1.6), max_overlap=0.25, attempts=10):
    """(size x size x 3 uint8 image, size x size instance map, garment classes): garment k
    (from 1, in pasting order) is visible where the map is k; 28 px garments scaled by a
    factor drawn from ``scale``, ``min_items`` to ``max_items`` of them (see
    :func:`compose_scene`)."""
    canvas = rng.randint(0, 24, (size, size)).astype(np.uint8)
    instances = np.zeros((size, size), np.int32)
    boxes, classes = [], []
    for _ in range(rng.randint(min_items, max_items + 1)):
        k = rng.randint(len(images))
        side = min(int(round(28 * rng.uniform(*scale))), size)
        for _ in range(attempts):
            y, x = rng.randint(0, size - side + 1), rng.randint(0, size - side + 1)
            if all(_overlap((y, x, side), box) <= max_overlap for box in boxes):
                break
        else:
            continue
        boxes.append((y, x, side))
        garment = cv2.resize(images[k], (side, side), interpolation=cv2.INTER_LINEAR)
        # the garment's silhouette: its bright pixels and the dark ones they enclose (a dark
        # print on a shirt is shirt), as an annotator would outline it
        visible = ndimage.binary_fill_holes(garment > threshold)
        canvas[y:y + side, x:x + side][visible] = garment[visible]
        classes.append(int(labels[k]))
        instances[y:y + side, x:x + side][visible] = len(classes)
    return np.repeat(canvas[:, :, None], 3, axis=2), instances, classes


def _overlap(a, b):
    """Intersection of two square boxes (y, x, side) over the smaller box's area."""
    (ya, xa, sa), (yb, xb, sb) = a, b
    h = max(0, min(ya + sa, yb + sb) - max(ya, yb))
    w = max(0, min(xa + sa, xb + sb) - max(xa, xb))
    return h * w / float(min(sa, sb) ** 2)


def scenes_done(out_dir, spec):
    """True when ``out_dir`` holds complete scenes made with ``spec`` (its ``scenes.json``);
    FileExistsError when it holds anything else than scenes."""
    done = os.path.join(out_dir, 'scenes.json')
    if os.path.isfile(done):
        with open(done) as f:
            return json.load(f) == spec
    if os.path.isdir(out_dir) and os.listdir(out_dir):
        raise FileExistsError('%s exists and is not a scenes folder (no scenes.json): choose '
                              'another folder' % out_dir)
    return False


def build_scenes(out_dir, counts=SCENE_COUNTS, size=64, seed=0, source=DEFAULT_SOURCE,
                 install=True):
    """Write ``out_dir`` in the VOC layout (JPEGImages/, SegmentationClass/,
    ImageSets/Segmentation/{train,val,test}.txt) with ``counts`` scenes per split; returns
    ``out_dir``. A complete folder made with the same arguments is kept; the folder appears
    under its name only when complete."""
    spec = dict(counts=list(counts), size=size, seed=seed, classes=list(SCENE_CLASSES),
                generator=GENERATOR_VERSION)
    if scenes_done(out_dir, spec):
        return out_dir
    source = ensure_source(source, install)
    with atomic_folder(out_dir) as tmp:
        for sub in ('JPEGImages', 'SegmentationClass', os.path.join('ImageSets', 'Segmentation')):
            os.makedirs(os.path.join(tmp, sub))
        loaded = {}
        for split, count in zip(('train', 'val', 'test'), counts):
            source_split = SOURCE_SPLITS[split][0]
            if source_split not in loaded:
                loaded[source_split] = load_split(source, source_split)
            lo, hi = _source_range(split, len(loaded[source_split][1]))
            images, labels = (a[lo:hi] for a in loaded[source_split])
            rng = np.random.RandomState([seed, ('train', 'val', 'test').index(split)])
            ids = []
            for i in range(count):
                image, label_map = compose_scene(rng, images, labels, size)
                name = '%s_%05d' % (split, i)
                Image.fromarray(image).save(os.path.join(tmp, 'JPEGImages', name + '.jpg'),
                                            quality=95)
                png = Image.fromarray(label_map, mode='P')
                png.putpalette(_PALETTE.ravel().tolist())
                png.save(os.path.join(tmp, 'SegmentationClass', name + '.png'))
                ids.append(name)
            with open(os.path.join(tmp, 'ImageSets', 'Segmentation', split + '.txt'), 'w') as f:
                f.write('\n'.join(ids) + '\n')
        with open(os.path.join(tmp, 'scenes.json'), 'w') as f:
            json.dump(spec, f)
    return out_dir


def build_pretraining_records(out_dir, source=DEFAULT_SOURCE, install=True):
    """Classification RecordIO files of the garments behind the training and validation scenes
    (``train.rec``: training images 0-49,999; ``val.rec``: 50,000-59,999), for pretraining a
    backbone as ImageNet pretraining does for real segmentation; the test images are not used.
    Returns {'train': path, 'val': path}; complete files are kept."""
    os.makedirs(out_dir, exist_ok=True)
    paths, images = {}, None
    for split in ('train', 'val'):
        prefix = os.path.join(out_dir, split)
        paths[split] = prefix + '.rec'
        if records_exist(paths[split]):
            continue
        if images is None:
            images, labels = load_split(ensure_source(source, install), 'train')
        lo, hi = _source_range(split, len(labels))
        write_records(prefix, images[lo:hi], labels[lo:hi])
    return paths
