"""`resnest-compare-models` from a clone (experiments/compare_models.py)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

from experiments.compare_models import main  # noqa: E402

if __name__ == '__main__':
    main()
