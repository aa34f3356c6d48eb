"""Fashion-MNIST instance scenes: garments composed into 128 px scenes (2-6 of them, 28 px
scaled 1-3x, later ones on top), each garment annotated with its box and instance mask (its
visible silhouette), written in COCO's layout (``annotations/instances_<split>.json`` with RLE
masks, ``<split>/`` images) so the demo reads them through the COCO reader. Training scenes
use the first 50,000 training images, validation scenes the other 10,000, test scenes only the
test images (as experiments/scenes.py). A garment hidden below ``min_visible`` pixels is left
out of the annotations; its pixels stay in the image."""
import json
import os

import numpy as np
from PIL import Image

from gluon_resnest.engine.checkpoint import atomic_folder
from .fashion_mnist_data import CLASSES as GARMENTS
from .fashion_mnist_data import DEFAULT_SOURCE, ensure_source, load_split
from .scenes import SOURCE_SPLITS, _source_range, compose_instances, scenes_done

__all__ = ['INSTANCE_COUNTS', 'INSTANCE_SCENE', 'build_instance_scenes', 'annotate']

INSTANCE_COUNTS = (2000, 200, 500)  # scenes per split (train, val, test)
INSTANCE_SCENE = dict(size=128, min_items=2, max_items=6, scale=(1.0, 3.0), max_overlap=0.25)
GENERATOR_VERSION = 1


def annotate(instances, classes, image_id, first_id, min_visible=20):
    """COCO annotations (RLE masks, boxes [x, y, w, h] of the visible silhouette) of an
    instance map; ids from ``first_id``."""
    from pycocotools import mask as mask_utils
    annotations = []
    for k, label in enumerate(classes):
        mask = (instances == k + 1).astype(np.uint8)
        if mask.sum() < min_visible:
            continue
        ys, xs = np.nonzero(mask)
        rle = mask_utils.encode(np.asfortranarray(mask))
        rle['counts'] = rle['counts'].decode('ascii')
        x, y = int(xs.min()), int(ys.min())
        annotations.append(dict(id=first_id + len(annotations), image_id=image_id,
                                category_id=label + 1, iscrowd=0, segmentation=rle,
                                area=int(mask.sum()),
                                bbox=[x, y, int(xs.max()) + 1 - x, int(ys.max()) + 1 - y]))
    return annotations


def build_instance_scenes(out_dir, counts=INSTANCE_COUNTS, seed=0, source=DEFAULT_SOURCE,
                          install=True):
    """Write ``out_dir`` in COCO's layout with ``counts`` (train, val, test) scenes; returns
    ``out_dir``. A complete folder made with the same arguments is kept; the folder appears
    under its name only when complete."""
    spec = dict(counts=list(counts), seed=seed, classes=list(GARMENTS),
                generator=GENERATOR_VERSION, **{k: list(v) if isinstance(v, tuple) else v
                                                for k, v in INSTANCE_SCENE.items()})
    if scenes_done(out_dir, spec):
        return out_dir
    source = ensure_source(source, install)
    categories = [dict(id=k + 1, name=name) for k, name in enumerate(GARMENTS)]
    with atomic_folder(out_dir) as tmp:
        os.makedirs(os.path.join(tmp, 'annotations'))
        loaded = {}
        for number, (split, count) in enumerate(zip(('train', 'val', 'test'), counts)):
            source_split = SOURCE_SPLITS[split][0]
            if source_split not in loaded:
                loaded[source_split] = load_split(source, source_split)
            lo, hi = _source_range(split, len(loaded[source_split][1]))
            images, labels = (a[lo:hi] for a in loaded[source_split])
            rng = np.random.RandomState([seed, number, 17])
            os.makedirs(os.path.join(tmp, split))
            data = dict(images=[], annotations=[], categories=categories)
            for i in range(count):
                image, instances, classes = compose_instances(rng, images, labels,
                                                              **INSTANCE_SCENE)
                name = '%s_%05d.png' % (split, i)
                Image.fromarray(image).save(os.path.join(tmp, split, name))
                data['images'].append(dict(id=i + 1, file_name=name, width=image.shape[1],
                                           height=image.shape[0]))
                data['annotations'] += annotate(instances, classes, i + 1,
                                                len(data['annotations']) + 1)
            with open(os.path.join(tmp, 'annotations', 'instances_%s.json' % split), 'w') as f:
                json.dump(data, f)
        with open(os.path.join(tmp, 'scenes.json'), 'w') as f:
            json.dump(spec, f)
    return out_dir
