"""AutoAugment's ImageNet policy (Cubuk et al., CVPR 2019, Appendix, Table 9) on PIL images.

Each sub-policy is two (operation, probability, magnitude) steps; magnitudes are the paper's
10-level scale 0..9, mapped uniformly onto each operation's range (Table 1 of the paper), the
larger the stronger. Geometric operations choose their sign at random.
"""
import random

from PIL import Image, ImageEnhance, ImageOps

__all__ = ['ImageNetPolicy', 'OPERATIONS', 'IMAGENET_POLICY', 'apply_op']

LEVELS = 9  # magnitudes 0..9
FILL = (128, 128, 128)


def _level(magnitude, low, high):
    if not 0 <= magnitude <= LEVELS:
        raise ValueError('AutoAugment magnitude must be in 0..%d, got %r' % (LEVELS, magnitude))
    return low + (high - low) * magnitude / LEVELS


def _signed(value):
    return value if random.random() < 0.5 else -value


def _affine(img, matrix):
    return img.transform(img.size, Image.AFFINE, matrix, resample=Image.BILINEAR,
                         fillcolor=FILL[:len(img.getbands())] if img.mode != 'L' else 128)


def shear_x(img, m):
    return _affine(img, (1, _signed(_level(m, 0, 0.3)), 0, 0, 1, 0))


def shear_y(img, m):
    return _affine(img, (1, 0, 0, _signed(_level(m, 0, 0.3)), 1, 0))


def translate_x(img, m):  # the paper's 150 px of 331, as a fraction of the width
    return _affine(img, (1, 0, _signed(_level(m, 0, 150 / 331.) * img.size[0]), 0, 1, 0))


def translate_y(img, m):
    return _affine(img, (1, 0, 0, 0, 1, _signed(_level(m, 0, 150 / 331.) * img.size[1])))


def rotate(img, m):
    return img.rotate(_signed(_level(m, 0, 30)), resample=Image.BILINEAR,
                      fillcolor=FILL if img.mode == 'RGB' else None)


def auto_contrast(img, m):
    return ImageOps.autocontrast(img)


def invert(img, m):
    return ImageOps.invert(img)


def equalize(img, m):
    return ImageOps.equalize(img)


def solarize(img, m):  # threshold 256 (no change) down to 0 (full inversion)
    return ImageOps.solarize(img, 256 - int(round(_level(m, 0, 256))))


def posterize(img, m):  # keep 8 bits (no change) down to 4
    return ImageOps.posterize(img, 8 - int(round(_level(m, 0, 4))))


def _enhance(enhancer):
    def op(img, m):  # factor 0.1..1.9, 1 = unchanged
        return enhancer(img).enhance(_level(m, 0.1, 1.9))
    return op


OPERATIONS = {
    'ShearX': shear_x, 'ShearY': shear_y, 'TranslateX': translate_x, 'TranslateY': translate_y,
    'Rotate': rotate, 'AutoContrast': auto_contrast, 'Invert': invert, 'Equalize': equalize,
    'Solarize': solarize, 'Posterize': posterize,
    'Contrast': _enhance(ImageEnhance.Contrast), 'Color': _enhance(ImageEnhance.Color),
    'Brightness': _enhance(ImageEnhance.Brightness),
    'Sharpness': _enhance(ImageEnhance.Sharpness),
}

# (operation, probability, magnitude) pairs: the 25 sub-policies found on reduced ImageNet
IMAGENET_POLICY = (
    (('Posterize', 0.4, 8), ('Rotate', 0.6, 9)),
    (('Solarize', 0.6, 5), ('AutoContrast', 0.6, 5)),
    (('Equalize', 0.8, 8), ('Equalize', 0.6, 3)),
    (('Posterize', 0.6, 7), ('Posterize', 0.6, 6)),
    (('Equalize', 0.4, 7), ('Solarize', 0.2, 4)),
    (('Equalize', 0.4, 4), ('Rotate', 0.8, 8)),
    (('Solarize', 0.6, 3), ('Equalize', 0.6, 7)),
    (('Posterize', 0.8, 5), ('Equalize', 1.0, 2)),
    (('Rotate', 0.2, 3), ('Solarize', 0.6, 8)),
    (('Equalize', 0.6, 8), ('Posterize', 0.4, 6)),
    (('Rotate', 0.8, 8), ('Color', 0.4, 0)),
    (('Rotate', 0.4, 9), ('Equalize', 0.6, 2)),
    (('Equalize', 0.0, 7), ('Equalize', 0.8, 8)),
    (('Invert', 0.6, 4), ('Equalize', 1.0, 8)),
    (('Color', 0.6, 4), ('Contrast', 1.0, 8)),
    (('Rotate', 0.8, 8), ('Color', 1.0, 2)),
    (('Color', 0.8, 8), ('Solarize', 0.8, 7)),
    (('Sharpness', 0.4, 7), ('Invert', 0.6, 8)),
    (('ShearX', 0.6, 5), ('Equalize', 1.0, 9)),
    (('Color', 0.4, 0), ('Equalize', 0.6, 3)),
    (('Equalize', 0.4, 7), ('Solarize', 0.2, 4)),
    (('Solarize', 0.6, 5), ('AutoContrast', 0.6, 5)),
    (('Invert', 0.6, 4), ('Equalize', 1.0, 8)),
    (('Color', 0.6, 4), ('Contrast', 1.0, 8)),
    (('Equalize', 0.8, 8), ('Equalize', 0.6, 3)),
)


def apply_op(img, name, magnitude):
    """Apply one named operation at a magnitude in 0..9."""
    if name not in OPERATIONS:
        raise ValueError('unknown AutoAugment operation %r; known: %s'
                         % (name, ', '.join(sorted(OPERATIONS))))
    return OPERATIONS[name](img, magnitude)


class ImageNetPolicy(object):
    """Picks one of the 25 sub-policies uniformly and applies its two steps, each with its
    probability."""

    def __init__(self, policy=IMAGENET_POLICY):
        self.policy = policy

    def __call__(self, img):
        for name, prob, magnitude in random.choice(self.policy):
            if random.random() < prob:
                img = apply_op(img, name, magnitude)
        return img
