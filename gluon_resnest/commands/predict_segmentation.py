"""Segment your own images with a trained segmentation network (a checkpoint folder, or an
export with its -meta.json): one colour-coded PNG per image, whose pixel values are the class
indices, and one JSON line per image with the classes found.

    python eval/predict_segmentation.py --checkpoint runs/scenes/best --out-dir predictions \\
        photo1.jpg photo2.png
    python eval/predict_segmentation.py --symbol deploy/seg-symbol.json \\
        --params deploy/seg-0000.params --multi-scale --out-dir predictions photo.jpg
"""
import json
import sys

from ..argtypes import command_parser, positive_int
from ..runtime import quiet_native_logs
from .images import output_names
from ..segmentation.data import SegmentationDataError
from ..segmentation.evaluate import load_segmentation
from ..segmentation.predict import MULTI_SCALES, segment_images
from ..engine.checkpoint import check_writable


def main(argv=None):
    quiet_native_logs()  # MXNet's C++ notices would break the output
    parser = command_parser(__doc__)
    parser.add_argument('images', nargs='+', help='image files (JPEG, PNG, ...)')
    parser.add_argument('--checkpoint', help='a checkpoint folder train_segmentation.py wrote')
    parser.add_argument('--symbol', help='exported -symbol.json (with --params)')
    parser.add_argument('--params')
    parser.add_argument('--backbone', help="an export's preprocessing, if it has no -meta.json")
    parser.add_argument('--classes', type=positive_int, help="an export's classes, if it has no "
                        "-meta.json")
    parser.add_argument('--out-dir', required=True, help='where the PNG files go')
    parser.add_argument('--multi-scale', action='store_true',
                        help='scales %s with flips' % ', '.join(map(str, MULTI_SCALES)))
    args = parser.parse_args(argv)
    try:
        output_names(args.images)  # missing images or clashing outputs: named now
        net, config = load_segmentation(args.checkpoint, args.symbol, args.params,
                                        args.backbone)
        config = dict(config)
        config['classes'] = config.get('classes') or args.classes
        if not config['classes']:
            raise ValueError('--classes is required for an export without -meta.json')
        check_writable(args.out_dir)
        scales, flip = (MULTI_SCALES, True) if args.multi_scale else ((1.0,), False)
        for record in segment_images(net, config, args.images, args.out_dir, scales, flip):
            print(json.dumps(record), flush=True)
    except (ValueError, FileNotFoundError, PermissionError, SegmentationDataError) as err:
        sys.exit('error: %s' % err)


if __name__ == '__main__':
    main()
