"""Train a ResNeSt on RecordIO data with the paper's recipe, on one process or many:

    python train/train.py --model resnest50 --rec-train train.rec --rec-val val.rec
    horovodrun -np 8 -H localhost:8 python train/train.py --model resnest50 ...
"""
from ..classification.task import ClassificationTask
from ..engine.cli import training_command


def main(argv=None):
    training_command(ClassificationTask(), __doc__, argv)


if __name__ == '__main__':
    main()
