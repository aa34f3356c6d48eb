"""Speed, memory, parameters and FLOPs of a zoo model, optionally against what a user would pick
instead, measured the same way in one run: GluonCV's model of the same name, the model's own ONNX
export in ONNX Runtime (inference), timm's model on PyTorch or timm's ONNX export in ONNX Runtime
(in the peers' separate environment, `make bench-env`). Prints one JSON line per measurement,
each with the machine's measured convolution peak and the fraction of it the figure reaches.

    python eval/benchmark.py --model resnest50 --compare gluoncv
    python eval/benchmark.py --model resnest50 --mode inference --compare onnxruntime
    python eval/benchmark.py --model resnest50 --compare timm,timm-onnxruntime
    python eval/benchmark.py --model resnest50 --mode inference --backend int8 \
        --compare timm-onnxruntime-int8
    python eval/benchmark.py --model resnest50 --mode training --compare no-dropblock
    python eval/benchmark.py --model resnest14_small --mode training --train-size 28 \
        --train-batch-size 128 --classes 10 --compare trainer \
        --rec-train data/fashion-mnist/train.rec --rec-val data/fashion-mnist/val.rec
"""
import argparse
import contextlib
import json
import os
import statistics
import tempfile

import mxnet as mx

from ..runtime import quiet_native_logs
from .. import get_model, get_model_info, list_models
from ..analysis import (INFERENCE_BATCH, TRAINING_BATCH, TRAINING_SIZE, count_flops,
                        count_params, inference_step, peak_rss_mb, training_step)
from ..analysis.benchmark import (PeerProcess, conv_peak_gmacs, onnxruntime_step,
                                  time_model_alone, time_trainer)
from ..analysis.peer_benchmark import median_rates
from ..deploy import BACKENDS, export_onnx, optimize_for_cpu
from ..deploy.optimize import require_bfloat16_cpu
from ..argtypes import positive_int


COMPARISONS = ('gluoncv', 'onnxruntime', 'no-dropblock', 'band-growth', 'timm',
               'timm-onnxruntime', 'timm-onnxruntime-int8', 'trainer')
# what each inference backend computes in; training runs float32, or bfloat16 with --amp
BACKEND_DTYPES = {'fp32': 'float32', 'onednn': 'float32', 'int8': 'int8', 'bf16': 'bfloat16'}
# the dtypes each comparison can run in: like is compared with like only
COMPARISON_DTYPES = {'gluoncv': ('float32', 'int8', 'bfloat16'), 'onnxruntime': ('float32',),
                     'no-dropblock': ('float32', 'bfloat16'),
                     'band-growth': ('float32', 'bfloat16'), 'timm': ('float32', 'bfloat16'),
                     'timm-onnxruntime': ('float32',), 'timm-onnxruntime-int8': ('int8',),
                     'trainer': ('float32', 'bfloat16')}
# the comparisons that only time one mode
INFERENCE_ONLY = ('onnxruntime', 'timm-onnxruntime', 'timm-onnxruntime-int8')
TRAINING_ONLY = ('no-dropblock', 'band-growth', 'trainer')
# zoo name -> timm's name of the same network
TIMM_NAMES = {'resnest14': 'resnest14d', 'resnest26': 'resnest26d', 'resnest50': 'resnest50d',
              'resnest101': 'resnest101e', 'resnest200': 'resnest200e',
              'resnest269': 'resnest269e', 'resnest50_fast_1s4x24d': 'resnest50d_1s4x24d',
              'resnest50_fast_4s2x40d': 'resnest50d_4s2x40d', 'regnety_4gf': 'regnety_040'}


def _comparisons(text):
    names = [name for name in text.split(',') if name]
    unknown = sorted(set(names) - set(COMPARISONS))
    if unknown or not names:
        raise argparse.ArgumentTypeError('%r: choose from %s (comma-separated)'
                                         % (text, ', '.join(COMPARISONS)))
    return names


def build(impl, name, mode, size, dropblock_prob, classes=1000):
    """An initialized network. Training uses the paper's DropBlock rate on both sides (GluonCV's
    zoo has it built in and tied to ``input_size``); ``band-growth`` grows DropBlock's seeds by
    band-matrix products instead of the depthwise convolution."""
    if impl == 'gluoncv':
        from gluoncv.model_zoo import get_model as gluoncv_model
        net = gluoncv_model(name, input_size=size, classes=classes)
    else:
        net = get_model(name, classes=classes,
                        dropblock_prob=dropblock_prob if mode == 'training' else 0.0)
    if impl == 'band-growth':
        from ..layers.dropblock import DropBlock
        blocks = []
        net.apply(lambda block: blocks.append(block) if isinstance(block, DropBlock) else None)
        for block in blocks:
            block.channels = None
    net.initialize(mx.init.MSRAPrelu())
    return net


def dtype_of(args, mode):
    """What this project's network computes in, in ``mode``."""
    if mode == 'training':
        return 'bfloat16' if args.amp else 'float32'
    return BACKEND_DTYPES[args.backend]


def _rounded(result):
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in result.items()}


def prepare(impl, args, mode, stack):
    """What ``impl`` times in ``mode``: (record fields, [one-batch step functions]), or None
    when it has nothing to time there. The first step is the implementation's; the second, for
    timm-onnxruntime, runs our ONNX export in the peers' ONNX Runtime. ``stack`` (an
    ExitStack) owns temporary files and the peers' processes."""
    inference = mode == 'inference'
    if (impl in INFERENCE_ONLY and not inference) or (impl in TRAINING_ONLY and inference):
        return None  # ONNX Runtime's CPU provider does not train; DropBlock is off at inference
    size = args.size if inference else args.train_size
    batch = args.batch_size if inference else args.train_batch_size
    fields = dict(model=args.model, impl=impl, mode=mode, batch_size=batch, size=size,
                  dtype=dtype_of(args, mode))
    if impl.startswith('timm'):
        ours = None
        if impl == 'timm-onnxruntime':  # our export in the peers' ONNX Runtime beside timm's
            folder = stack.enter_context(tempfile.TemporaryDirectory())
            ours = export_onnx(build('gluon_resnest', args.model, mode, size, 0.0, args.classes),
                               os.path.join(folder, 'model.onnx'), (1, 3, size, size))
        peer = stack.enter_context(PeerProcess(
            args.peer_python, TIMM_NAMES[args.model], impl, mode, batch, size, also_onnx=ours,
            dtype=fields['dtype'] if impl == 'timm' else 'float32'))
        fields.update((k, v) for k, v in peer.info.items() if k not in ('ready', 'steps'))
        return fields, [peer.step(i) for i in range(peer.info['steps'])]
    dropblock = 0.0 if impl == 'no-dropblock' else args.dropblock_prob
    net = build('gluon_resnest' if impl in ('onnxruntime', 'no-dropblock') else impl,
                args.model, mode, size, dropblock, args.classes)
    fields['params'] = count_params(net)
    if impl == 'onnxruntime':
        folder = stack.enter_context(tempfile.TemporaryDirectory())
        step, fields['threads'] = onnxruntime_step(
            export_onnx(net, os.path.join(folder, 'model.onnx'), (1, 3, size, size)), batch, size)
        return fields, [step]
    if not inference:
        return fields, [training_step(net, batch, size, args.classes)]
    shape = (batch, 3, size, size)
    # speed only: INT8 calibrated on random images (evaluate.py calibrates on data)
    calib = mx.nd.random.uniform(shape=shape) if args.backend == 'int8' else None
    fields['backend'] = args.backend
    return fields, [inference_step(optimize_for_cpu(net, args.backend, shape, calib), batch, size,
                                   hybridize=False)]


def measure(impls, args, mode):
    """{impl: record} for ``mode``: every implementation's steps alternate in one
    :func:`median_rates` (the peers' in their own processes, on request), so a slow spell of
    the machine falls on all alike. The trainer, a multi-process run, is timed on its own."""
    inference = mode == 'inference'
    with contextlib.ExitStack() as stack:
        prepared = [(impl, prepare(impl, args, mode, stack)) for impl in impls
                    if impl != 'trainer']
        prepared = [(impl, found) for impl, found in prepared if found]
        rates = iter(median_rates(
            [step for _, (_, steps) in prepared for step in steps],
            args.batch_size if inference else args.train_batch_size, 3 if inference else 2,
            args.repeats if inference else args.train_repeats))
        records = {}
        for impl, (fields, steps) in prepared:
            records[impl] = dict(fields, **_rounded(next(rates)))
            if len(steps) > 1:  # both ONNX files in the peers' ONNX Runtime
                records[impl]['ours_onnx_img_per_s'] = round(next(rates)['img_per_s'], 3)
    ours = records['gluon_resnest']
    ours['omp_threads'] = os.environ.get('OMP_NUM_THREADS', 'mxnet default')
    if len(prepared) == 1 or all(impl.startswith('timm') for impl, _ in prepared[1:]):
        ours['peak_rss_mb'] = round(peak_rss_mb(), 1)  # no other network in this process
    if 'trainer' in impls and not inference:
        records['trainer'] = measure_trainer(args)
    return records


def measure_trainer(args):
    """The trainer on real data beside what its ranks' computation alone allows, both in
    ``args.np`` processes sharing the cores."""
    common = (args.model, args.np, args.train_batch_size, args.train_size, args.classes,
              args.dropblock_prob)
    alone = time_model_alone(*common, repeats=max(args.train_repeats, 10), amp=args.amp)
    trainer = time_trainer(args.model, args.rec_train, args.rec_val, args.np, *common[2:],
                           iterations=args.iterations, amp=args.amp)
    return [dict(model=args.model, impl='trainer', mode='training',
                 batch_size=args.train_batch_size, size=args.train_size,
                 dtype=dtype_of(args, 'training'), **record)
            for record in (dict(alone, what='model alone, fixed batch'),
                           dict(trainer, what='train/train.py on %s' % args.rec_train,
                                of_model_alone=round(trainer['img_per_s'] /
                                                     alone['img_per_s'], 3)))]


def _median_over_rounds(records):
    """One record from the same measurement's records of several rounds: the median of each
    rate, with the rounds' values beside it."""
    if len(records) == 1:
        return records[0]
    if isinstance(records[0], list):  # the trainer's pair: the model alone, then the trainer
        alone, trainer = [_median_over_rounds(list(pair)) for pair in zip(*records)]
        trainer['of_model_alone'] = round(trainer['img_per_s'] / alone['img_per_s'], 3)
        return [alone, trainer]
    record = dict(records[0], rounds=len(records))
    for key in ('img_per_s', 'ours_onnx_img_per_s'):
        if key in record:
            values = [r[key] for r in records]
            record[key], record[key + '_rounds'] = round(statistics.median(values), 3), values
    if 'median_ms' in record:  # the step time of the median rate, not of the first round
        record['median_ms'] = round(record['batch_size'] * 1e3 / record['img_per_s'], 3)
        record.pop('min_ms', None)
    return record


def main(argv=None):
    quiet_native_logs()  # MXNet's C++ notices would break the progress bars
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--model', default='resnest50', choices=list_models())
    parser.add_argument('--mode', choices=['inference', 'training', 'both'], default='both')
    parser.add_argument('--batch-size', type=positive_int, default=INFERENCE_BATCH,
                        help='inference batch')
    parser.add_argument('--size', type=positive_int, default=None,
                        help="inference crop (default: the model's eval crop)")
    parser.add_argument('--train-batch-size', type=positive_int, default=TRAINING_BATCH)
    parser.add_argument('--train-size', type=positive_int, default=TRAINING_SIZE)
    parser.add_argument('--repeats', type=positive_int, default=10)
    parser.add_argument('--train-repeats', type=positive_int, default=5)
    parser.add_argument('--dropblock-prob', type=float, default=0.1,
                        help='DropBlock rate while training (GluonCV builds 0.1 in)')
    parser.add_argument('--compare', type=_comparisons, default=[],
                        help="also measure (comma-separated): gluoncv (GluonCV's model of the "
                             "same name), onnxruntime (this model's ONNX export, inference), "
                             "no-dropblock (training without DropBlock: its cost), band-growth "
                             "(training with DropBlock's band-matrix growth instead of the "
                             "depthwise convolution), timm "
                             "(timm's model on PyTorch), timm-onnxruntime (timm's ONNX "
                             "export, with ours beside it), timm-onnxruntime-int8 (timm's export "
                             "quantized by ONNX Runtime: static QDQ, per channel), trainer "
                             "(train/train.py on --rec-train in --np Horovod processes beside "
                             "the model alone in as many processes: the data pipeline's and "
                             "communication's cost); prints each ratio, always between the same "
                             "dtypes")
    parser.add_argument('--classes', type=positive_int, default=1000)
    parser.add_argument('--rec-train', help='RecordIO training data (--compare trainer)')
    parser.add_argument('--rec-val', help='RecordIO validation data (--compare trainer)')
    parser.add_argument('--np', type=positive_int, default=2,
                        help='processes (--compare trainer)')
    parser.add_argument('--iterations', type=positive_int, default=100,
                        help='timed trainer steps per process (--compare trainer)')
    parser.add_argument('--backend', choices=BACKENDS,
                        help='inference path of this project (and of GluonCV with --compare '
                             'gluoncv): onednn (fusion, BatchNorm folded; what evaluate.py uses '
                             'on the CPU; the default), fp32 (hybridized), int8 (calibrated on '
                             'random images: speed only), bf16 (timm runs under '
                             'torch.autocast(bfloat16) beside it)')
    parser.add_argument('--amp', action='store_true',
                        help='train in mixed precision (bfloat16 on the CPU, as train.py --amp; '
                             'timm beside it under torch.autocast(bfloat16))')
    parser.add_argument('--rounds', type=positive_int, default=1,
                        help='measure every implementation this many times, in turn, and report '
                             "each one's median (within a round the steps of all of them "
                             'alternate already)')
    parser.add_argument('--no-peak', action='store_true',
                        help='skip measuring the convolution peak')
    parser.add_argument('--peer-python', default=os.environ.get(
        'GLUON_RESNEST_PEERS', os.path.join('.bench-venv', 'bin', 'python')),
                        help="the peers' environment for timm (default .bench-venv, made by "
                             "make bench-env; or $GLUON_RESNEST_PEERS)")
    args = parser.parse_args(argv)
    if args.size is None:
        args.size = get_model_info(args.model).eval_crop
    modes = ['inference', 'training'] if args.mode == 'both' else [args.mode]
    _check_dtypes(parser, args, modes)
    if any(c.startswith('timm') for c in args.compare) and args.model not in TIMM_NAMES:
        parser.error('timm has no %s; --compare timm works for %s'
                     % (args.model, ', '.join(sorted(TIMM_NAMES))))
    if 'gluoncv' in args.compare:
        from gluoncv.model_zoo import get_model_list
        theirs = set(get_model_list())
        if args.model not in theirs:
            parser.error('GluonCV has no %s; --compare gluoncv works for %s' % (
                args.model, ', '.join(sorted(theirs & set(list_models())))))
    if 'trainer' in args.compare and not (args.rec_train and args.rec_val):
        parser.error('--compare trainer needs --rec-train and --rec-val (RecordIO files with '
                     'labels below --classes)')
    if 'bfloat16' in {dtype_of(args, mode) for mode in modes}:
        try:
            require_bfloat16_cpu()
        except ValueError as err:
            parser.error(str(err))
    impls = ['gluon_resnest'] + args.compare
    # the convolution peak of each dtype measured (int8 has none), before AMP rewires MXNet
    peaks = {} if args.no_peak else {dtype: conv_peak_gmacs(dtype) for dtype in sorted(
        {dtype_of(args, mode) for mode in modes} - {'int8'})}
    for dtype, peak in peaks.items():
        print(json.dumps(dict(conv_peak_gmacs=round(peak, 1), dtype=dtype)), flush=True)
    # one network for the FLOP counts: at the inference crop (reported) and per mode's size
    counted = build('gluon_resnest', args.model, 'inference', 0, 0.0, args.classes)
    gflops = round(count_flops(counted, (1, 3, args.size, args.size)) / 1e9, 3)
    macs = {size: count_flops(counted, (1, 3, size, size)) for size in (args.size,
                                                                       args.train_size)}
    if args.amp:
        from mxnet.contrib import amp
        amp.init(target_dtype='bfloat16')  # before any network of the timed ones is traced
    for mode in modes:
        try:
            rounds = [measure(impls, args, mode) for _ in range(args.rounds)]
        except (FileNotFoundError, RuntimeError, ValueError) as err:
            raise SystemExit('error: %s' % err)
        results = {impl: _median_over_rounds([r[impl] for r in rounds]) for impl in rounds[0]}
        results['gluon_resnest']['gflops'] = gflops
        for records in results.values():
            for record in records if isinstance(records, list) else [records]:
                _add_peak_fraction(record, macs[record['size']], peaks.get(record['dtype']))
                print(json.dumps(record), flush=True)
        for impl in args.compare:
            if impl in results and impl != 'trainer':  # the trainer's ratio is in its record
                ratio = dict(speedup=round(results['gluon_resnest']['img_per_s'] /
                                           results[impl]['img_per_s'], 2),
                             dtype=dtype_of(args, mode))
                if 'ours_onnx_img_per_s' in results[impl]:  # both files in one ONNX Runtime
                    ratio['onnx_speedup'] = round(results[impl]['ours_onnx_img_per_s'] /
                                                  results[impl]['img_per_s'], 2)
                if mode == 'inference':
                    ratio['backend'] = args.backend
                print(json.dumps(dict(model=args.model, mode=mode, compare=impl, **ratio)),
                      flush=True)


def _add_peak_fraction(record, macs, peak):
    """The fraction of the measured convolution peak of the record's dtype that its img/s
    reaches (a training step counts as three passes: forward and two backward). Left out where
    the peak was not measured, or where the figure exceeds it: then the peak was no bound."""
    if not peak:
        return
    work = macs * (3 if record['mode'] == 'training' else 1) * record['img_per_s'] / 1e9
    if work <= peak:
        record['fraction_of_conv_peak'] = round(work / peak, 3)


def _check_dtypes(parser, args, modes):
    """--backend is the inference path and --amp the training precision; every comparison must
    be able to run in this project's dtype of each mode it times."""
    if args.backend is not None and 'inference' not in modes:
        parser.error('--backend chooses the inference path; training runs float32, or '
                     'bfloat16 with --amp')
    if args.amp and modes != ['training']:
        parser.error('--amp is mixed-precision training: use it with --mode training (for '
                     'bfloat16 inference: --backend bf16)')
    args.backend = args.backend or 'onednn'
    for impl in args.compare:
        for mode in modes:
            skipped = INFERENCE_ONLY if mode == 'training' else TRAINING_ONLY
            dtype = dtype_of(args, mode)
            if impl not in skipped and dtype not in COMPARISON_DTYPES[impl]:
                parser.error('--compare %s runs in %s, not in %s (%s %s): compare like with '
                             'like' % (impl, ' or '.join(COMPARISON_DTYPES[impl]), dtype, mode,
                                       '--backend ' + args.backend if mode == 'inference'
                                       else 'with' + ('' if args.amp else 'out') + ' --amp'))


if __name__ == '__main__':
    main()
