"""Fashion-MNIST (Xiao et al., 2017) from its raw idx files to RecordIO: a class-balanced,
seeded validation split held out of the training images (``val``), the rest for training
(``train``), and the test images (``test``), which only a final evaluation should read."""
import gzip
import json
import os
import shutil
import subprocess

import numpy as np

from gluon_resnest.classification.data import records_exist, write_records

__all__ = ['DEFAULT_SOURCE', 'CLASSES', 'ensure_source', 'read_idx', 'load_split',
           'build_fashion_mnist', 'validation_indices', 'VAL_FRACTION']

DEFAULT_SOURCE = '/usr/share/datasets/fashion-mnist'  # Debian's dataset-fashion-mnist
CLASSES = ('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker',
           'Bag', 'Ankle boot')
# 1/12 of each class of the 60,000 training images: 5,000 validation images, 500 per class
VAL_FRACTION = 1.0 / 12
SPLIT_SEED = 0
FILES = {'train': ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte'),
         'test': ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte')}


def _find(source, stem):
    for name in (stem + '.gz', stem):
        if os.path.isfile(os.path.join(source, name)):
            return os.path.join(source, name)
    return None


def ensure_source(source=DEFAULT_SOURCE, install=True):
    """The folder of the four idx files; installs Debian's package when they are missing from
    the default folder and ``install`` is allowed (root, apt-get available)."""
    stems = [s for pair in FILES.values() for s in pair]
    if all(_find(source, s) for s in stems):
        return source
    if install and source == DEFAULT_SOURCE and shutil.which('apt-get') and os.geteuid() == 0:
        # a fresh machine's package lists may be empty: update once if the first try fails
        for step in (['apt-get', 'install', '-y', '-qq', 'dataset-fashion-mnist'],
                     ['apt-get', 'update', '-qq'],
                     ['apt-get', 'install', '-y', '-qq', 'dataset-fashion-mnist']):
            if step[1] == 'update' and all(_find(source, s) for s in stems):
                break
            subprocess.run(step, check=False, stdout=subprocess.DEVNULL)
        if all(_find(source, s) for s in stems):
            return source
    missing = [s for s in stems if not _find(source, s)]
    raise FileNotFoundError(
        'Fashion-MNIST idx files missing from %s: %s. Install Debian\'s package '
        '(apt-get install dataset-fashion-mnist) or pass --source DIR with the raw files'
        % (source, ', '.join(missing)))


def read_idx(path):
    """An idx file (optionally gzipped) as a numpy array."""
    opener = gzip.open if path.endswith('.gz') else open
    with opener(path, 'rb') as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 8:
        raise ValueError('%s is not an idx file of unsigned bytes' % path)
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], 'big') for i in range(ndim))
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if array.size != int(np.prod(shape)):
        raise ValueError('%s is truncated: %d values for shape %s' % (path, array.size, shape))
    return array.reshape(shape)


def load_split(source, split):
    """(images N x 28 x 28 uint8, labels N) of split 'train' or 'test' from the idx files in
    ``source``."""
    images_stem, labels_stem = FILES[split]
    images = read_idx(_find(source, images_stem))
    labels = read_idx(_find(source, labels_stem))
    if len(images) != len(labels):
        raise ValueError('%s: %d images but %d labels' % (split, len(images), len(labels)))
    return images, labels


def validation_indices(labels, fraction=VAL_FRACTION, seed=SPLIT_SEED):
    """Sorted indices of the validation split: ``fraction`` of each class (rounded), drawn with
    a generator seeded by ``seed``; the same labels always give the same split."""
    rng = np.random.RandomState(seed)
    picked = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        picked.append(rng.choice(members, int(round(len(members) * fraction)), replace=False))
    return np.sort(np.concatenate(picked))


def build_fashion_mnist(out_dir, source=DEFAULT_SOURCE, install=True):
    """``{out_dir}/train.rec`` (training images minus the validation split), ``val.rec`` and
    ``test.rec`` (+ .idx, and ``split.json`` naming the validation images by their index in
    the training file); returns {'train', 'val', 'test'} paths. A complete folder made with
    this split is kept; an older train/test-only folder is rebuilt."""
    source = ensure_source(source, install)
    os.makedirs(out_dir, exist_ok=True)
    paths = {split: os.path.join(out_dir, split + '.rec') for split in ('train', 'val', 'test')}
    split_file = os.path.join(out_dir, 'split.json')
    spec = dict(val_fraction=VAL_FRACTION, seed=SPLIT_SEED)
    if all(map(records_exist, paths.values())) and os.path.isfile(split_file):
        with open(split_file) as f:
            if {k: v for k, v in json.load(f).items() if k in spec} == spec:
                return paths
    images, labels = load_split(source, 'train')
    val = validation_indices(labels)
    train = np.setdiff1d(np.arange(len(labels)), val)
    write_records(paths['train'][:-4], images[train], labels[train])
    write_records(paths['val'][:-4], images[val], labels[val])
    if not records_exist(paths['test']):
        write_records(paths['test'][:-4], *load_split(source, 'test'))
    tmp = split_file + '.tmp'
    with open(tmp, 'w') as f:  # written last: its presence marks a complete folder
        json.dump(dict(spec, val_indices=val.tolist(), train_count=int(len(train))), f)
    os.replace(tmp, split_file)
    return paths
