"""Box AP (COCO, with mask AP for Mask R-CNN) or VOC mAP of a detection checkpoint on a dataset
split, on one process or under horovodrun (detections gathered exactly):

    python eval/evaluate_detection.py --checkpoint runs/detection/best --layout coco \\
        --data-root ~/data/coco --split val2017 --results detections.json
    python eval/evaluate_detection.py --checkpoint runs/voc/best --layout voc \\
        --data-root ~/data/VOCdevkit --split 2007/test --metric voc07
"""
import argparse
import json
import os
import sys

from ..argtypes import positive_int
from ..detection.data import LAYOUTS, DetectionDataError, open_detection_data
from ..detection.evaluate import METRICS
from ..detection.model import MASK_MODELS
from ..detection.task import evaluate_detection, load_detector
from ..engine.checkpoint import check_output_file, write_json
from ..runtime import quiet_native_logs


def main(argv=None):
    quiet_native_logs()  # MXNet's C++ notices would break the progress bars
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--checkpoint', required=True,
                        help='a checkpoint folder train/train_detection.py wrote')
    parser.add_argument('--layout', choices=LAYOUTS, default='coco')
    parser.add_argument('--data-root', required=True,
                        help="the dataset's folder (coco-json: the image folder)")
    parser.add_argument('--split', default='val2017')
    parser.add_argument('--annotations', default='', help='coco-json: the annotation file')
    parser.add_argument('--metric', choices=METRICS, default=None,
                        help="default: the checkpoint's validation metric")
    parser.add_argument('--short', type=positive_int, default=None,
                        help="short side, px (default: the checkpoint's validation size)")
    parser.add_argument('--max-size', type=positive_int, default=None)
    parser.add_argument('--results', help='write the COCO results JSON here')
    parser.add_argument('--out', help='also write the scores to this JSON file')
    parser.add_argument('--no-progress', action='store_true')
    args = parser.parse_args(argv)
    try:
        for path in (args.out, args.results):
            if path:
                check_output_file(path)  # before the evaluation, not after it
        net, cfg, names, _ = load_detector(args.checkpoint)
        metric = args.metric or cfg.metric
        masks = cfg.model in MASK_MODELS and metric == 'coco'
        dataset = open_detection_data(args.layout, args.data_root, args.split, empty='keep',
                                      annotations=args.annotations)
        if list(dataset.classes) != list(names):
            raise ValueError('%s has classes %s, the checkpoint %s'
                             % (args.split, ', '.join(dataset.classes[:6]),
                                ', '.join(names[:6])))
        scores = evaluate_detection(net, dataset, None, cfg.backbone,
                                    args.short or cfg.test_short, args.max_size or cfg.max_size,
                                    metric, masks, results_path=args.results,
                                    progress=not args.no_progress)
    except (ValueError, FileNotFoundError, DetectionDataError) as err:
        sys.exit('error: %s' % err)
    if int(os.environ.get('HOROVOD_RANK', 0)) == 0:
        summary = dict(split=args.split, metric=metric, **{
            k: (round(v, 2) if isinstance(v, float) else v) for k, v in scores.items()
            if not k.startswith('ap_') or metric == 'coco'})
        print(json.dumps(summary))
        if args.out:
            write_json(args.out, dict(scores, split=args.split, metric=metric))


if __name__ == '__main__':
    main()
