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
import json
import os
import statistics
import tempfile

import mxnet as mx

from .. import get_model, get_model_info, list_models
from ..analysis import (INFERENCE_BATCH, TRAINING_BATCH, TRAINING_SIZE,
                        count_flops, count_params, peak_rss_mb, time_inference,
                        time_training)
from ..analysis.benchmark import (conv_peak_gmacs, time_model_alone, time_onnxruntime,
                                  time_peer, time_trainer, time_trainings)
from ..deploy import BACKENDS, export_onnx, optimize_for_cpu
from ..argtypes import positive_int


COMPARISONS = ('gluoncv', 'onnxruntime', 'no-dropblock', 'timm', 'timm-onnxruntime',
               'timm-onnxruntime-int8', 'trainer')
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
    zoo has it built in and tied to ``input_size``)."""
    if impl == 'gluoncv':
        from gluoncv.model_zoo import get_model as gluoncv_model
        net = gluoncv_model(name, input_size=size, classes=classes)
    else:
        net = get_model(name, classes=classes,
                        dropblock_prob=dropblock_prob if mode == 'training' else 0.0)
    net.initialize(mx.init.MSRAPrelu())
    return net


def measure(impl, args, mode):
    if 'onnxruntime' in impl and mode != 'inference':
        return None  # ONNX Runtime's CPU provider does not train
    if impl in ('no-dropblock', 'trainer') and mode != 'training':
        return None  # DropBlock is an identity in inference; the trainer trains
    size = args.size if mode == 'inference' else args.train_size
    if impl == 'trainer':
        # the trainer on real data beside what its ranks' computation alone allows, both in
        # args.np processes sharing the cores
        common = (args.model, args.np, args.train_batch_size, size, args.classes,
                  args.dropblock_prob)
        alone = time_model_alone(*common, repeats=max(args.train_repeats, 10))
        trainer = time_trainer(args.model, args.rec_train, args.rec_val, args.np,
                               *common[2:], iterations=args.iterations)
        return [dict(model=args.model, impl=impl, mode=mode, batch_size=args.train_batch_size,
                     size=size, **record) for record in (
            dict(alone, what='model alone, fixed batch'),
            dict(trainer, what='train/train.py on %s' % args.rec_train,
                 of_model_alone=round(trainer['img_per_s'] / alone['img_per_s'], 3)))]
    if impl.startswith('timm'):
        batch = args.batch_size if mode == 'inference' else args.train_batch_size
        with tempfile.TemporaryDirectory() as tmp:
            ours = None
            if impl == 'timm-onnxruntime':  # our export in the peers' ONNX Runtime beside timm's
                ours = export_onnx(build('gluon_resnest', args.model, mode, size, 0.0,
                                         args.classes), os.path.join(tmp, 'model.onnx'),
                                   (1, 3, size, size))
            result = time_peer(args.peer_python, TIMM_NAMES[args.model], impl, mode, batch,
                               size, args.repeats if mode == 'inference' else
                               args.train_repeats, also_onnx=ours)
        if 'also_onnx_img_per_s' in result:
            result['ours_onnx_img_per_s'] = result.pop('also_onnx_img_per_s')
        return dict(model=args.model, impl=impl, mode=mode, batch_size=batch, size=size,
                    **{k: round(v, 3) if isinstance(v, float) else v
                       for k, v in result.items()})
    if impl == 'no-dropblock':  # both networks in this process, steps alternating
        with_dropblock, net = [build('gluon_resnest', args.model, mode, size, prob, args.classes)
                               for prob in (args.dropblock_prob, 0.0)]
        paired, result = time_trainings([with_dropblock, net], args.train_batch_size, size,
                                        args.classes, repeats=args.train_repeats)
        result['with_dropblock_img_per_s'] = paired['img_per_s']
        batch = args.train_batch_size
    elif impl == 'onnxruntime':
        net = build('gluon_resnest', args.model, mode, size, args.dropblock_prob, args.classes)
        with tempfile.TemporaryDirectory() as tmp:
            path = export_onnx(net, os.path.join(tmp, 'model.onnx'), (1, 3, size, size))
            result = time_onnxruntime(path, args.batch_size, size, repeats=args.repeats)
        batch = args.batch_size
    else:
        net = build(impl, args.model, mode, size, args.dropblock_prob, args.classes)
        if mode == 'inference':
            shape = (args.batch_size, 3, size, size)
            params = count_params(net)
            # speed only: INT8 calibrated on random images (evaluate.py calibrates on data)
            calib = mx.nd.random.uniform(shape=shape) if args.backend == 'int8' else None
            net = optimize_for_cpu(net, args.backend, shape, calib)
            result = dict(time_inference(net, args.batch_size, size, repeats=args.repeats,
                                         hybridize=False), backend=args.backend)
            batch = args.batch_size
        else:
            result = time_training(net, args.train_batch_size, size, args.classes,
                                   repeats=args.train_repeats)
            batch = args.train_batch_size
    if mode != 'inference' or impl == 'onnxruntime':
        params = count_params(net)
    record = dict(model=args.model, impl=impl, mode=mode, batch_size=batch, size=size,
                  params=params, **{k: round(v, 3) if isinstance(v, float) else v
                                    for k, v in result.items()})
    if impl == 'gluon_resnest':
        record['gflops'] = round(count_flops(build(impl, args.model, 'inference', size, 0.0,
                                                   args.classes),
                                             (1, 3, args.size, args.size)) / 1e9, 3)
    record['peak_rss_mb'] = round(peak_rss_mb(), 1)
    record['omp_threads'] = os.environ.get('OMP_NUM_THREADS', 'mxnet default')
    return record


def _median_over_rounds(records):
    """One record from the same measurement's records of several rounds: the median of each
    rate, with the rounds' values beside it."""
    if records[0] is None or len(records) == 1:
        return records[0]
    if isinstance(records[0], list):  # the trainer's pair: the model alone, then the trainer
        alone, trainer = [_median_over_rounds(list(pair)) for pair in zip(*records)]
        trainer['of_model_alone'] = round(trainer['img_per_s'] / alone['img_per_s'], 3)
        return [alone, trainer]
    record = dict(records[0], rounds=len(records))
    for key in ('img_per_s', 'with_dropblock_img_per_s', 'ours_onnx_img_per_s'):
        if key in record:
            values = [r[key] for r in records]
            record[key], record[key + '_rounds'] = round(statistics.median(values), 3), values
    if 'median_ms' in record:  # the step time of the median rate, not of the first round
        record['median_ms'] = round(record['batch_size'] * 1e3 / record['img_per_s'], 3)
        record.pop('min_ms', None)
    return record


def main(argv=None):
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
                             "no-dropblock (training without DropBlock: its cost), timm "
                             "(timm's model on PyTorch), timm-onnxruntime (timm's ONNX "
                             "export, with ours beside it), timm-onnxruntime-int8 (timm's export "
                             "quantized by ONNX Runtime: static QDQ, per channel), trainer "
                             "(train/train.py on --rec-train in --np Horovod processes beside "
                             "the model alone in as many processes: the data pipeline's and "
                             "communication's cost); prints each ratio")
    parser.add_argument('--classes', type=positive_int, default=1000)
    parser.add_argument('--rec-train', help='RecordIO training data (--compare trainer)')
    parser.add_argument('--rec-val', help='RecordIO validation data (--compare trainer)')
    parser.add_argument('--np', type=positive_int, default=2,
                        help='processes (--compare trainer)')
    parser.add_argument('--iterations', type=positive_int, default=100,
                        help='timed trainer steps per process (--compare trainer)')
    parser.add_argument('--backend', default='onednn', choices=BACKENDS,
                        help='inference path of this project (and of GluonCV with --compare '
                             'gluoncv): onednn (fusion, BatchNorm folded; what evaluate.py uses '
                             'on the CPU), fp32 (hybridized), int8 (calibrated on random images: '
                             'speed only), bf16')
    parser.add_argument('--rounds', type=positive_int, default=1,
                        help='measure every implementation this many times, in turn, and report '
                             "each one's median: peers in other processes cannot alternate "
                             'step by step, so rounds give a slow spell of the machine to all')
    parser.add_argument('--no-peak', action='store_true',
                        help='skip measuring the convolution peak')
    parser.add_argument('--peer-python', default=os.environ.get(
        'GLUON_RESNEST_PEERS', os.path.join('.bench-venv', 'bin', 'python')),
                        help="the peers' environment for timm (default .bench-venv, made by "
                             "make bench-env; or $GLUON_RESNEST_PEERS)")
    args = parser.parse_args(argv)
    if args.size is None:
        args.size = get_model_info(args.model).eval_crop
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
    modes = ['inference', 'training'] if args.mode == 'both' else [args.mode]
    impls = ['gluon_resnest'] + args.compare
    peak = None if args.no_peak else conv_peak_gmacs()
    if peak:
        print(json.dumps(dict(conv_peak_gmacs=round(peak, 1))), flush=True)
    for mode in modes:
        try:
            rounds = [{impl: measure(impl, args, mode) for impl in impls}
                      for _ in range(args.rounds)]
        except (FileNotFoundError, RuntimeError, ValueError) as err:
            raise SystemExit('error: %s' % err)
        results = {impl: _median_over_rounds([r[impl] for r in rounds]) for impl in impls}
        results = {impl: record for impl, record in results.items() if record is not None}
        macs = count_flops(build('gluon_resnest', args.model, 'inference', 0, 0.0),
                           (1, 3) + (results['gluon_resnest']['size'],) * 2)
        for records in results.values():
            for record in records if isinstance(records, list) else [records]:
                if peak:  # a training step is about three passes (forward, two backward)
                    work = macs * (3 if mode == 'training' else 1) * record['img_per_s'] / 1e9
                    record['fraction_of_conv_peak'] = round(work / peak, 3)
                print(json.dumps(record), flush=True)
        for impl in args.compare:
            if impl in results and impl != 'trainer':  # the trainer's ratio is in its record
                # DropBlock's cost: from its own alternating pair, not two separate timings
                ours = results[impl].get('with_dropblock_img_per_s',
                                         results['gluon_resnest']['img_per_s'])
                ratio = dict(speedup=round(ours / results[impl]['img_per_s'], 2))
                if 'ours_onnx_img_per_s' in results[impl]:  # both files in one ONNX Runtime
                    ratio['onnx_speedup'] = round(results[impl]['ours_onnx_img_per_s'] /
                                                  results[impl]['img_per_s'], 2)
                if mode == 'inference':
                    ratio['backend'] = args.backend
                print(json.dumps(dict(model=args.model, mode=mode, compare=impl, **ratio)),
                      flush=True)

if __name__ == '__main__':
    main()
