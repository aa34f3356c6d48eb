"""Per-operator time of a zoo model's inference or training step (MXNet profiler, bulk execution
off so every operator is timed on its own). Prints a table, slowest first.

    python eval/profile.py --model resnest50 --mode training
"""
import os

# must precede the first graph: bulked segments would hide the per-operator times
os.environ.setdefault('MXNET_EXEC_BULK_EXEC_INFERENCE', '0')
os.environ.setdefault('MXNET_EXEC_BULK_EXEC_TRAIN', '0')

import mxnet as mx

from ..runtime import quiet_native_logs
from .. import get_model, get_model_info, list_models
from ..analysis import (INFERENCE_BATCH, TRAINING_BATCH, TRAINING_SIZE,
                        inference_step, training_step)
from ..analysis.profile import profile_operators
from ..argtypes import command_parser, positive_int


def main(argv=None):
    quiet_native_logs()  # MXNet's C++ notices would break the progress bars
    parser = command_parser(__doc__)
    parser.add_argument('--model', default='resnest50', choices=list_models(),
                        metavar='NAME')
    parser.add_argument('--mode', choices=['inference', 'training'], default='inference')
    parser.add_argument('--batch-size', type=positive_int, default=None,
                        help='default: %d for inference, %d for training (as eval/benchmark.py)'
                        % (INFERENCE_BATCH, TRAINING_BATCH))
    parser.add_argument('--size', type=positive_int, default=None,
                        help="default: the model's eval crop for inference, %d for training"
                        % TRAINING_SIZE)
    parser.add_argument('--iterations', type=positive_int, default=3)
    parser.add_argument('--dropblock-prob', type=float, default=0.1,
                        help='DropBlock rate while training')
    parser.add_argument('--top', type=positive_int, default=25, help='operators to list')
    args = parser.parse_args(argv)
    training = args.mode == 'training'
    batch = args.batch_size or (TRAINING_BATCH if training else INFERENCE_BATCH)
    size = args.size or (TRAINING_SIZE if training
                         else get_model_info(args.model).eval_crop)
    net = get_model(args.model, dropblock_prob=args.dropblock_prob if training
                                  else 0.0)
    net.initialize(mx.init.MSRAPrelu())
    step = training_step(net, batch, size) if training else inference_step(net, batch, size)
    rows = profile_operators(step, args.iterations)
    total = sum(ms for _, _, ms in rows)
    print('%s %s, batch %d at %d px: %.1f ms of operators per iteration'
          % (args.model, args.mode, batch, size, total))
    print('%-42s %8s %10s %6s' % ('operator', 'calls', 'ms/iter', '%'))
    for name, calls, ms in rows[:args.top]:
        print('%-42s %8.0f %10.2f %6.1f' % (name, calls, ms, 100.0 * ms / total))


if __name__ == '__main__':
    main()
