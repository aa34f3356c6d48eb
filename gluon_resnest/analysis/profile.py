"""Where the time goes: per-operator totals from MXNet's profiler for any step function."""
import json
import os
import tempfile

import mxnet as mx

__all__ = ['profile_operators']


def profile_operators(step, iterations=3, warmup=1):
    """Run ``step`` ``warmup`` times unprofiled, then ``iterations`` times under MXNet's profiler.

    Returns ``[(operator, calls per iteration, ms per iteration), ...]``, slowest first. For one
    line per operator set ``MXNET_EXEC_BULK_EXEC_INFERENCE=0`` and ``MXNET_EXEC_BULK_EXEC_TRAIN=0``
    before the graph is built; otherwise bulked segments are timed as a whole.
    """
    if iterations < 1:
        raise ValueError('iterations must be >= 1, got %r' % (iterations,))
    for _ in range(warmup):
        step()
    # MXNet deletes and recreates the trace file it is given (and appends to it at exit), so it
    # gets a file in a private folder that is removed afterwards: never an existing path such as
    # /dev/null, which a root process would replace by a regular file
    with tempfile.TemporaryDirectory(prefix='mxnet-profile-') as folder:
        mx.profiler.set_config(profile_symbolic=True, profile_imperative=True,
                               aggregate_stats=True, filename=os.path.join(folder, 'trace.json'))
        mx.profiler.set_state('run')
        try:
            for _ in range(iterations):
                step()
            mx.nd.waitall()
        finally:
            mx.profiler.set_state('stop')
        stats = json.loads(mx.profiler.dumps(format='json', reset=True))['Time'].get('operator',
                                                                                     {})
    # WaitForVar is the engine waiting on results, not an operator
    rows = [(name, s['Count'] / iterations, s['Total'] / iterations) for name, s in stats.items()
            if name != 'WaitForVar']
    return sorted(rows, key=lambda row: -row[2])
