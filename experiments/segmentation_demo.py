"""Segmentation demo on Fashion-MNIST scenes: build the scenes (VOC layout), train DeepLabV3 with
a small ResNeSt under horovodrun, evaluate on the test scenes once (single- and multi-scale),
export, and print a summary:

    python train/segmentation_demo.py                       # ~13 minutes on 2 fast cores
    python train/segmentation_demo.py --compare --seeds 0,1,2   # ResNeSt vs ResNet-D (radix 0)

Re-running resumes; --fresh starts over.
"""
import os

from .demo_command import demo_arguments, run_demo_command
from .scenes_demo import DEMO, compare_backbones, run_demo


def parse_args(argv=None):
    return demo_arguments(argv, __doc__, os.path.join('data', 'fashion-mnist-scenes'),
                          os.path.join('runs', 'scenes'), DEMO['backbone'], DEMO['epochs'],
                          'segmentation')


def main(argv=None):
    run_demo_command(parse_args(argv), run_demo, compare_backbones)


if __name__ == '__main__':
    main()
