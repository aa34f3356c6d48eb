"""Detect objects (and their masks, with Mask R-CNN) on your own images with a trained
detector: one PNG per image with the detections drawn, and one JSON line per image.

    python eval/predict_detection.py --checkpoint runs/detection/best --out-dir predictions \\
        photo1.jpg photo2.png
"""
import argparse
import json
import os
import sys

from ..argtypes import command_parser, positive_int
from ..engine.checkpoint import atomic_file, check_writable
from ..runtime import quiet_native_logs
from .images import output_names


def _threshold(text):
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError('a score between 0 and 1, got %s' % text)
    return value


def main(argv=None):
    quiet_native_logs()  # MXNet's C++ notices would break the output
    parser = command_parser(__doc__)
    parser.add_argument('images', nargs='+', help='image files (JPEG, PNG, ...)')
    parser.add_argument('--checkpoint', required=True,
                        help='a checkpoint folder train/train_detection.py wrote')
    parser.add_argument('--out-dir', required=True, help='where the PNG files go')
    parser.add_argument('--threshold', type=_threshold, default=0.5,
                        help='lowest score kept (default: 0.5)')
    parser.add_argument('--short', type=positive_int, default=None,
                        help="short side, px (default: the checkpoint's validation size)")
    parser.add_argument('--max-size', type=positive_int, default=None,
                        help="long side at most, px (default: the checkpoint's)")
    args = parser.parse_args(argv)
    try:
        import cv2
        from ..detection import load_detector
        from ..detection.data import DetectionDataError, read_image
        from ..detection.model import check_short_side
        from ..detection.predict import detect, draw_detections
        from ..engine.checkpoint import read_meta
        from ..zoo.registry import get_model_info
        names = output_names(args.images)
        cfg = read_meta(args.checkpoint).get('config', {})
        short = args.short or cfg.get('test_short')
        max_size = args.max_size or cfg.get('max_size')
        check_short_side(short, max_size, cfg.get('backbone'))
        images = [read_image(path) for path in args.images]  # every one readable, up front
        net, cfg, classes, category_ids = load_detector(args.checkpoint, max_size=max_size)
        info = get_model_info(cfg.backbone)
        check_writable(args.out_dir)
        for path, name, image in zip(args.images, names, images):
            ids, scores, boxes, masks = detect(net, image, info.mean, info.std, short,
                                               max_size, args.threshold)
            out = os.path.join(args.out_dir, name + '.png')
            drawn = draw_detections(image, ids, scores, boxes, masks, classes)
            with atomic_file(out) as tmp:
                cv2.imencode('.png', drawn[:, :, ::-1])[1].tofile(tmp)
            print(json.dumps(dict(image=path, png=out, detections=[
                dict(class_name=classes[k], category_id=category_ids[k],
                     score=round(float(s), 4), box=[round(float(v), 1) for v in b],
                     mask_pixels=None if masks is None else int(m.sum()))
                for k, s, b, m in zip(ids, scores, boxes,
                                      masks if masks is not None else [None] * len(ids))])),
                  flush=True)
    except (ValueError, FileNotFoundError, PermissionError, DetectionDataError) as err:
        sys.exit('error: %s' % err)


if __name__ == '__main__':
    main()
