"""gluon-resnest: ResNeSt (Split-Attention Networks) for MXNet Gluon.

``pip install .`` installs the CPU build of MXNet 1.9.1. For NVIDIA GPUs (CUDA 11.2 libraries
required) select the GPU build instead of the CPU one:

    GLUON_RESNEST_MXNET=cu112 pip install ".[cu112]"

The variable matters because pip cannot drop a default requirement when an extra is chosen, and
the CPU and GPU builds both install the ``mxnet`` package: having both breaks it.
"""
import os

from setuptools import find_packages, setup

MXNET_BUILDS = {'cpu': 'mxnet==1.9.1', 'cu112': 'mxnet-cu112==1.9.1'}
variant = os.environ.get('GLUON_RESNEST_MXNET', 'cpu')
if variant not in MXNET_BUILDS:
    raise SystemExit('GLUON_RESNEST_MXNET=%s: choose one of %s'
                     % (variant, ', '.join(MXNET_BUILDS)))

# MXNet 1.9.1 imports only with numpy < 1.24; unpinned, these pull numpy-2 builds.
PINNED = ['numpy==1.23.5', 'Pillow<11', 'scipy<1.12', 'pandas<2.1', 'matplotlib<3.8',
          'opencv-python-headless<4.9', 'opencv-python<4.9']

setup(
    name='gluon-resnest',
    version='0.1.0',
    description='ResNeSt (Split-Attention Networks) for MXNet Gluon: model zoo, Horovod '
                'training, evaluation and export',
    long_description=open(os.path.join(os.path.dirname(__file__), 'README.md')).read(),
    long_description_content_type='text/markdown',
    # the library, and its experiments beside it (the main job, comparisons, the scenes demo)
    packages=find_packages(include=['gluon_resnest', 'gluon_resnest.*', 'experiments']),
    python_requires='>=3.8',
    install_requires=[MXNET_BUILDS[variant], 'tqdm'] + PINNED,
    # the same main() functions the scripts in train/ and eval/ call
    entry_points={'console_scripts': [
        'resnest-%s = gluon_resnest.commands.%s:main' % (name.replace('_', '-'), name)
        for name in ('train', 'train_segmentation', 'im2rec', 'evaluate',
                     'evaluate_segmentation', 'export', 'benchmark', 'profile', 'train_detection',
                     'evaluate_detection', 'predict_detection', 'benchmark_detection',
                     'predict_segmentation')] + [
        'resnest-%s = experiments.%s:main' % (name.replace('_', '-'), module)
        for name, module in (('fashion_mnist', 'main_job'), ('segmentation_demo',
                                                             'segmentation_demo'),
                             ('instance_demo', 'instance_scenes_demo'),
                             ('make_fashion_mnist', 'make_fashion_mnist'),
                             ('compare_models', 'compare_models'))]},
    extras_require={
        'cu112': [MXNET_BUILDS['cu112']],
        # GluonCV: the reference the classification tests compare against, and the heads,
        # dataset readers and label mappings the segmentation part builds on; with pycocotools
        # (COCO AP; 2.0.11 runs with numpy 1.23.5) the detection part's
        'segmentation': ['gluoncv==0.10.5.post0'],
        'detection': ['gluoncv==0.10.5.post0', 'pycocotools==2.0.11'],
        'dev': ['gluoncv==0.10.5.post0', 'pycocotools==2.0.11', 'pytest'],
        # MXNet's ONNX exporter; onnxruntime 1.16.3 (to check exports) declares numpy>=1.24.2
        # but runs with 1.23.5, so tools/install.sh adds it with --no-deps
        'onnx': ['onnx==1.14.1', 'protobuf<4.26'],
    },
)
