"""Tiny detection datasets written in the layouts users have (COCO, a COCO-format folder,
Pascal VOC): images of flat-coloured rectangles and ellipses on noise, each object with its box
and (COCO) its polygon outline; the helpers return the ground truth they wrote."""
import json
import os

import cv2
import numpy as np

# category ids are not contiguous, as in COCO
CATEGORIES = ((3, 'square'), (7, 'disc'))


def _scene(rng, height, width, count):
    image = rng.randint(0, 60, (height, width, 3)).astype(np.uint8)
    objects = []
    for _ in range(count):
        w, h = rng.randint(width // 5, width // 2), rng.randint(height // 5, height // 2)
        x, y = rng.randint(0, width - w), rng.randint(0, height - h)
        kind = rng.randint(2)
        if kind == 0:
            cv2.rectangle(image, (x, y), (x + w - 1, y + h - 1), (220, 40, 40), -1)
            polygon = [x, y, x + w, y, x + w, y + h, x, y + h]
        else:
            centre, axes = (x + w / 2.0, y + h / 2.0), (w / 2.0, h / 2.0)
            angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
            points = np.stack([centre[0] + axes[0] * np.cos(angles),
                               centre[1] + axes[1] * np.sin(angles)], 1)
            cv2.fillPoly(image, [np.round(points).astype(np.int32)], (40, 200, 60))
            polygon = [round(float(v), 2) for v in points.ravel()]
        objects.append((CATEGORIES[kind][0], [float(x), float(y), float(w), float(h)], polygon))
    return image, objects


def write_coco(folder, images=6, size=(96, 128), seed=0, split='train', layout='coco',
               objects=(1, 3)):
    """A COCO-format dataset: ``layout='coco'`` writes COCO's folders
    (``annotations/instances_<split>.json``, ``<split>/``) under ``folder``; 'coco-json' writes
    ``<split>.json`` beside an ``images/`` folder. Returns (annotation path, image folder,
    the JSON dict)."""
    rng = np.random.RandomState(seed)
    if layout == 'coco':
        image_dir = os.path.join(folder, split)
        ann_path = os.path.join(folder, 'annotations', 'instances_%s.json' % split)
    else:
        image_dir = os.path.join(folder, 'images')
        ann_path = os.path.join(folder, split + '.json')
    os.makedirs(image_dir, exist_ok=True)
    os.makedirs(os.path.dirname(ann_path), exist_ok=True)
    data = dict(images=[], annotations=[], categories=[dict(id=i, name=n)
                                                      for i, n in CATEGORIES])
    for n in range(images):
        image_id = 1000 + 7 * n + seed  # the dataset's own ids: not 0..n-1
        image, found = _scene(rng, size[0], size[1], rng.randint(objects[0], objects[1] + 1))
        name = '%s_%03d.jpg' % (split, n)
        cv2.imwrite(os.path.join(image_dir, name), image[:, :, ::-1],
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
        data['images'].append(dict(id=image_id, file_name=name, height=size[0], width=size[1]))
        for category, box, polygon in found:
            data['annotations'].append(dict(
                id=len(data['annotations']) + 1, image_id=image_id, category_id=category,
                bbox=box, area=box[2] * box[3], iscrowd=0, segmentation=[polygon]))
    with open(ann_path, 'w') as f:
        json.dump(data, f)
    return ann_path, image_dir, data


def write_voc(folder, ids=('a', 'b', 'c'), split='trainval', size=(96, 128), seed=0,
              classes=('cat', 'dog')):
    """A Pascal VOC folder; objects of ``classes[0]`` (rectangles) and ``classes[1]``
    (discs), 1-based inclusive corners, the second object of each image difficult. Returns
    {id: [(class, x1, y1, x2, y2 0-based, difficult)]}."""
    rng = np.random.RandomState(seed)
    for sub in ('Annotations', 'JPEGImages', os.path.join('ImageSets', 'Main')):
        os.makedirs(os.path.join(folder, sub), exist_ok=True)
    truth = {}
    for name in ids:
        image, found = _scene(rng, size[0], size[1], 2)
        cv2.imwrite(os.path.join(folder, 'JPEGImages', name + '.jpg'), image[:, :, ::-1])
        objects = []
        for k, (category, (x, y, w, h), _) in enumerate(found):
            label = classes[[c for c, _ in CATEGORIES].index(category)]
            objects.append((label, x, y, x + w, y + h, int(k == 1)))
        truth[name] = objects
        xml = ''.join('<object><name>%s</name><difficult>%d</difficult><bndbox><xmin>%d</xmin>'
                      '<ymin>%d</ymin><xmax>%d</xmax><ymax>%d</ymax></bndbox></object>'
                      % (c, d, x1 + 1, y1 + 1, x2 + 1, y2 + 1)
                      for c, x1, y1, x2, y2, d in objects)
        with open(os.path.join(folder, 'Annotations', name + '.xml'), 'w') as f:
            f.write('<annotation><size><width>%d</width><height>%d</height><depth>3</depth>'
                    '</size>%s</annotation>' % (size[1], size[0], xml))
    with open(os.path.join(folder, 'ImageSets', 'Main', split + '.txt'), 'w') as f:
        f.write('\n'.join(ids) + '\n')
    return truth
