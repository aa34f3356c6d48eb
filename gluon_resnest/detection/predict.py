"""Detections on a user's images: each image resized as in validation, run through a detector,
brought back to its own coordinates; drawn (boxes, class names, scores and mask overlays) into
a PNG and returned as JSON-ready records."""
import cv2
import numpy as np

from ..engine.data import normalize_chw
from .data import resize_short_within

__all__ = ['detect', 'draw_detections', 'PALETTE']

# distinct colours (RGB) by class index
PALETTE = np.array([(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200),
                    (245, 130, 48), (145, 30, 180), (70, 240, 240), (240, 50, 230),
                    (210, 245, 60), (250, 190, 212), (0, 128, 128), (170, 110, 40)], np.uint8)


def detect(net, image, mean, std, short=800, max_size=1333, threshold=0.5, ctx=None):
    """Detections of ``image`` (HxWx3 uint8 RGB) scoring at least ``threshold``, best first:
    (class ids N, scores N, corner boxes N x 4 in the image's pixels, masks N x H x W uint8 or
    None for a detector without masks)."""
    import mxnet as mx
    height, width = image.shape[:2]
    h, w, scale = resize_short_within(height, width, short, max_size)
    data = normalize_chw(cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR), mean, std)
    outputs = [o[0].asnumpy() for o in net(mx.nd.array(data[None], ctx=ctx or mx.cpu()))]
    ids, scores, boxes = outputs[0][:, 0], outputs[1][:, 0], outputs[2] / scale
    keep = (ids >= 0) & (scores >= threshold)
    order = np.argsort(-scores[keep], kind='stable')
    ids, scores, boxes = ids[keep][order], scores[keep][order], boxes[keep][order]
    masks = None
    if len(outputs) > 3:
        from gluoncv.data.transforms.mask import fill
        kept = outputs[3][keep][order]
        masks = fill(kept, boxes, (width, height)) if len(kept) else \
            np.zeros((0, height, width), np.uint8)
    return ids.astype(int), scores, boxes, masks


def draw_detections(image, ids, scores, boxes, masks=None, class_names=None):
    """``image`` (RGB uint8) with each detection's mask tinted in and its box and label drawn."""
    canvas = image.copy()
    for k in range(len(ids))[::-1]:  # the best drawn last, on top
        colour = PALETTE[ids[k] % len(PALETTE)]
        if masks is not None:
            inside = masks[k].astype(bool)
            canvas[inside] = (0.5 * canvas[inside] + 0.5 * colour).astype(np.uint8)
        x1, y1, x2, y2 = (int(round(v)) for v in boxes[k])
        cv2.rectangle(canvas, (x1, y1), (x2, y2), tuple(int(c) for c in colour), 1)
        name = class_names[ids[k]] if class_names else str(ids[k])
        cv2.putText(canvas, '%s %.2f' % (name, scores[k]), (x1, max(y1 - 2, 8)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.3, tuple(int(c) for c in colour), 1,
                    cv2.LINE_AA)
    return canvas
