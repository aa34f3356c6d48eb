"""Horovod when it is there and launched; a single process otherwise, with the same interface."""
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import threading

import mxnet as mx

from ..runtime import configure_horovod_cycle, cpu_threads_per_process, interrupt, launcher_env

__all__ = ['Comm', 'device', 'horovodrun', 'rank_env', 'run_ranks',
           'with_package_path', 'RankOutput']


def horovodrun():
    """Path of the horovodrun launcher: beside this Python (a virtual env's bin/, which need
    not be on PATH), else on PATH; None when Horovod is not installed."""
    local = os.path.join(os.path.dirname(sys.executable), 'horovodrun')
    return local if os.access(local, os.X_OK) else shutil.which('horovodrun')


def rank_env(processes, naive_engine=False):
    """The environment for ``processes`` local ranks: the cores shared among them (explicit:
    this process's own thread count must not pass to every rank) and, with ``naive_engine``,
    MXNet's naive engine (bitwise reproducible runs; unless the caller's environment names an
    engine)."""
    env = dict(os.environ, OMP_NUM_THREADS=str(cpu_threads_per_process(processes)))
    if naive_engine:
        env.setdefault('MXNET_ENGINE_TYPE', 'NaiveEngine')
    return env


def with_package_path(env):
    """``env`` (None: this process's) with this package's folder first on PYTHONPATH, so the
    ranks import this copy of gluon_resnest from any working directory."""
    env = dict(os.environ if env is None else env)
    parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env['PYTHONPATH'] = os.pathsep.join([parent] + [p for p in env.get('PYTHONPATH', '').split(
        os.pathsep) if p and p != parent])
    return env


class RankOutput(object):
    """Renders what horovodrun prints for a terminal: horovodrun prefixes every chunk with
    ``[rank]<stream>:`` and drops tqdm's carriage returns, so a progress bar becomes hundreds of
    lines. Shown: rank 0's lines, its progress bar as one updating line; dropped: the other
    ranks' copies and MXNet's per-start notices (oneDNN, engine). Everything goes to ``log``
    unchanged."""

    MARK = re.compile(r'\[(\d+)\]<(stdout|stderr)>:')
    NOISE = ('MKLDNN Pooling: training with prop_kind', 'MXNet start using engine',
             'UserWarning', 'v.initialize(', 'warnings.warn(', 'out = self.forward(',
             'libpng error')
    # an MXNet log line that landed in the middle of a progress-bar chunk
    LOG_IN_BAR = re.compile(r'\[\d\d:\d\d:\d\d\] \S+\.cc:\d+: .*')

    # horovodrun's own account of a failed rank: the rank's error line says it already
    LAUNCHER = re.compile(r'^(Process \d+ exit with status code|Terminating remaining workers'
                          r'|Terminated$)')

    def __init__(self, terminal=None, log=None):
        self.terminal = terminal or sys.stdout
        self.log = log
        self.pending = ''
        self.bar_open = False
        self.errors = []             # 'error: ...' lines shown (from any rank, each once)
        self.launcher_failed = False  # horovodrun's traceback began: drop its lines

    def feed(self, text):
        if self.log is not None:
            self.log.write(text)
        self.pending += text
        marks = list(self.MARK.finditer(self.pending))
        # the last chunk may still be growing: keep it unless it ends a line
        for mark, after in zip(marks, marks[1:] + [None]):
            end = after.start() if after else len(self.pending)
            if after is None and not self.pending.endswith('\n'):
                self.pending = self.pending[mark.start():]
                return
            # horovodrun prefixes each line of a rank: what follows its end is horovodrun's own
            own, _, rest = self.pending[mark.end():end].partition('\n')
            self._chunk(int(mark.group(1)), own)
            self._launcher_lines(rest)
        if marks:
            self.pending = ''
        elif '\n' in self.pending:  # horovodrun's own lines, unprefixed
            lines, self.pending = self.pending.rsplit('\n', 1)
            self._launcher_lines(lines)

    def _launcher_lines(self, text):
        for line in text.split('\n'):
            # a failed rank ends horovodrun with a traceback of its own: noise after the rank's
            # message (everything stays in the log)
            self.launcher_failed |= line.startswith('Traceback (most recent call last)')
            if not self.launcher_failed:
                self._line(line)

    def _chunk(self, rank, chunk):
        if rank != 0:  # another rank's copy, unless it is the error that stopped it
            if chunk.startswith('error:'):
                self._line(chunk)  # shown once, whichever rank says it first
            return
        for piece in chunk.replace('\r', '\n').split('\n'):
            if '%|' in piece and '/' in piece:  # a tqdm bar: redraw in place
                self.terminal.write('\r' + self.LOG_IN_BAR.sub('', piece).rstrip())
                self.terminal.flush()
                self.bar_open = True
            else:
                self._line(piece)

    def _line(self, line):
        line = line.rstrip()
        if not line or any(noise in line for noise in self.NOISE) or self.LAUNCHER.match(line):
            return
        if line.startswith('error:'):
            if line in self.errors:
                return
            self.errors.append(line)
        if self.bar_open:
            self.terminal.write('\n')
            self.bar_open = False
        self.terminal.write(line + '\n')
        self.terminal.flush()

    def close(self):
        if self.pending:
            self.feed('\n')
        if self.bar_open:
            self.terminal.write('\n')
            self.bar_open = False


def run_ranks(command, env, log_path, processes):
    """Run ``command`` (e.g. from :func:`gluon_resnest.launch.rank_command`); with several processes, render their
    output with :class:`RankOutput` and keep it all in ``log_path``. A failure prints the log's
    last lines. Raises CalledProcessError like ``subprocess.run(check=True)``."""
    env = with_package_path(env)
    if processes == 1:
        proc = subprocess.Popen(command, env=env)
        with _stopped_with_this_process(proc):
            code = proc.wait()
        if code:
            raise subprocess.CalledProcessError(code, command)
        return proc
    os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
    with open(log_path, 'a') as log:
        view = RankOutput(log=log)
        proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        with _stopped_with_this_process(proc):
            for data in iter(lambda: proc.stdout.read1(65536), b''):
                view.feed(data.decode('utf-8', 'replace'))
            view.close()
            code = proc.wait()
    if code:
        if view.errors:  # the ranks said what went wrong
            sys.stderr.write('the ranks stopped (exit status %d); their output is in %s\n'
                             % (code, log_path))
        else:
            with open(log_path) as f:
                tail = f.read().splitlines()[-30:]
            sys.stderr.write('the ranks failed (exit status %d); last lines of %s:\n%s\n'
                             % (code, log_path, '\n'.join(tail)))
        raise subprocess.CalledProcessError(code, command)
    return proc


@contextlib.contextmanager
def _stopped_with_this_process(proc):
    """While ``proc`` (the training command, or horovodrun with its ranks) runs: a Ctrl-C lets
    it stop on its own (it got the same signal from the terminal) for up to 30 s, then kills
    it; a SIGTERM to this process (``kill``, ``timeout``, a job scheduler) is passed on to it
    and ends this process like a Ctrl-C (KeyboardInterrupt). Without that, the ranks would
    train on, orphaned, and race a resumed run for the same checkpoints."""
    forward = threading.current_thread() is threading.main_thread()
    if forward:
        def on_terminate(signum, frame):
            proc.send_signal(signal.SIGTERM)  # horovodrun's end makes Horovod stop the ranks
            interrupt(signum)
        previous = signal.signal(signal.SIGTERM, on_terminate)
    try:
        yield
    except KeyboardInterrupt:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        raise
    finally:
        if forward:
            signal.signal(signal.SIGTERM, previous)


def device(local_rank=0):
    """``mx.gpu(local_rank)`` when this machine has GPUs, else the CPU."""
    return mx.gpu(local_rank) if mx.context.num_gpus() > 0 else mx.cpu()


class Comm(object):
    """rank/size, exact sums across ranks, parameter broadcast and the distributed trainer.

    rank and size are read from the launcher's environment (horovodrun, mpirun) so that data
    loader workers can be forked *before* :meth:`start` initializes Horovod: a process forked
    after ``hvd.init()`` shares the parent's sockets and corrupts its collectives.
    """

    def __init__(self, use_horovod=True):
        self.hvd = None
        self.use_horovod = use_horovod
        rank = launcher_env('HOROVOD_RANK', 'OMPI_COMM_WORLD_RANK', 'PMI_RANK')
        self.rank = rank or 0
        self.size = launcher_env('HOROVOD_SIZE', 'OMPI_COMM_WORLD_SIZE', 'PMI_SIZE') or 1
        self.local_rank = launcher_env('HOROVOD_LOCAL_RANK', 'OMPI_COMM_WORLD_LOCAL_RANK') or 0

    def start(self):
        """Initialize Horovod (when launched by horovodrun/mpirun and installed)."""
        if self.hvd is not None or not self.use_horovod or self.size == 1:
            return self
        import horovod.mxnet as hvd  # a multi-process launch without horovod is an error
        configure_horovod_cycle(mx.context.num_gpus())
        hvd.init()
        if (hvd.rank(), hvd.size()) != (self.rank, self.size):
            raise RuntimeError('launcher says rank %d of %d, Horovod says %d of %d'
                               % (self.rank, self.size, hvd.rank(), hvd.size()))
        self.hvd, self.local_rank = hvd, hvd.local_rank()
        return self

    def sum(self, values, name):
        """Element-wise sum of a list of numbers over all ranks (float64, exact for counts)."""
        arr = mx.nd.array(values, dtype='float64')
        if self.hvd and self.size > 1:
            arr = self.hvd.allreduce(arr, average=False, name=name)
        return arr.asnumpy().tolist()

    def gather(self, obj, name='gather'):
        """Every rank's ``obj`` (any picklable value), as a list in rank order on every rank:
        what an evaluator needs whose results are not sums (e.g. detections per image)."""
        if self.hvd and self.size > 1:
            return self.hvd.allgather_object(obj, name=name)
        return [obj]

    def broadcast_parameters(self, net):
        if self.hvd and self.size > 1:
            self.hvd.broadcast_parameters(net.collect_params(), root_rank=0)

    def average_running_stats(self, net):
        """Average BatchNorm's running mean and variance over ranks (timm's ``--dist-bn
        reduce``). Each rank accumulates them from its own shard, so without this every rank
        validates a different model and rank 0's checkpoint is none of them."""
        if not (self.hvd and self.size > 1):
            return
        stats = [param.data() for _, param in sorted(net.collect_params().items())
                 if param.grad_req == 'null']
        if stats:  # one grouped collective: one wait under the naive engine, not one per array
            self.hvd.grouped_allreduce_(stats, average=True, name='running_stats')

    def broadcast_trainer_states(self, trainer):
        """Rank 0's optimizer states (momenta) to every rank, after a resume."""
        if not (self.hvd and self.size > 1):
            return
        for updater in trainer._updaters:
            for key in sorted(updater.states):
                state = updater.states[key]
                for i, arr in enumerate(state if isinstance(state, (list, tuple)) else [state]):
                    if isinstance(arr, mx.nd.NDArray):
                        self.hvd.broadcast_(arr, root_rank=0, name='state.%s.%d' % (key, i))

    def trainer(self, params, optimizer, optimizer_params):
        if self.hvd and self.size > 1:
            # all gradients in one grouped allreduce: under MXNet's naive engine (the main job's
            # default) every collective blocks until Horovod's next cycle, so one per array
            # would wait once per array
            return self.hvd.DistributedTrainer(params, optimizer, optimizer_params, num_groups=1)
        return mx.gluon.Trainer(params, optimizer, optimizer_params)
