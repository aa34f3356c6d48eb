"""Side-by-side speed measurements of a zoo model against what a user would pick instead
(GluonCV's model, its own ONNX export in ONNX Runtime, timm on PyTorch or in ONNX Runtime, the
trainer on real data), every implementation in the same dtype and its steps alternating in one
timing loop; ``eval/benchmark.py`` is its command line."""
import contextlib
import os
import statistics
import tempfile
from dataclasses import dataclass, field

import mxnet as mx

from ..deploy import export_onnx, optimize_for_cpu
from ..runtime import require_bfloat16_cpu
from ..zoo.registry import get_model, get_model_info, list_models
from .benchmark import (INFERENCE_BATCH, TRAINING_BATCH, TRAINING_SIZE, PeerProcess,
                        conv_peak_gmacs, inference_step, onnxruntime_step, peak_rss_mb,
                        time_model_alone, time_trainer, training_step)
from .flops import count_flops, count_params
from .peer_benchmark import median_rates

__all__ = ['BenchmarkSettings', 'COMPARISONS', 'TIMM_NAMES', 'check_settings', 'run_benchmark',
           'build', 'dtype_of', 'add_peak_fraction']

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




@dataclass
class BenchmarkSettings:
    """What one benchmark run measures (the flags of ``eval/benchmark.py``)."""
    model: str = 'resnest50'
    mode: str = 'both'                  # inference, training or both
    batch_size: int = INFERENCE_BATCH
    size: int = None                    # inference crop; None: the model's eval crop
    train_batch_size: int = TRAINING_BATCH
    train_size: int = TRAINING_SIZE
    repeats: int = 10
    train_repeats: int = 5
    dropblock_prob: float = 0.1
    compare: list = field(default_factory=list)
    classes: int = 1000
    rec_train: str = None
    rec_val: str = None
    np: int = 2
    iterations: int = 100
    backend: str = None                 # inference path; None: onednn
    amp: bool = False
    rounds: int = 1
    no_peak: bool = False
    peer_python: str = None

    @property
    def modes(self):
        return ['inference', 'training'] if self.mode == 'both' else [self.mode]


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


def median_over_rounds(records):
    """One record from the same measurement's records of several rounds: the median of each
    rate, with the rounds' values beside it."""
    if len(records) == 1:
        return records[0]
    if isinstance(records[0], list):  # the trainer's pair: the model alone, then the trainer
        alone, trainer = [median_over_rounds(list(pair)) for pair in zip(*records)]
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


def add_peak_fraction(record, macs, peak):
    """The fraction of the measured convolution peak of the record's dtype that its img/s
    reaches (a training step counts as three passes: forward and two backward). Left out where
    the peak was not measured, or where the figure exceeds it: then the peak was no bound."""
    if not peak:
        return
    work = macs * (3 if record['mode'] == 'training' else 1) * record['img_per_s'] / 1e9
    if work <= peak:
        record['fraction_of_conv_peak'] = round(work / peak, 3)


def check_settings(settings):
    """ValueError naming what cannot be measured as asked (checked before anything is built):
    --backend outside inference, --amp outside training, a comparison that cannot run in this
    project's dtype of a mode it times, a model timm or GluonCV lacks, the trainer without data,
    bfloat16 on a CPU without it. Fills the defaults (size, backend)."""
    modes = settings.modes
    if settings.size is None:
        settings.size = get_model_info(settings.model).eval_crop
    if settings.backend is not None and 'inference' not in modes:
        raise ValueError('--backend chooses the inference path; training runs float32, or '
                         'bfloat16 with --amp')
    if settings.amp and modes != ['training']:
        raise ValueError('--amp is mixed-precision training: use it with --mode training (for '
                         'bfloat16 inference: --backend bf16)')
    settings.backend = settings.backend or 'onednn'
    for impl in settings.compare:
        for mode in modes:
            skipped = INFERENCE_ONLY if mode == 'training' else TRAINING_ONLY
            dtype = dtype_of(settings, mode)
            if impl not in skipped and dtype not in COMPARISON_DTYPES[impl]:
                raise ValueError(
                    '--compare %s runs in %s, not in %s (%s %s): compare like with like'
                    % (impl, ' or '.join(COMPARISON_DTYPES[impl]), dtype, mode,
                       '--backend ' + settings.backend if mode == 'inference'
                       else 'with' + ('' if settings.amp else 'out') + ' --amp'))
    if any(c.startswith('timm') for c in settings.compare) and settings.model not in TIMM_NAMES:
        raise ValueError('timm has no %s; --compare timm works for %s'
                         % (settings.model, ', '.join(sorted(TIMM_NAMES))))
    if 'gluoncv' in settings.compare:
        from gluoncv.model_zoo import get_model_list
        theirs = set(get_model_list())
        if settings.model not in theirs:
            raise ValueError('GluonCV has no %s; --compare gluoncv works for %s' % (
                settings.model, ', '.join(sorted(theirs & set(list_models())))))
    if 'trainer' in settings.compare and not (settings.rec_train and settings.rec_val):
        raise ValueError('--compare trainer needs --rec-train and --rec-val (RecordIO files '
                         'with labels below --classes)')
    if 'bfloat16' in {dtype_of(settings, mode) for mode in modes}:
        require_bfloat16_cpu()
    return settings


def run_benchmark(settings, emit):
    """Measure what ``settings`` (checked by :func:`check_settings`) asks, calling ``emit`` with
    each record as it is ready: the convolution peak of each dtype measured, then per mode every
    implementation's record (img/s, the fraction of the peak, ...) and each comparison's ratio.
    FileNotFoundError (no peers' environment) and RuntimeError (a peer's own error) pass on."""
    modes = settings.modes
    impls = ['gluon_resnest'] + list(settings.compare)
    # the convolution peak of each dtype measured (int8 has none), before AMP rewires MXNet
    peaks = {} if settings.no_peak else {dtype: conv_peak_gmacs(dtype) for dtype in sorted(
        {dtype_of(settings, mode) for mode in modes} - {'int8'})}
    for dtype, peak in peaks.items():
        emit(dict(conv_peak_gmacs=round(peak, 1), dtype=dtype))
    # one network for the FLOP counts: at the inference crop (reported) and per mode's size
    counted = build('gluon_resnest', settings.model, 'inference', 0, 0.0, settings.classes)
    gflops = round(count_flops(counted, (1, 3, settings.size, settings.size)) / 1e9, 3)
    macs = {size: count_flops(counted, (1, 3, size, size)) for size in (settings.size,
                                                                       settings.train_size)}
    if settings.amp:
        from mxnet.contrib import amp
        amp.init(target_dtype='bfloat16')  # before any network of the timed ones is traced
    for mode in modes:
        rounds = [measure(impls, settings, mode) for _ in range(settings.rounds)]
        results = {impl: median_over_rounds([r[impl] for r in rounds]) for impl in rounds[0]}
        results['gluon_resnest']['gflops'] = gflops
        for records in results.values():
            for record in records if isinstance(records, list) else [records]:
                add_peak_fraction(record, macs[record['size']], peaks.get(record['dtype']))
                emit(record)
        for impl in settings.compare:
            if impl in results and impl != 'trainer':  # the trainer's ratio is in its record
                ratio = dict(speedup=round(results['gluon_resnest']['img_per_s'] /
                                           results[impl]['img_per_s'], 2),
                             dtype=dtype_of(settings, mode))
                if 'ours_onnx_img_per_s' in results[impl]:  # both files in one ONNX Runtime
                    ratio['onnx_speedup'] = round(results[impl]['ours_onnx_img_per_s'] /
                                                  results[impl]['img_per_s'], 2)
                if mode == 'inference':
                    ratio['backend'] = settings.backend
                emit(dict(model=settings.model, mode=mode, compare=impl, **ratio))
