"""Detection data in the layouts users have, checked as it is opened, and the R-CNN transforms.

- COCO (``annotations/instances_<split>.json`` and ``<split>/`` images) and any folder with a
  COCO-format JSON (:class:`COCOFormat`): boxes ``[x, y, w, h]``, polygons or RLE masks,
  crowd regions (left out of training, ignored by the COCO evaluation).
- Pascal VOC (``Annotations/``, ``JPEGImages/``, ``ImageSets/Main/<split>.txt``;
  :class:`VOCFormat`): 1-based inclusive corners become 0-based as GluonCV reads them,
  ``difficult`` objects are trained on and ignored by the VOC evaluation.

Every annotation is checked when the dataset is opened, before anything trains or is written:
a box outside its image or of no size, an unknown category, a missing image file, a polygon of
fewer than three points or an odd number of coordinates, a mask of another size than its image
are each one :class:`DetectionDataError` naming the file and the annotation. Images without
annotations are kept (background only) or skipped (``empty``).

Items are ``(HxWx3 uint8 RGB image, Target)``; every dataset also gives its ground truth as a
COCO-format dict (``ground_truth``), which the evaluation reads, keyed by the dataset's own
image ids.
"""
import json
import os
import random
import xml.etree.ElementTree as ET
from collections import namedtuple

import cv2
import numpy as np
from mxnet.gluon.data import Dataset

from ..engine.data import normalize_chw

__all__ = ['DetectionDataError', 'read_image', 'rle_counts', 'COCOFormat', 'VOCFormat', 'coco_split', 'open_detection_data',
           'Target', 'DetectionTrainTransform', 'DetectionEvalTransform', 'EMPTY', 'LAYOUTS',
           'VOC_CLASSES', 'BOX_TOLERANCE', 'resize_short_within', 'check_image_sizes',
           'dataset_split']

EMPTY = ('skip', 'keep')
LAYOUTS = ('coco', 'voc', 'coco-json')
VOC_CLASSES = ('aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair',
               'cow', 'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant',
               'sheep', 'sofa', 'train', 'tvmonitor')
# how far (px) a box may reach past its image before it is an error; within it the box is cut
# to the image (COCO's float boxes overshoot by rounding)
BOX_TOLERANCE = 1.0

# boxes N x 4 corners (x1, y1, x2, y2) float32, labels N class indices, masks: N COCO
# segmentations (polygon lists or RLE dicts) or None, image_id the dataset's own id
Target = namedtuple('Target', 'boxes labels masks image_id')


class DetectionDataError(ValueError):
    """A dataset file, image or annotation that cannot be used."""


def read_image(path):
    """HxWx3 uint8 RGB of an image file, or DetectionDataError naming a file that is missing,
    not an image, or a JPEG cut short (libjpeg would decode it grey from the cut on, saying
    only "Premature end of JPEG file")."""
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError as err:
        raise DetectionDataError('cannot read image %s (%s)' % (path, err.strerror)) from None
    if data[:2] == b'\xff\xd8' and b'\xff\xd9' not in data[-64:]:
        raise DetectionDataError('image %s is a truncated JPEG (no end-of-image marker)' % path)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise DetectionDataError('cannot read image %s (not an image file OpenCV reads)' % path)
    return np.ascontiguousarray(image[:, :, ::-1])


def rle_counts(counts):
    """The run lengths of a COCO RLE: a list as it is, or COCO's compressed string (each count
    in 5-bit groups from ASCII 48, the 0x20 bit continuing a count, the 0x10 bit of its last
    group its sign; from the third count on, a difference to the count two before)."""
    if not isinstance(counts, (str, bytes)):
        return list(counts)
    codes = counts.encode('ascii') if isinstance(counts, str) else counts
    runs, value, shift = [], 0, 0
    for code in codes:
        group = code - 48
        value |= (group & 0x1f) << shift
        shift += 5
        if group & 0x20:
            continue
        if group & 0x10:
            value |= -1 << shift
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
        value, shift = 0, 0
    return runs


def _check_box(x1, y1, x2, y2, width, height, where):
    """The box cut to the image, or DetectionDataError naming ``where``."""
    if not (x2 > x1 and y2 > y1):
        raise DetectionDataError('%s: box (%g, %g, %g, %g) has no area (width %g, height %g); '
                                 'boxes need positive width and height'
                                 % (where, x1, y1, x2, y2, x2 - x1, y2 - y1))
    t = BOX_TOLERANCE
    if x1 < -t or y1 < -t or x2 > width + t or y2 > height + t:
        raise DetectionDataError('%s: box (%g, %g, %g, %g) lies outside the %dx%d image'
                                 % (where, x1, y1, x2, y2, width, height))
    return (max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height)))


def _check_segmentation(segm, width, height, where):
    if isinstance(segm, list):
        if not segm:
            raise DetectionDataError('%s: the segmentation has no polygon' % where)
        for k, polygon in enumerate(segm):
            if len(polygon) % 2 or len(polygon) < 6:
                raise DetectionDataError(
                    '%s: polygon %d has %d coordinates; a polygon is x, y pairs of at least '
                    '3 points (closed from its last point to its first)'
                    % (where, k, len(polygon)))
            xs, ys = polygon[0::2], polygon[1::2]
            if max(xs) <= 0 or max(ys) <= 0 or min(xs) >= width or min(ys) >= height:
                raise DetectionDataError(
                    '%s: polygon %d lies outside the %dx%d image (x %g to %g, y %g to %g)'
                    % (where, k, width, height, min(xs), max(xs), min(ys), max(ys)))
    elif isinstance(segm, dict) and 'size' in segm and 'counts' in segm:
        if list(segm['size']) != [height, width]:
            raise DetectionDataError('%s: the mask is %dx%d (width x height) but the image is '
                                     '%dx%d' % (where, segm['size'][1], segm['size'][0], width,
                                                height))
        try:
            runs = rle_counts(segm['counts'])
        except (TypeError, ValueError, UnicodeEncodeError):
            runs = None
        if runs is None or any(r < 0 for r in runs) or sum(runs) != width * height:
            raise DetectionDataError(
                '%s: the RLE mask\'s run lengths %s, not the %dx%d image\'s %d pixels'
                % (where, 'cannot be read' if runs is None else
                   'add up to %d' % sum(runs) if runs and min(runs) >= 0 else
                   'include negative lengths', width, height, width * height))
    else:
        raise DetectionDataError('%s: segmentation must be a list of polygons or an RLE dict '
                                 'with size and counts' % where)


def decode_masks(segmentations, height, width):
    """N x H x W uint8 masks of COCO segmentations (polygons or RLE)."""
    from pycocotools import mask as mask_utils
    masks = np.zeros((len(segmentations), height, width), np.uint8)
    for n, segm in enumerate(segmentations):
        if isinstance(segm, list):
            rle = mask_utils.merge(mask_utils.frPyObjects(segm, height, width))
        elif isinstance(segm['counts'], list):
            rle = mask_utils.frPyObjects(segm, height, width)
        else:
            rle = segm
        masks[n] = mask_utils.decode(rle)
    return masks


class _Detection(Dataset):
    """Items from ``self.records``: (path, image_id, width, height, boxes, labels, masks)."""
    records, classes, category_ids, ground_truth, dropped = (), (), (), None, None

    def __len__(self):
        return len(self.records)

    def __getitem__(self, i):
        path, image_id, width, height, boxes, labels, masks = self.records[i]
        image = read_image(path)
        if image.shape[:2] != (height, width):
            raise DetectionDataError('%s is %dx%d but its annotation says %dx%d'
                                     % (path, image.shape[1], image.shape[0], width, height))
        return image, Target(boxes, labels, masks, image_id)

    def image_path(self, i):
        return self.records[i][0]

    def image_id(self, i):
        return self.records[i][1]


def _load_json(path):
    if not path:
        raise DetectionDataError('a COCO-format dataset needs its annotation file (--layout '
                                 'coco-json: --annotations, or --train-annotations and '
                                 '--val-annotations)')
    if os.path.isdir(path):
        raise DetectionDataError('annotation file %s is a folder; it takes the COCO-format '
                                 'JSON file' % path)
    if not os.path.isfile(path):
        raise DetectionDataError('annotation file %s not found' % path)
    try:
        with open(path) as f:
            data = json.load(f)
    except (ValueError, UnicodeDecodeError) as err:
        raise DetectionDataError('%s is not JSON (%s)' % (path, err)) from None
    for key in ('images', 'annotations', 'categories'):
        if not isinstance(data.get(key) if isinstance(data, dict) else None, list):
            raise DetectionDataError('%s: a COCO-format file needs lists "images", '
                                     '"annotations" and "categories"; "%s" is missing'
                                     % (path, key))
    return data


class COCOFormat(_Detection):
    """A COCO-format annotation file and the folder of its images.

    masks : keep each object's segmentation (Mask R-CNN)
    empty : 'skip' or 'keep' images without (non-crowd) annotations
    Classes are the file's categories sorted by id (``category_ids[k]`` is class k's id)."""

    def __init__(self, annotations, image_dir, masks=False, empty='skip'):
        if empty not in EMPTY:
            raise ValueError('empty=%r: allowed %s' % (empty, ', '.join(EMPTY)))
        data = _load_json(annotations)
        if not os.path.isdir(image_dir):
            raise DetectionDataError('image folder %s not found' % image_dir)
        categories = sorted(data['categories'], key=lambda c: c['id'])
        self.category_ids = [c['id'] for c in categories]
        self.classes = [str(c.get('name', c['id'])) for c in categories]
        index = {cid: k for k, cid in enumerate(self.category_ids)}
        images, crowds = {}, set()
        for image in data['images']:
            path = os.path.join(image_dir, image['file_name'])
            if not os.path.isfile(path):
                raise DetectionDataError('%s: image %s (id %s) is missing: %s not found'
                                         % (annotations, image['file_name'], image['id'], path))
            images[image['id']] = (image, path, [])
        for n, ann in enumerate(data['annotations']):
            where = '%s: annotation %s' % (annotations, ann.get('id', '#%d' % n))
            if ann.get('image_id') not in images:
                raise DetectionDataError('%s: image id %r is not among the images'
                                         % (where, ann.get('image_id')))
            image, _, anns = images[ann['image_id']]
            where += ' (image %s)' % image['file_name']
            if ann.get('category_id') not in index:
                raise DetectionDataError('%s: unknown category id %r; the categories are %s'
                                         % (where, ann.get('category_id'),
                                            ', '.join(map(str, self.category_ids))))
            bbox = ann.get('bbox')
            if not (isinstance(bbox, list) and len(bbox) == 4):
                raise DetectionDataError('%s: bbox must be [x, y, width, height], got %r'
                                         % (where, bbox))
            x, y, w, h = (float(v) for v in bbox)
            box = _check_box(x, y, x + w, y + h, image['width'], image['height'], where)
            if masks or 'segmentation' in ann:
                if 'segmentation' not in ann:
                    raise DetectionDataError('%s: no segmentation (masks are trained)' % where)
                _check_segmentation(ann['segmentation'], image['width'], image['height'], where)
            if ann.get('iscrowd', 0):
                crowds.add(ann['image_id'])
            else:
                anns.append((box, index[ann['category_id']], ann.get('segmentation')))
        self.records = []
        left_out = []
        for image_id, (image, path, anns) in images.items():
            if not anns and empty == 'skip':
                left_out.append(image_id)
                continue
            self.records.append((
                path, image_id, image['width'], image['height'],
                np.array([a[0] for a in anns], np.float32).reshape(-1, 4),
                np.array([a[1] for a in anns], np.int32),
                [a[2] for a in anns] if masks else None))
        if not self.records:
            raise DetectionDataError('%s: no image with annotations (pass empty="keep" to use '
                                     'images without)' % annotations)
        # the evaluation's ground truth: the file itself (crowd regions and all)
        self.ground_truth = data
        self.source = annotations
        self.dropped = _left_out(left_out, crowds)


def _left_out(image_ids, crowds=()):
    """What a reader says of the images it left out (None: none)."""
    if not image_ids:
        return None
    crowd_only = len(set(image_ids) & set(crowds))
    return ('%d image(s) without objects left out%s (--empty keep trains on them as '
            'background)' % (len(image_ids), ', %d of them with only crowd regions'
                             % crowd_only if crowd_only else ''))


def coco_split(root, split, masks=False, empty='skip'):
    """COCO's own layout: ``root/annotations/instances_<split>.json`` and ``root/<split>/``."""
    annotations = os.path.join(root, 'annotations', 'instances_%s.json' % split)
    if not os.path.isfile(annotations):
        folder = os.path.join(root, 'annotations')
        have = sorted(f[len('instances_'):-5] for f in os.listdir(folder)
                      if f.startswith('instances_') and f.endswith('.json')) \
            if os.path.isdir(folder) else []
        raise DetectionDataError('split %r: %s not found; splits here: %s'
                                 % (split, annotations, ', '.join(have) or 'none'))
    return COCOFormat(annotations, os.path.join(root, split), masks, empty)


class VOCFormat(_Detection):
    """Pascal VOC: ``root/ImageSets/Main/<split>.txt`` lists ids, ``root/Annotations/<id>.xml``
    their objects and ``root/JPEGImages/<id>.jpg`` their images; ``root`` may also be a folder
    holding ``VOC2007``/``VOC2012``, with ``split`` then like ``2007/trainval``."""

    def __init__(self, root, split='trainval', classes=VOC_CLASSES, empty='skip'):
        if empty not in EMPTY:
            raise ValueError('empty=%r: allowed %s' % (empty, ', '.join(EMPTY)))
        if '/' in split:
            year, split = split.split('/', 1)
            root = os.path.join(root, 'VOC' + year)
        for sub in ('Annotations', 'JPEGImages', os.path.join('ImageSets', 'Main')):
            if not os.path.isdir(os.path.join(root, sub)):
                raise DetectionDataError('Pascal VOC layout: folder %s not found'
                                         % os.path.join(root, sub))
        split_file = os.path.join(root, 'ImageSets', 'Main', split + '.txt')
        if not os.path.isfile(split_file):
            have = sorted(f[:-4] for f in os.listdir(os.path.dirname(split_file))
                          if f.endswith('.txt') and '_' not in f)
            raise DetectionDataError('split %r: %s not found; splits here: %s'
                                     % (split, split_file, ', '.join(have) or 'none'))
        with open(split_file) as f:
            ids = [line.split()[0] for line in f if line.strip()]
        self.classes, self.category_ids = list(classes), list(range(1, len(classes) + 1))
        index = {name: k for k, name in enumerate(self.classes)}
        self.records, gt_images, gt_annotations, left_out = [], [], [], []
        for number, name in enumerate(ids, 1):
            xml_path = os.path.join(root, 'Annotations', name + '.xml')
            path = os.path.join(root, 'JPEGImages', name + '.jpg')
            if not os.path.isfile(path):
                raise DetectionDataError('%s lists %s, but its image %s is missing'
                                         % (split_file, name, path))
            try:
                tree = ET.parse(xml_path).getroot()
            except (OSError, ET.ParseError) as err:
                raise DetectionDataError('%s: cannot read it (%s)' % (xml_path, err)) from None
            try:
                width = int(tree.findtext('size/width'))
                height = int(tree.findtext('size/height'))
            except (TypeError, ValueError):
                raise DetectionDataError('%s: no image size (<size> with <width> and <height> '
                                         'in pixels)' % xml_path) from None
            boxes, labels = [], []
            for k, obj in enumerate(tree.iter('object')):
                where = '%s: object %d' % (xml_path, k)
                label = obj.findtext('name', '').strip()
                if label not in index:
                    raise DetectionDataError('%s: unknown class %r; classes: %s'
                                             % (where, label, ', '.join(self.classes)))
                try:
                    x1, y1, x2, y2 = (float(obj.find('bndbox/' + t).text) - 1 for t in
                                      ('xmin', 'ymin', 'xmax', 'ymax'))
                except (AttributeError, TypeError, ValueError):
                    raise DetectionDataError('%s: bndbox needs xmin, ymin, xmax, ymax' % where) \
                        from None
                box = _check_box(x1, y1, x2, y2, width, height, where)
                difficult = int(obj.findtext('difficult', '0') or 0)
                boxes.append(box)
                labels.append(index[label])
                gt_annotations.append(dict(
                    id=len(gt_annotations) + 1, image_id=number,
                    category_id=index[label] + 1, iscrowd=difficult,
                    bbox=[box[0], box[1], box[2] - box[0], box[3] - box[1]],
                    area=(box[2] - box[0]) * (box[3] - box[1])))
            gt_images.append(dict(id=number, file_name=name + '.jpg', width=width,
                                  height=height))
            if not boxes and empty == 'skip':
                left_out.append(number)
            else:
                self.records.append((path, number, width, height,
                                     np.array(boxes, np.float32).reshape(-1, 4),
                                     np.array(labels, np.int32), None))
        if not self.records:
            raise DetectionDataError('%s: no image with objects' % split_file)
        # VOC ids are file names: the ground truth numbers images by their line in the split
        # file; ``iscrowd`` carries VOC's ``difficult``
        self.ground_truth = dict(images=gt_images, annotations=gt_annotations, categories=[
            dict(id=k + 1, name=n) for k, n in enumerate(self.classes)])
        self.source = split_file
        self.dropped = _left_out(left_out)


def dataset_split(layout, split, annotations, default):
    """The split to open for ``layout`` (``default`` for COCO's folders when none is given);
    ValueError for a combination that names the data twice or not at all."""
    if layout == 'coco-json':
        if split:
            raise ValueError('--layout coco-json reads the images of --annotations; --split is '
                             'for the coco and voc layouts')
        if not annotations:
            raise ValueError('--layout coco-json needs --annotations (the COCO-format JSON '
                             'file of the images in --data-root)')
        return ''
    if annotations:
        raise ValueError('--annotations is for --layout coco-json; the %s layout finds its '
                         'annotations from --split' % layout)
    if not split and layout == 'voc':
        raise ValueError('--layout voc needs --split (e.g. 2007/test)')
    return split or default


def open_detection_data(layout, root, split, masks=False, empty='skip', annotations=''):
    """The dataset of ``layout`` (LAYOUTS): 'coco' (COCO's folders, ``split`` like
    ``train2017``), 'voc', or 'coco-json' (``annotations`` a COCO-format file, ``root`` the
    image folder)."""
    if layout == 'coco':
        return coco_split(root, split, masks, empty)
    if layout == 'voc':
        if masks:
            raise DetectionDataError('Pascal VOC detection has no instance masks: train '
                                     'faster_rcnn_fpn on it, or give COCO-format masks')
        return VOCFormat(root, split, empty=empty)
    if layout == 'coco-json':
        return COCOFormat(annotations, root, masks, empty)
    raise ValueError('unknown layout %r: allowed %s' % (layout, ', '.join(LAYOUTS)))


def resize_short_within(height, width, short, max_size):
    """The (height, width) with the short side ``short`` and the long side at most
    ``max_size``, as GluonCV's ``resize_short_within`` computes it, and the scale."""
    scale = min(float(short) / min(height, width), float(max_size) / max(height, width))
    return int(round(height * scale)), int(round(width * scale)), scale


def check_image_sizes(dataset, short, max_size, smallest, largest):
    """DetectionDataError naming the first image of ``dataset`` that, resized to a short side
    in ``short`` (low, high) with the long side at most ``max_size``, has a side below
    ``smallest`` or above ``largest`` (what the detector's pyramid and anchors take): e.g. a
    1280 x 40 strip that a 128 px long side turns into a 128 x 4 sliver."""
    for path, _, width, height in (record[:4] for record in dataset.records):
        for side in sorted(set(short)):
            h, w = resize_short_within(height, width, side, max_size)[:2]
            where = '%s (%dx%d) becomes %dx%d at a short side of %d px with the long side at ' \
                'most %d' % (path, width, height, w, h, side, max_size)
            if min(h, w) < smallest:
                raise DetectionDataError(
                    '%s: the detector needs at least %d px a side; leave the image out or '
                    'resize less' % (where, smallest))
            if max(h, w) > largest:
                raise DetectionDataError(
                    "%s: the detector's anchors cover %d px a side (its max_size when it was "
                    'built); build or load it for larger images (load_detector(..., '
                    'max_size=%d))' % (where, largest, max(h, w)))


class DetectionEvalTransform(object):
    """The image resized so its short side is ``short`` (long side at most ``max_size``),
    normalized CHW float32; with its image id and the resize factor (detections are divided by
    it to return to the original image)."""

    def __init__(self, short, max_size, mean, std):
        self.short, self.max_size, self.mean, self.std = short, max_size, mean, std

    def resize(self, image, short):
        h, w, scale = resize_short_within(image.shape[0], image.shape[1], short, self.max_size)
        return cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR), scale

    def __call__(self, image, target):
        image, scale = self.resize(image, self.short)
        return normalize_chw(image, self.mean, self.std), target.image_id, np.float32(scale)


class DetectionTrainTransform(DetectionEvalTransform):
    """The R-CNN recipe's augmentation: a random short side in ``short`` (inclusive range,
    long side at most ``max_size``) and a horizontal flip with probability 1/2; returns (image
    CHW float32, boxes N x 4, labels N, masks N x H x W uint8 or None). Draws come from
    Python's ``random``, which the loader seeds per (seed, epoch, record)."""

    def __call__(self, image, target):
        height, width = image.shape[:2]
        image, scale = self.resize(image, random.randint(*self.short))
        boxes = target.boxes * np.float32(scale)
        masks = None
        if target.masks is not None:
            masks = decode_masks(target.masks, height, width)
            masks = np.stack([cv2.resize(m, image.shape[1::-1], interpolation=cv2.INTER_LINEAR)
                              for m in masks]) if len(masks) else \
                np.zeros((0,) + image.shape[:2], np.uint8)
        if random.random() < 0.5:
            image = image[:, ::-1]
            boxes = np.stack([image.shape[1] - boxes[:, 2], boxes[:, 1],
                              image.shape[1] - boxes[:, 0], boxes[:, 3]], axis=1)
            if masks is not None:
                masks = masks[:, :, ::-1]
        return (normalize_chw(image, self.mean, self.std), boxes.astype(np.float32),
                target.labels, None if masks is None else np.ascontiguousarray(masks))
