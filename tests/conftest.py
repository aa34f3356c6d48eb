import warnings

import mxnet as mx
import numpy as np
import pytest

warnings.filterwarnings('ignore', category=UserWarning)


@pytest.fixture(autouse=True)
def _seed():
    mx.random.seed(0)
    np.random.seed(0)
