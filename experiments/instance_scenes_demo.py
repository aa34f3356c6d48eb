"""Instance segmentation demo on Fashion-MNIST instance scenes: build the scenes (COCO layout),
pretrain a small ResNeSt on the garments, train Mask R-CNN with FPN under horovodrun, evaluate
the test scenes once (box and mask AP), draw them, export, and print a summary:

    python train/instance_demo.py                              # make instance-demo
    python train/instance_demo.py --compare --seeds 0,1,2      # ResNeSt vs ResNet-D

Re-running resumes; --fresh starts over.
"""
import os

from .demo_command import demo_arguments, run_demo_command
from .instance_demo import INSTANCE_DEMO, compare_instance_backbones, run_instance_demo


def parse_args(argv=None):
    return demo_arguments(argv, __doc__, os.path.join('data', 'fashion-mnist-instances'),
                          os.path.join('runs', 'instances'), INSTANCE_DEMO['backbone'],
                          INSTANCE_DEMO['epochs'], 'Mask R-CNN')


def main(argv=None):
    run_demo_command(parse_args(argv), run_instance_demo, compare_instance_backbones)


if __name__ == '__main__':
    main()
