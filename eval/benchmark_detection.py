"""`resnest-benchmark-detection` from a clone (gluon_resnest/commands/benchmark_detection)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

from gluon_resnest.commands.benchmark_detection import main  # noqa: E402

if __name__ == '__main__':
    main()
