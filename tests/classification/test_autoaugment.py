import random

import numpy as np
import pytest
from PIL import Image

from gluon_resnest.classification.autoaugment import (IMAGENET_POLICY, OPERATIONS, ImageNetPolicy,
                                                apply_op)


@pytest.fixture
def img():
    rng = np.random.RandomState(0)
    arr = (rng.rand(24, 32, 3) * 200 + 20).astype(np.uint8)
    return Image.fromarray(arr)


def _a(im):
    return np.asarray(im).astype(np.int32)


def test_policy_is_the_papers_25_subpolicies_of_two_steps():
    assert len(IMAGENET_POLICY) == 25
    for sub in IMAGENET_POLICY:
        assert len(sub) == 2
        for name, prob, magnitude in sub:
            assert name in OPERATIONS and 0 <= prob <= 1 and 0 <= magnitude <= 9


def test_invert_and_full_solarize(img):
    assert (_a(apply_op(img, 'Invert', 0)) == 255 - _a(img)).all()
    assert (_a(apply_op(img, 'Solarize', 9)) == 255 - _a(img)).all()   # threshold 0
    assert (_a(apply_op(img, 'Solarize', 0)) == _a(img)).all()         # threshold 256


def test_posterize_keeps_the_top_bits(img):
    out = _a(apply_op(img, 'Posterize', 9))                            # 4 bits
    assert (out % 16 == 0).all() and (out == (_a(img) & 0xF0)).all()
    assert (_a(apply_op(img, 'Posterize', 0)) == _a(img)).all()


def test_zero_magnitude_geometry_is_identity(img):
    for name in ('ShearX', 'ShearY', 'TranslateX', 'TranslateY', 'Rotate'):
        assert (_a(apply_op(img, name, 0)) == _a(img)).all(), name


def test_translate_moves_by_the_papers_fraction():
    arr = np.zeros((20, 331, 3), np.uint8)
    arr[:, 165] = 255  # either direction stays in the frame
    for seed in range(4):
        random.seed(seed)
        out = _a(apply_op(Image.fromarray(arr), 'TranslateX', 9))
        cols = np.nonzero(out[10, :, 0] > 200)[0]
        assert len(cols) and abs(abs(int(cols[0]) - 165) - 150) <= 1


def test_rotate_by_30_degrees_at_full_magnitude():
    arr = np.zeros((101, 101, 3), np.uint8)
    arr[50, 50:] = 255  # a ray to the right
    random.seed(0)
    out = _a(apply_op(Image.fromarray(arr), 'Rotate', 9))[..., 0] > 200  # fill is 128
    ys, xs = np.nonzero(out)
    far = np.argmax((xs - 50) ** 2 + (ys - 50) ** 2)
    angle = np.degrees(np.arctan2(50 - ys[far], xs[far] - 50))
    assert abs(abs(angle) - 30) < 3


def test_enhancers_scale_around_the_degenerate_image(img):
    gray = np.asarray(img.convert('L'))
    # Color at 0.1 is 90% of the way to gray
    out = _a(apply_op(img, 'Color', 0))
    assert np.abs(out - gray[..., None]).mean() < 0.2 * np.abs(_a(img) - gray[..., None]).mean()
    assert _a(apply_op(img, 'Brightness', 9)).mean() > 1.5 * _a(img).mean()  # 1.9x, clipped
    assert _a(apply_op(img, 'Contrast', 0)).std() < 0.2 * _a(img).std()
    def high_freq(a):
        return np.abs(np.diff(a[1:-1, 1:-1], axis=1)).mean()
    assert high_freq(_a(apply_op(img, 'Sharpness', 0))) < high_freq(_a(img)) \
        < high_freq(_a(apply_op(img, 'Sharpness', 9)))


def test_autocontrast_and_equalize_stretch_the_histogram(img):
    out = _a(apply_op(img, 'AutoContrast', 0))
    assert out.min() == 0 and out.max() == 255
    eq = _a(apply_op(img.convert('L'), 'Equalize', 0))
    hist = np.bincount(eq.ravel(), minlength=256)
    assert eq.max() == 255 and hist.max() < 0.02 * eq.size


def test_bad_operation_and_magnitude(img):
    with pytest.raises(ValueError, match='unknown AutoAugment operation'):
        apply_op(img, 'Cutout', 3)
    with pytest.raises(ValueError, match='magnitude must be in 0..9'):
        apply_op(img, 'Rotate', 10)


def test_policy_returns_images_of_the_same_size(img):
    random.seed(0)
    policy = ImageNetPolicy()
    for _ in range(50):
        out = policy(img)
        assert out.size == img.size and out.mode == img.mode
