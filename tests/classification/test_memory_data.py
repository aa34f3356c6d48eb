"""The in-memory small-image pipeline against MXNet's own image augmenters (the per-image path):
same crop rule and distribution, same pixels for the same draws, same evaluation images."""
import math
import random
from unittest import mock

import mxnet as mx
import numpy as np
import pytest

from gluon_resnest.classification.data import PCA_EIGVAL, PCA_EIGVEC, RecordDataset, eval_transform
from gluon_resnest.engine.data import ShardSampler, fits_in_memory
from gluon_resnest.classification.data import write_records
from gluon_resnest.classification.memory_data import BatchAugment, MemoryLoader, decode_all
from helpers import colored_images

MEAN, STD = (0.3, 0.4, 0.5), (0.2, 0.25, 0.3)


def _rows(augment, n, seed=0, epoch=0):
    return augment.draws(seed, epoch, n)


def _images(count, classes, size):
    images, labels = colored_images(count, classes, size)
    return np.stack(images), np.asarray(labels)


@pytest.mark.parametrize('min_scale', [0.08, 0.8])
def test_crop_boxes_have_mx_random_size_crop_distribution(min_scale):
    """Box sizes and offsets over many draws match mx.image.random_size_crop's (Python random)
    on a non-square image, including how often it falls back to the centre crop."""
    h, w, n = 24, 40, 20000
    augment = BatchAugment(16, min_scale)
    x0, y0, bw, bh = augment.crop_boxes(h, w, _rows(augment, n))
    random.seed(0)
    image = mx.nd.zeros((h, w, 3), dtype='uint8')
    ref = np.array([mx.image.random_size_crop(image, (16, 16), (min_scale, 1.0),
                                              (3 / 4., 4 / 3.))[1] for _ in range(n)])
    ours = np.stack([x0, y0, bw, bh], axis=1)
    assert (ours[:, 0] + ours[:, 2] <= w).all() and (ours[:, 1] + ours[:, 3] <= h).all()
    assert (ours >= 0).all()
    for k, name in enumerate(('x0', 'y0', 'w', 'h')):
        assert abs(ours[:, k].mean() - ref[:, k].mean()) < 0.25, name
        assert abs(ours[:, k].std() - ref[:, k].std()) < 0.25, name
    # no attempt fits: MXNet's fallback is a centre 16x16 crop, not resized
    fallback = lambda boxes: np.mean((boxes == (12, 4, 16, 16)).all(axis=1))
    assert abs(fallback(ours) - fallback(ref)) < 0.01
    assert min_scale < 0.5 or fallback(ref) > 0.3


def test_batch_pixels_equal_mx_image_augmenters_for_the_same_draws():
    """Each augmented image equals fixed_crop + flip + the mx.image jitter augmenters (in the
    drawn order) + LightingAug fed the same random numbers."""
    images, _ = _images(6, 3, 20)
    augment = BatchAugment(16, 0.3, jitter=0.4, lighting=0.1)
    rows = _rows(augment, 6, seed=3)
    out = augment(images, rows)
    x0, y0, bw, bh = augment.crop_boxes(20, 20, rows)
    assert rows['flip'].any() and not rows['flip'].all()
    jitter = mx.image.ColorJitterAug(0.4, 0.4, 0.4).ts  # brightness, contrast, saturation
    for k in range(6):
        ref = mx.image.fixed_crop(mx.nd.array(images[k], dtype='uint8'), int(x0[k]), int(y0[k]),
                                  int(bw[k]), int(bh[k]), (16, 16), 1)
        if rows['flip'][k]:
            ref = mx.nd.flip(ref, axis=1)
        ref = ref.astype('float32')
        for op in rows['order'][k]:
            with mock.patch('random.uniform', return_value=float(rows['jitter'][k, op])):
                ref = jitter[op](ref)
        with mock.patch('numpy.random.normal', return_value=rows['lighting'][k]):
            ref = mx.image.LightingAug(0.1, PCA_EIGVAL, PCA_EIGVEC)(ref)
        np.testing.assert_allclose(out[k], ref.asnumpy(), rtol=1e-5, atol=1e-3, err_msg=str(k))


def _zhong_official_boxes(size, n, prob, area=(0.02, 0.4), r1=0.3):
    """Random erasing as the authors' released code states it, one image at a time with
    Python's random: with probability ``prob``, up to 100 draws of area and aspect ratio until
    the box is smaller than the image, then a uniform position; (x0, y0, w, h), zeros if none."""
    random.seed(0)
    boxes = np.zeros((n, 4), np.int64)
    for k in range(n):
        if random.uniform(0, 1) > prob:
            continue
        for _ in range(100):
            target = random.uniform(*area) * size * size
            aspect = random.uniform(r1, 1 / r1)
            h = int(round(math.sqrt(target * aspect)))
            w = int(round(math.sqrt(target / aspect)))
            if w < size and h < size:
                boxes[k] = random.randint(0, size - w), random.randint(0, size - h), w, h
                break
    return boxes


def test_random_erasing_boxes_have_the_authors_distribution():
    size, n, prob = 28, 20000, 0.5
    augment = BatchAugment(size, erase_prob=prob)
    ours = np.stack(augment.erase_boxes(augment.draws(0, 0, n)), axis=1)
    ref = _zhong_official_boxes(size, n, prob)
    assert (ours[:, 0] + ours[:, 2] <= size).all() and (ours[:, 1] + ours[:, 3] <= size).all()
    erased, ref_erased = ours[:, 2] > 0, ref[:, 2] > 0
    assert abs(erased.mean() - prob) < 0.015 and abs(ref_erased.mean() - erased.mean()) < 0.015
    area = ours[erased, 2] * ours[erased, 3] / float(size * size)
    assert area.min() >= 0.01 and area.max() <= 0.45
    for k, name in enumerate(('x0', 'y0', 'w', 'h')):
        assert abs(ours[erased, k].mean() - ref[ref_erased, k].mean()) < 0.2, name
        assert abs(ours[erased, k].std() - ref[ref_erased, k].std()) < 0.2, name


def test_random_erasing_replaces_only_its_box_with_uniform_values():
    """The other augmentations draw the same numbers with erasing on (the table is only
    extended): outside each box the pixels equal the unerased batch's; inside they are new,
    uniform on [0, 255]."""
    images, _ = _images(64, 3, 20)
    plain, erasing = BatchAugment(16, 0.5, 0.3), BatchAugment(16, 0.5, 0.3, erase_prob=0.5)
    rows = erasing.draws(5, 1, 64)
    a, b = plain(images, plain.draws(5, 1, 64)), erasing(images, rows)
    x0, y0, w, h = erasing.erase_boxes(rows)
    inside = np.zeros(a.shape, bool)
    for k in range(64):
        inside[k, y0[k]:y0[k] + h[k], x0[k]:x0[k] + w[k]] = True
    assert 20 < (w > 0).sum() < 44
    np.testing.assert_array_equal(a[~inside], b[~inside])
    values = b[inside]
    assert values.min() >= 0 and values.max() <= 255 and abs(values.mean() - 127.5) < 5
    assert abs(values.std() - 255 / math.sqrt(12)) < 5
    assert np.mean(values == a[inside]) < 0.01


def _loader(images, labels, rank, size, epoch, augment=True, batch=4):
    sampler = ShardSampler(len(images), rank, size, seed=7)
    sampler.set_epoch(epoch)
    return MemoryLoader(images, labels, sampler, batch, MEAN, STD,
                        BatchAugment(16, 0.5, 0.3, erase_prob=0.5) if augment else None,
                        seed=7)


def _by_record(loader):
    order = list(loader.sampler)
    seen = {}
    for k, (data, label) in enumerate(loader):
        for j in range(data.shape[0]):
            seen[order[k * loader.batch_size + j]] = (data[j].asnumpy(), label[j].asscalar())
    return seen


def test_augmentation_is_a_function_of_seed_epoch_and_record():
    """A record gets the same pixels (random erasing's fill included) whichever rank or batch
    it lands in (so a resumed or re-sharded run replays exactly), and new ones in the next
    epoch."""
    images, labels = _images(24, 3, 20)
    one = _by_record(_loader(images, labels, 0, 1, epoch=2))
    two = {}
    for rank in (0, 1):
        two.update(_by_record(_loader(images, labels, rank, 2, epoch=2)))
    assert one.keys() == two.keys() == set(range(24))
    for record in one:
        np.testing.assert_array_equal(one[record][0], two[record][0])
        assert one[record][1] == labels[record]
    other_epoch = _by_record(_loader(images, labels, 0, 1, epoch=3))
    assert max(np.abs(other_epoch[r][0] - one[r][0]).max() for r in one) > 0.1


@pytest.mark.parametrize('side, crop_ratio', [(16, 1.0), (20, 0.875)])
def test_evaluation_batches_equal_the_per_image_eval_transform(tmp_path, side, crop_ratio):
    images, labels = colored_images(10, 3, side)
    dataset = RecordDataset(write_records(str(tmp_path / 'val'), images, labels))
    assert fits_in_memory(dataset)
    decoded, decoded_labels = decode_all(dataset)
    np.testing.assert_array_equal(decoded_labels, labels)
    sampler = ShardSampler(10, 0, 1, shuffle=False, pad=False)
    loader = MemoryLoader(decoded, decoded_labels, sampler, 4, MEAN, STD, eval_size=16,
                          crop_ratio=crop_ratio)
    batches = [d.asnumpy() for d, _ in loader]
    assert [len(b) for b in batches] == [4, 4, 2]  # evaluation keeps the last partial batch
    reference = eval_transform(16, MEAN, STD, crop_ratio)
    for i, ours in enumerate(np.concatenate(batches)):
        ref = reference(dataset[i][0]).asnumpy()
        np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5, err_msg=str(i))


def test_large_or_mixed_images_keep_the_per_image_path(tmp_path):
    big, labels = colored_images(3, 3, 80)
    assert not fits_in_memory(RecordDataset(write_records(str(tmp_path / 'big'), big, labels)))
    small, _ = colored_images(2, 3, 20)
    other, _ = colored_images(1, 3, 24)
    mixed = write_records(str(tmp_path / 'mixed'), list(small) + list(other), [0, 1, 2])
    with pytest.raises(ValueError, match='mixed sizes need the per-image pipeline'):
        decode_all(RecordDataset(mixed))
