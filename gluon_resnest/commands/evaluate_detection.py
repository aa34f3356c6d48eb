"""Box AP (COCO, with mask AP for Mask R-CNN) or VOC mAP of a detection checkpoint on a dataset
split, on one process or under horovodrun (detections gathered exactly):

    python eval/evaluate_detection.py --checkpoint runs/detection/best --layout coco \\
        --data-root ~/data/coco --split val2017 --results detections.json
    python eval/evaluate_detection.py --checkpoint runs/voc/best --layout voc \\
        --data-root ~/data/VOCdevkit --split 2007/test --metric voc07
"""
import json
import os
import sys

from ..argtypes import command_parser, positive_int
from ..detection import evaluate_detection, load_detector
from ..detection.data import LAYOUTS, DetectionDataError, dataset_split, open_detection_data
from ..detection.evaluate import METRICS
from ..detection.model import MASK_MODELS, check_short_side
from ..engine.checkpoint import check_output_file, read_meta, write_json
from ..runtime import quiet_native_logs


def main(argv=None):
    quiet_native_logs()  # MXNet's C++ notices would break the progress bars
    parser = command_parser(__doc__)
    parser.add_argument('--checkpoint', required=True,
                        help='a checkpoint folder train/train_detection.py wrote')
    parser.add_argument('--layout', choices=LAYOUTS, default='coco')
    parser.add_argument('--data-root', required=True,
                        help="the dataset's folder (coco-json: the image folder)")
    parser.add_argument('--split', default=None,
                        help='coco: e.g. val2017 (the default), voc: e.g. 2007/test; coco-json '
                             'reads --annotations instead')
    parser.add_argument('--annotations', default='', help='coco-json: the annotation file')
    parser.add_argument('--metric', choices=METRICS, default=None,
                        help="default: the checkpoint's validation metric")
    parser.add_argument('--short', type=positive_int, default=None,
                        help="short side, px (default: the checkpoint's validation size)")
    parser.add_argument('--max-size', type=positive_int, default=None,
                        help="long side at most, px (default: the checkpoint's)")
    parser.add_argument('--results', help='write the COCO results JSON here')
    parser.add_argument('--out', help='also write the scores to this JSON file')
    parser.add_argument('--no-progress', action='store_true')
    args = parser.parse_args(argv)
    try:
        for flag in ('--out', '--results'):  # before the evaluation, not after it
            if getattr(args, flag[2:]):
                check_output_file(getattr(args, flag[2:]), flag)
        split = dataset_split(args.layout, args.split, args.annotations, 'val2017')
        meta = read_meta(args.checkpoint)
        cfg = meta.get('config', {})
        short = args.short or cfg.get('test_short')
        max_size = args.max_size or cfg.get('max_size')
        check_short_side(short, max_size, cfg.get('backbone'))
        net, cfg, names, _ = load_detector(args.checkpoint, max_size=max_size)
        metric = args.metric or cfg.metric
        masks = cfg.model in MASK_MODELS and metric == 'coco'
        dataset = open_detection_data(args.layout, args.data_root, split, empty='keep',
                                      annotations=args.annotations)
        if list(dataset.classes) != list(names):
            raise ValueError('%s has classes %s, the checkpoint %s'
                             % (dataset.source, ', '.join(dataset.classes[:6]),
                                ', '.join(names[:6])))
        scores = evaluate_detection(net, dataset, None, cfg.backbone, short, max_size, metric,
                                    masks, results_path=args.results,
                                    progress=not args.no_progress)
    except (ValueError, FileNotFoundError, DetectionDataError) as err:
        sys.exit('error: %s' % err)
    if int(os.environ.get('HOROVOD_RANK', 0)) == 0:
        what = dict(data=dataset.source, **({'split': split} if split else {}), metric=metric,
                    short=short, max_size=max_size)
        print(json.dumps(dict(what, **{k: (round(v, 2) if isinstance(v, float) else v)
                                       for k, v in scores.items()
                                       if not k.startswith('ap_') or metric == 'coco'})))
        if args.out:
            write_json(args.out, dict(scores, **what))


if __name__ == '__main__':
    main()
