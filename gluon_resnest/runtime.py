"""Process set-up that must happen before MXNet is loaded (this module does not import it)."""
import os
import sys

__all__ = ['launcher_env', 'cpu_threads_per_process', 'configure_cpu_threads',
           'configure_horovod_cycle', 'cpu_supports_bfloat16', 'require_bfloat16_cpu',
           'BF16_CPU_FLAGS', 'quiet_native_logs', 'NATIVE_NOISE', 'interrupt',
           'interrupt_exit_code']

LOCAL_SIZE_VARS = ('HOROVOD_LOCAL_SIZE', 'OMPI_COMM_WORLD_LOCAL_SIZE', 'MPI_LOCALNRANKS')


def launcher_env(*names):
    """The first of the integer environment variables ``names`` that is set (horovodrun, mpirun),
    else None."""
    for name in names:
        if name in os.environ:
            return int(os.environ[name])
    return None


def cpu_threads_per_process(local_processes=None):
    """The cores this process may use, shared evenly among ``local_processes`` (default: the
    launcher's local processes, else 1)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
    local = local_processes or launcher_env(*LOCAL_SIZE_VARS) or 1
    return max(1, (cores or 1) // local)


def configure_cpu_threads():
    """Give MXNet's operators every core of this process unless ``OMP_NUM_THREADS`` says
    otherwise.

    Without the variable MXNet 1.9 runs its operators on half the visible cores, assuming they
    are hyper-threads: on a 2-core machine without SMT a convolution then runs on one core at
    half the machine's speed. Only effective before ``mxnet`` is first imported; returns whether
    it set the variable.
    """
    if 'OMP_NUM_THREADS' in os.environ or 'mxnet' in sys.modules:
        return False
    os.environ['OMP_NUM_THREADS'] = str(cpu_threads_per_process())
    return True


# Horovod's background thread wakes every HOROVOD_CYCLE_TIME ms (default 1) to negotiate
# collectives. On CPU-only ranks it competes with the operators for the same cores, and a 10 ms
# wait is small next to a CPU training step (README, design notes: the measured gain). GPU ranks
# keep Horovod's default.
CPU_CYCLE_TIME_MS = '10'


def configure_horovod_cycle(num_gpus, environ=None):
    """Set HOROVOD_CYCLE_TIME for CPU-only ranks unless it is set; call before ``hvd.init()``.
    Returns the value in effect (None: Horovod's default)."""
    environ = os.environ if environ is None else environ
    if num_gpus == 0:
        environ.setdefault('HOROVOD_CYCLE_TIME', CPU_CYCLE_TIME_MS)
    return environ.get('HOROVOD_CYCLE_TIME')


# oneDNN (MXNet 1.9) runs bfloat16 convolutions on AVX-512 cores (natively with AVX512-BF16);
# elsewhere it cannot build the primitives ("could not create a primitive descriptor")
BF16_CPU_FLAGS = ('avx512f', 'avx512bw')
# oneDNN's instruction-set cap (ONEDNN_MAX_CPU_ISA, or its older name DNNL_MAX_CPU_ISA): below
# AVX-512 it builds no bfloat16 primitive, as on a CPU without AVX-512
ISA_VARIABLES = ('ONEDNN_MAX_CPU_ISA', 'DNNL_MAX_CPU_ISA')
ISAS_WITHOUT_AVX512 = ('sse41', 'avx', 'avx2', 'avx2_vnni', 'avx_vnni')


def cpu_supports_bfloat16(cpuinfo='/proc/cpuinfo', environ=os.environ):
    """Whether this CPU has the AVX-512 instructions MXNet's bfloat16 kernels need and oneDNN
    may use them (True where the flags cannot be read, e.g. not Linux: MXNet will say so
    itself)."""
    if any(environ.get(name, '').lower() in ISAS_WITHOUT_AVX512 for name in ISA_VARIABLES):
        return False
    try:
        with open(cpuinfo) as f:
            flags = next((line.split(':', 1)[1].split() for line in f
                          if line.startswith('flags')), None)
    except OSError:
        return True
    return flags is None or all(flag in flags for flag in BF16_CPU_FLAGS)


def require_bfloat16_cpu():
    """Raise ValueError unless this CPU can run MXNet's bfloat16 kernels."""
    if not cpu_supports_bfloat16():
        raise ValueError('bfloat16 on the CPU needs AVX-512 (%s), which this CPU lacks; use '
                         'fp32, onednn or int8' % ', '.join(BF16_CPU_FLAGS))


# lines MXNet's C++ code logs on every start or traced graph that say nothing to a user:
# oneDNN's note for average pooling without padding in training (ResNet-D's shortcut pooling),
# the oneDNN subgraph backend's and the engine's start-up notices
NATIVE_NOISE = (b'MKLDNN Pooling: training with prop_kind',
                b'Subgraph backend MKLDNN is activated', b'MXNet start using engine')
_filtered = []


def quiet_native_logs(noise=NATIVE_NOISE):
    """Drop the lines of ``noise`` from this process's standard error, MXNet's C++ logging
    included, which Python cannot switch off: file descriptor 2 becomes a pipe that a thread
    copies to the real standard error, line by line, leaving out lines that contain one of
    ``noise``. Text without a line end (a progress bar's redraw) passes at once unless it may be
    the start of such a line. Child processes inherit the filter. Idempotent; returns whether it
    is on. ``GLUON_RESNEST_RAW_STDERR=1`` turns it off."""
    import atexit
    import threading
    if _filtered or os.environ.get('GLUON_RESNEST_RAW_STDERR') == '1':
        return bool(_filtered)
    try:
        sys.stderr.flush()
        original = os.dup(2)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
    except OSError:  # no file descriptor 2 to route
        return False

    def pump():
        pending = b''
        while True:
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            *lines, pending = (pending + chunk).split(b'\n')
            out = b''.join(line + b'\n' for line in lines
                           if not any(n in line for n in noise))
            if pending and not pending.startswith(b'['):  # not a C++ log line's start
                out, pending = out + pending, b''
            if out:
                os.write(original, out)
        if pending:
            os.write(original, pending)

    thread = threading.Thread(target=pump, name='stderr-filter', daemon=True)
    thread.start()

    def restore():  # at exit: everything written so far reaches the real standard error
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(original, 2)  # closes the pipe's last write end in this process
        thread.join(timeout=0.5)
    atexit.register(restore)
    _filtered.append(thread)
    return True


_interrupts = []  # the signals (SIGINT, SIGTERM) that interrupted this process, in order


def interrupt(signum):
    """End the running command as a Ctrl-C would (KeyboardInterrupt), remembering ``signum``
    for :func:`interrupt_exit_code`."""
    _interrupts.append(signum)
    raise KeyboardInterrupt


def interrupt_exit_code():
    """The shell's exit code for the last interruption: 128 + the signal (130 for Ctrl-C, 143
    for SIGTERM)."""
    import signal
    return 128 + int(_interrupts[-1] if _interrupts else signal.SIGINT)
