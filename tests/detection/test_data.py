"""Detection data in COCO's layout, a COCO-format folder and Pascal VOC's, read and checked as
it opens: every kind of bad annotation is one error naming the file and the annotation."""
import json
import os

import numpy as np
import pytest

from gluon_resnest.detection.data import (COCOFormat, DetectionDataError,
                                          DetectionTrainTransform, VOCFormat,
                                          check_image_sizes, coco_split, decode_masks,
                                          open_detection_data, rle_counts)
from tiny_data import write_coco, write_voc

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def test_coco_layout_reads_boxes_as_corners_classes_by_category_id_and_own_image_ids(tmp_path):
    _, _, data = write_coco(str(tmp_path), images=3, split='val2017')
    dataset = coco_split(str(tmp_path), 'val2017', masks=True)
    assert dataset.category_ids == [3, 7] and dataset.classes == ['square', 'disc']
    assert len(dataset) == 3 and dataset.ground_truth is not None
    for i in range(len(dataset)):
        image, target = dataset[i]
        info = next(im for im in data['images'] if im['id'] == target.image_id)
        assert image.shape == (info['height'], info['width'], 3) and image.dtype == np.uint8
        annotations = [a for a in data['annotations'] if a['image_id'] == target.image_id]
        expected = [[x, y, x + w, y + h] for x, y, w, h in (a['bbox'] for a in annotations)]
        np.testing.assert_allclose(target.boxes, expected)
        assert target.labels.tolist() == [[3, 7].index(a['category_id']) for a in annotations]
        # each polygon fills its box: the decoded mask's extent is the box (within a pixel)
        masks = decode_masks(target.masks, info['height'], info['width'])
        for mask, (x1, y1, x2, y2) in zip(masks, expected):
            ys, xs = np.nonzero(mask)
            assert abs(xs.min() - x1) <= 1 and abs(xs.max() + 1 - x2) <= 1
            assert abs(ys.min() - y1) <= 1 and abs(ys.max() + 1 - y2) <= 1


def test_a_coco_format_folder_and_split_names(tmp_path):
    path, image_dir, _ = write_coco(str(tmp_path), images=2, split='mine', layout='coco-json')
    dataset = open_detection_data('coco-json', image_dir, '', annotations=path)
    assert len(dataset) == 2
    write_coco(str(tmp_path / 'c'), images=1, split='mine')
    with pytest.raises(DetectionDataError, match="split 'val2017'.*splits here: mine"):
        coco_split(str(tmp_path / 'c'), 'val2017')


def test_voc_layout_is_zero_based_and_marks_difficult_objects(tmp_path):
    truth = write_voc(str(tmp_path / 'VOC2007'), ids=('a', 'b'), classes=('cat', 'dog'))
    dataset = VOCFormat(str(tmp_path), '2007/trainval', classes=('cat', 'dog'))
    assert len(dataset) == 2
    image, target = dataset[0]
    objects = truth['a']
    np.testing.assert_allclose(target.boxes, [o[1:5] for o in objects])
    assert target.labels.tolist() == [('cat', 'dog').index(o[0]) for o in objects]
    crowd = [a['iscrowd'] for a in dataset.ground_truth['annotations'] if a['image_id'] == 1]
    assert crowd == [o[5] for o in objects] == [0, 1]
    with pytest.raises(DetectionDataError,
                       match=r"a.xml: object 0: unknown class '(cat|dog)'; classes: bird"):
        VOCFormat(str(tmp_path / 'VOC2007'), 'trainval', classes=('bird',))


def _edit(path, change):
    with open(path) as f:
        data = json.load(f)
    change(data)
    with open(path, 'w') as f:
        json.dump(data, f)


def _first(data):
    return data['annotations'][0]


@pytest.mark.parametrize('change, message', [
    (lambda d: _first(d).update(bbox=[100, 10, 60, 20]),
     r'annotation 1 \(image train_000.jpg\): box \(100, 10, 160, 30\) lies outside the '
     r'128x96 image'),
    (lambda d: _first(d).update(bbox=[10, 10, 0, 20]),
     r'annotation 1 \(image train_000.jpg\): box .* has no area \(width 0, height 20\)'),
    (lambda d: _first(d).update(bbox=[10, 10, 5, -2]), 'has no area'),
    (lambda d: _first(d).update(category_id=9),
     'annotation 1 .*: unknown category id 9; the categories are 3, 7'),
    (lambda d: _first(d).update(image_id=5), 'image id 5 is not among the images'),
    (lambda d: _first(d).update(segmentation=[[1, 2, 3, 4]]),
     'polygon 0 has 4 coordinates; a polygon is x, y pairs of at least 3 points'),
    (lambda d: _first(d).update(segmentation=[[1, 2, 3, 4, 5, 6, 7]]),
     'polygon 0 has 7 coordinates'),
    (lambda d: _first(d).update(segmentation=dict(size=[10, 10], counts='00')),
     'the mask is 10x10 .* but the image is 128x96'),
    (lambda d: d['images'][0].update(file_name='gone.jpg'),
     r'image gone.jpg \(id 1000\) is missing: .*gone.jpg not found'),
    (lambda d: d.pop('categories'), 'needs lists "images", "annotations" and "categories"')])
def test_each_bad_annotation_is_one_error_naming_file_and_annotation(tmp_path, change, message):
    path, image_dir, _ = write_coco(str(tmp_path), images=2, split='train', layout='coco-json')
    _edit(path, change)
    with pytest.raises(DetectionDataError, match=message) as err:
        COCOFormat(path, image_dir, masks=True)
    assert path in str(err.value)


def test_boxes_within_a_pixel_of_the_border_are_cut_to_the_image(tmp_path):
    path, image_dir, _ = write_coco(str(tmp_path), images=1, split='train', layout='coco-json')
    _edit(path, lambda d: _first(d).update(bbox=[-0.5, 90.0, 50.0, 6.6]))
    _, target = COCOFormat(path, image_dir)[0]
    np.testing.assert_allclose(target.boxes[0], [0, 90, 49.5, 96], rtol=1e-6)


def test_images_without_annotations_are_skipped_or_kept(tmp_path):
    path, image_dir, _ = write_coco(str(tmp_path), images=3, split='train', layout='coco-json')
    _edit(path, lambda d: d.update(annotations=[a for a in d['annotations']
                                                if a['image_id'] != 1000]))
    assert len(COCOFormat(path, image_dir)) == 2
    kept = COCOFormat(path, image_dir, empty='keep')
    assert len(kept) == 3
    empty = [kept[i][1] for i in range(3) if kept[i][1].image_id == 1000][0]
    assert empty.boxes.shape == (0, 4) and empty.labels.shape == (0,)
    _edit(path, lambda d: d.update(annotations=[]))
    with pytest.raises(DetectionDataError, match='no image with annotations'):
        COCOFormat(path, image_dir)
    with pytest.raises(ValueError, match="empty='drop': allowed skip, keep"):
        COCOFormat(path, image_dir, empty='drop')


def test_crowd_regions_are_left_out_of_training_and_kept_for_evaluation(tmp_path):
    path, image_dir, _ = write_coco(str(tmp_path), images=1, split='train', layout='coco-json',
                                    objects=(2, 2))
    _edit(path, lambda d: _first(d).update(iscrowd=1))
    dataset = COCOFormat(path, image_dir)
    assert len(dataset[0][1].boxes) == 1
    assert len(dataset.ground_truth['annotations']) == 2


def test_training_transform_moves_boxes_and_masks_together(tmp_path):
    import random
    write_coco(str(tmp_path), images=4, split='train')
    dataset = coco_split(str(tmp_path), 'train', masks=True)
    transform = DetectionTrainTransform((140, 200), 1000, MEAN, STD)
    flips = set()
    for seed in range(8):
        random.seed(seed)
        image, target = dataset[seed % 4]
        data, boxes, labels, masks = transform(image, target)
        assert 140 <= min(data.shape[1:]) <= 200 and data.dtype == np.float32
        assert masks.shape == (len(boxes),) + data.shape[1:]
        assert labels.tolist() == target.labels.tolist()
        scale = data.shape[1] / float(image.shape[0])
        flipped = not np.allclose(boxes[:, 0], target.boxes[:, 0] * scale, atol=0.5)
        flips.add(flipped)
        for mask, (x1, y1, x2, y2) in zip(masks, boxes):
            ys, xs = np.nonzero(mask)
            tolerance = 1 + scale
            assert abs(xs.min() - x1) <= tolerance and abs(xs.max() + 1 - x2) <= tolerance
            assert abs(ys.min() - y1) <= tolerance and abs(ys.max() + 1 - y2) <= tolerance
    assert flips == {True, False}


def test_rle_run_lengths_are_read_as_pycocotools_encodes_them():
    from pycocotools import mask as mask_utils
    rng = np.random.RandomState(0)
    for _ in range(50):
        height, width = rng.randint(1, 40, 2)
        mask = np.asfortranarray((rng.rand(height, width) < rng.rand()).astype(np.uint8))
        runs = rle_counts(mask_utils.encode(mask)['counts'])
        assert sum(runs) == height * width
        decoded = np.concatenate([np.full(n, k % 2, np.uint8) for k, n in enumerate(runs)])
        np.testing.assert_array_equal(decoded.reshape(width, height).T, mask)
    assert rle_counts([3, 4, 5]) == [3, 4, 5]


@pytest.mark.parametrize('segmentation, message', [
    (dict(size=[96, 128], counts=[5, 10, 20]),
     "run lengths add up to 35, not the 128x96 image's 12288 pixels"),
    (dict(size=[96, 128], counts='52203'), 'run lengths add up to'),
    (dict(size=[96, 128], counts=[12290, -2]), 'include negative lengths'),
    ([[200, 10, 210, 10, 210, 20]], r'polygon 0 lies outside the 128x96 image \(x 200 to 210')])
def test_masks_that_do_not_fit_their_image_are_refused(tmp_path, segmentation, message):
    path, image_dir, _ = write_coco(str(tmp_path), images=1, split='train', layout='coco-json')
    _edit(path, lambda d: _first(d).update(segmentation=segmentation))
    with pytest.raises(DetectionDataError, match=message):
        COCOFormat(path, image_dir, masks=True)


def test_a_truncated_jpeg_is_named_not_decoded_grey(tmp_path):
    path, image_dir, data = write_coco(str(tmp_path), images=1, split='train',
                                       layout='coco-json')
    image = os.path.join(image_dir, data['images'][0]['file_name'])
    content = open(image, 'rb').read()
    with open(image, 'wb') as f:
        f.write(content[:len(content) // 2])
    dataset = COCOFormat(path, image_dir)
    with pytest.raises(DetectionDataError, match='%s is a truncated JPEG' % image):
        dataset[0]


def test_images_the_detector_cannot_take_at_the_run_s_sizes_are_named(tmp_path):
    path, image_dir, _ = write_coco(str(tmp_path), images=1, size=(40, 1280), split='train',
                                    layout='coco-json')
    dataset = COCOFormat(path, image_dir)
    with pytest.raises(DetectionDataError, match=r'train_000.jpg \(1280x40\) becomes 128x4 at '
                                                 r'a short side of 128 px .*at least 32 px'):
        check_image_sizes(dataset, (128, 128), 128, 32, 768)
    check_image_sizes(dataset, (640, 800), 1333, 32, 1536)  # fine at the paper's sizes
    with pytest.raises(DetectionDataError, match=r'cover 1000 px .*max_size=1333'):
        check_image_sizes(dataset, (640, 800), 1333, 16, 1000)


def test_a_voc_annotation_without_its_size_is_named(tmp_path):
    write_voc(str(tmp_path / 'VOC2007'), ids=('a',))
    xml = tmp_path / 'VOC2007' / 'Annotations' / 'a.xml'
    text = xml.read_text()
    xml.write_text(text[:text.index('<size>')] + text[text.index('</size>') + 7:])
    with pytest.raises(DetectionDataError, match=r'a.xml: no image size \(<size> with <width>'):
        VOCFormat(str(tmp_path / 'VOC2007'), 'trainval')
