import warnings

import mxnet as mx
import numpy as np
import pytest

from helpers import colored_images

warnings.filterwarnings('ignore', category=UserWarning)


@pytest.fixture(autouse=True)
def _seed():
    mx.random.seed(0)
    np.random.seed(0)


@pytest.fixture(scope='session')
def tiny_rec(tmp_path_factory):
    """48 images 32x32 whose class (0..3) is their dominant color channel pattern."""
    from gluon_resnest.classification.data import write_records
    folder = tmp_path_factory.mktemp('rec')
    images, labels = colored_images(48, 4, 32)
    train_rec = write_records(str(folder / 'train'), images, labels)
    val_rec = write_records(str(folder / 'val'), images[:20], labels[:20])
    return train_rec, val_rec
