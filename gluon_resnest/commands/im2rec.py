"""Image folders (one sub-folder per class) -> RecordIO with MXNet's own im2rec tool.

    python train/im2rec.py --root /data/imagenet/train --prefix /data/rec/train [--resize 480]
"""
import os
import subprocess
import sys

import mxnet
from ..argtypes import command_parser


def main(argv=None):
    parser = command_parser(__doc__)
    parser.add_argument('--root', required=True, help='folder of class sub-folders')
    parser.add_argument('--prefix', required=True, help='output prefix: PREFIX.rec/.idx/.lst')
    parser.add_argument('--resize', type=int, default=0, help='shorter side, 0 keeps the size')
    parser.add_argument('--quality', type=int, default=95)
    parser.add_argument('--workers', type=int, default=2)
    args = parser.parse_args(argv)
    if not os.path.isdir(args.root):
        sys.exit('error: image folder %s does not exist' % args.root)
    tool = os.path.join(os.path.dirname(mxnet.__file__), 'tools', 'im2rec.py')
    os.makedirs(os.path.dirname(os.path.abspath(args.prefix)), exist_ok=True)
    # pass 1 lists the images with labels from the folder names, pass 2 packs them
    subprocess.run([sys.executable, tool, '--list', '--recursive', args.prefix, args.root],
                   check=True)
    packing = ['--resize', str(args.resize)] if args.resize else ['--pass-through']
    subprocess.run([sys.executable, tool, '--num-thread', str(args.workers), '--quality',
                    str(args.quality)] + packing + [args.prefix, args.root], check=True)
    print('%s.rec and %s.idx written' % (args.prefix, args.prefix))

if __name__ == '__main__':
    main()
