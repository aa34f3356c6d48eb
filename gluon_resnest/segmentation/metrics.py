"""Pixel accuracy and mean IoU from a confusion matrix.

GluonCV's ``SegmentationMetric`` averages IoU over every class, counting a class that appears
neither in the labels nor in the predictions as IoU 0; here such classes are left out of the mean
(they have no IoU), as in the Cityscapes and ADE20K evaluation scripts. The counts are integers,
so summing matrices over batches and Horovod ranks is exact.
"""
import numpy as np

__all__ = ['confusion_matrix', 'segmentation_scores']


def confusion_matrix(pred, label, classes, ignore_label=255):
    """(classes, classes) int64 counts, rows = true class, columns = predicted class, over the
    pixels whose label is not ``ignore_label``. ``pred`` and ``label`` are integer arrays of
    one shape (NumPy or NDArray)."""
    pred = np.asarray(getattr(pred, 'asnumpy', lambda: pred)()).astype(np.int64).ravel()
    label = np.asarray(getattr(label, 'asnumpy', lambda: label)()).astype(np.int64).ravel()
    if pred.shape != label.shape:
        raise ValueError('prediction and label differ in size: %d vs %d pixels'
                         % (pred.size, label.size))
    keep = label != ignore_label
    pred, label = pred[keep], label[keep]
    bad = (label < 0) | (label >= classes)
    if bad.any():
        raise ValueError('label %d is outside 0..%d and is not the ignore label %d'
                         % (label[bad][0], classes - 1, ignore_label))
    return np.bincount(label * classes + pred, minlength=classes * classes).reshape(
        classes, classes)


def segmentation_scores(conf):
    """dict(pixel_acc, miou (both %), iou: per-class % or None where the class is absent from
    both labels and predictions, pixels)."""
    conf = np.asarray(conf, dtype=np.float64)
    correct = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - correct
    with np.errstate(invalid='ignore', divide='ignore'):
        iou = np.where(union > 0, correct / union, np.nan)
    pixels = conf.sum()
    return dict(pixel_acc=100.0 * correct.sum() / pixels if pixels else float('nan'),
                miou=100.0 * float(np.nanmean(iou)) if (union > 0).any() else float('nan'),
                iou=[None if np.isnan(v) else 100.0 * float(v) for v in iou],
                pixels=int(pixels))
