"""Worker of :func:`gluon_resnest.analysis.benchmark.time_model_alone`: one process timing a
zoo model's training step alone (a fixed batch: no data, no communication) and printing one JSON
line. Run as ``python -m gluon_resnest.analysis.alone``; not a user command."""
import json
from ..argtypes import command_parser


def main(argv=None):
    parser = command_parser(__doc__)
    parser.add_argument('--model', required=True)
    parser.add_argument('--batch-size', type=int, required=True)
    parser.add_argument('--size', type=int, required=True)
    parser.add_argument('--classes', type=int, required=True)
    parser.add_argument('--dropblock-prob', type=float, required=True)
    parser.add_argument('--repeats', type=int, required=True)
    parser.add_argument('--amp', action='store_true', help='bfloat16 training (AMP)')
    args = parser.parse_args(argv)
    import mxnet as mx
    if args.amp:
        from mxnet.contrib import amp
        amp.init(target_dtype='bfloat16')
    from ..runtime import quiet_native_logs
    from ..zoo.registry import get_model
    from .benchmark import time_training
    quiet_native_logs()
    net = get_model(args.model, classes=args.classes, dropblock_prob=args.dropblock_prob)
    net.initialize(mx.init.MSRAPrelu())
    print(json.dumps(time_training(net, args.batch_size, args.size, args.classes,
                                   repeats=args.repeats)), flush=True)


if __name__ == '__main__':
    main()
