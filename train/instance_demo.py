"""`resnest-instance-demo` from a clone (experiments.instance_scenes_demo.py)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..'))

from experiments.instance_scenes_demo import main  # noqa: E402

if __name__ == '__main__':
    main()
