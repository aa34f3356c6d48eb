"""Dense prediction at one scale or several, with flips: class probabilities averaged.

Each scale resizes the whole image (bilinear), the logits are resized back to the image's size,
turned into probabilities (softmax) and averaged with those of the mirrored image and of the
other scales. (GluonCV's test script sums ``exp(logits)``, which weighs a scale by its logits'
magnitude, and its condition for the multi-scale path is always true for every model, so it
never runs it.)
"""
import mxnet as mx
import numpy as np

__all__ = ['MULTI_SCALES', 'main_logits', 'predict_probabilities', 'predict_classes',
           'colorize', 'prediction_figure', 'read_image', 'segment_images']

# the paper's and GluonCV's multi-scale evaluation
MULTI_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)


def main_logits(net, x):
    """The main output of a segmentation network (its auxiliary output, if any, dropped)."""
    out = net(x)
    return out[0] if isinstance(out, (list, tuple)) else out


def _resize(x, height, width):
    if x.shape[2:] == (height, width):
        return x
    return mx.nd.contrib.BilinearResize2D(x, height=height, width=width)


def predict_probabilities(net, images, scales=(1.0,), flip=False, min_size=1):
    """(N, classes, H, W) probabilities for an (N, C, H, W) batch, averaged over ``scales``
    (relative sizes) and, with ``flip``, horizontal mirrors. A scale that would make a side
    smaller than ``min_size`` (the network's output stride) is an error."""
    height, width = images.shape[2:]
    total, count = None, 0
    for scale in scales:
        h, w = int(round(height * scale)), int(round(width * scale))
        if min(h, w) < min_size:
            raise ValueError('scale %g makes the %dx%d image %dx%d, smaller than the %d px the '
                             'network needs' % (scale, height, width, h, w, min_size))
        scaled = _resize(images, h, w)
        for mirrored in ((False, True) if flip else (False,)):
            logits = main_logits(net, scaled.flip(axis=3) if mirrored else scaled)
            if mirrored:
                logits = logits.flip(axis=3)
            probs = mx.nd.softmax(_resize(logits.astype('float32', copy=False), height, width),
                                  axis=1)
            total = probs if total is None else total + probs
            count += 1
    return total / count


def predict_classes(net, image, mean, std, scales=(1.0,), flip=False, min_size=1, ctx=None):
    """(H, W) class indices (uint8 for up to 256 classes, else int32) of one H x W x 3 uint8
    RGB image, normalized with ``mean``/``std`` as the network was trained."""
    x = (image.astype(np.float32) / 255.0 - np.asarray(mean, np.float32)) / np.asarray(
        std, np.float32)
    x = mx.nd.array(x.transpose(2, 0, 1)[None], ctx=ctx or mx.cpu())
    classes = predict_probabilities(net, x, scales, flip, min_size)[0].argmax(axis=0).asnumpy()
    return classes.astype(np.uint8 if classes.max() < 256 else np.int32)


def colorize(classes, class_count):
    """A palette PNG image (PIL) of a class map, in GluonCV's colours for the dataset its class
    count suggests: ADE20K (150), Cityscapes (19), else Pascal VOC's 256-colour palette. The
    pixel values stay the class indices."""
    from PIL import Image
    from gluoncv.utils.viz import segmentation as palettes
    if class_count > 256:
        raise ValueError('a palette PNG holds 256 classes, the network has %d' % class_count)
    if class_count == 150:  # GluonCV's ADE20K palette is indexed by class + 1 (0: "other")
        palette = list(palettes.adepallete[3:]) + [0, 0, 0]
    else:
        palette = list(palettes.cityspallete if class_count == 19 else palettes.vocpallete)
    image = Image.fromarray(classes.astype('uint8'), mode='P')
    image.putpalette(palette[:768])
    return image


def prediction_figure(net, dataset, path, mean, std, class_count, min_size=1, count=6):
    """A PNG of ``dataset``'s first ``count`` items: each image, its ground truth and the
    network's prediction side by side in one row (the same colours for both maps, ignored
    pixels black). Written atomically; returns ``path``."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from ..engine.progress import save_figure
    rows = min(count, len(dataset))
    fig, axes = plt.subplots(rows, 3, figsize=(6, 2 * rows), squeeze=False)
    for row in range(rows):
        image, label = dataset[row]
        truth = np.asarray(label, np.int64)
        ignored = truth >= class_count
        truth_rgb = np.asarray(colorize(np.where(ignored, 0, truth), class_count).convert('RGB'))
        predicted = predict_classes(net, image, mean, std, min_size=min_size)
        shown = (image, np.where(ignored[..., None], 0, truth_rgb),  # ignored pixels black
                 np.asarray(colorize(predicted, class_count).convert('RGB')))
        for ax, picture, title in zip(axes[row], shown, ('image', 'ground truth', 'prediction')):
            ax.imshow(picture, interpolation='nearest')
            ax.set_axis_off()
            if row == 0:
                ax.set_title(title, fontsize=9)
    save_figure(fig, path)
    return path


def read_image(path):
    """H x W x 3 uint8 RGB pixels of an image file, or SegmentationDataError naming it."""
    from PIL import Image
    from .data import SegmentationDataError
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert('RGB'))
    except (OSError, ValueError) as err:
        raise SegmentationDataError('cannot read the image %s (%s)' % (path, err)) from None


def segment_images(net, config, paths, out_dir, scales=(1.0,), flip=False):
    """Segments image files with ``net`` (``config``: its backbone, classes and output stride,
    as :func:`~gluon_resnest.segmentation.evaluate.load_segmentation` gives them): writes
    ``out_dir/<name>.png`` (:func:`colorize`, atomically) for each and yields one dict per image
    (its size and the fraction of its pixels in each class found)."""
    import os
    from ..engine.checkpoint import atomic_file
    from ..zoo.registry import get_model_info
    info = get_model_info(config['backbone'])
    classes = config['classes']
    for path in paths:
        image = read_image(path)
        labels = predict_classes(net, image, info.mean, info.std, scales, flip,
                                 config.get('output_stride', 1))
        out = os.path.join(out_dir, os.path.splitext(os.path.basename(path))[0] + '.png')
        with atomic_file(out) as tmp:
            colorize(labels, classes).save(tmp, format='PNG')
        found, counts = np.unique(labels, return_counts=True)
        yield dict(image=path, output=out, height=int(labels.shape[0]),
                   width=int(labels.shape[1]),
                   classes={int(c): round(float(n) / labels.size, 4)
                            for c, n in zip(found, counts)})
