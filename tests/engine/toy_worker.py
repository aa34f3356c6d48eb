"""Run by test_resume.py, on one process or under `horovodrun -np 2`: the toy task trained by
the engine with the config given as JSON on the command line (rank 0 prints its log lines).
``--legacy`` saves optimizer states as checkpoints did before their order was recorded (by the
parameters' global names) and stops after the first checkpoint, as a killed run."""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..'))

from gluon_resnest.engine import loop  # noqa: E402
from helpers import KilledAfterCheckpoint, killed_after_first_checkpoint  # noqa: E402
from toy_task import ToyConfig, ToyTask  # noqa: E402


def main(config, legacy=False):
    cfg = ToyConfig(**json.loads(config))
    if not legacy:
        return loop.train(ToyTask(), cfg, log=lambda line: print(line, flush=True))
    loop.trainer_parameters = lambda net: net.collect_params()
    loop.OPTIMIZER_ORDER = None
    try:
        with killed_after_first_checkpoint():
            loop.train(ToyTask(), cfg, log=lambda line: None)
    except KilledAfterCheckpoint:
        pass


if __name__ == '__main__':
    main(sys.argv[1], '--legacy' in sys.argv[2:])
