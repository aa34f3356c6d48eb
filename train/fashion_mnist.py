"""`resnest-fashion-mnist` from a clone (experiments/main_job.py)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

from experiments.main_job import main  # noqa: E402

if __name__ == '__main__':
    main()
