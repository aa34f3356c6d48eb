"""Fashion-MNIST idx files -> RecordIO train.rec/test.rec (+ .idx).

    python train/make_fashion_mnist.py --out data/fashion-mnist [--source DIR]
"""
import sys

from .fashion_mnist_data import DEFAULT_SOURCE, build_fashion_mnist
from gluon_resnest.argtypes import command_parser


def main(argv=None):
    parser = command_parser(__doc__)
    parser.add_argument('--out', default='data/fashion-mnist')
    parser.add_argument('--source', default=DEFAULT_SOURCE,
                        help="folder of the raw idx files (default: Debian's package, installed "
                             "with apt-get when missing and running as root)")
    parser.add_argument('--no-install', action='store_true', help='never call apt-get')
    args = parser.parse_args(argv)
    try:
        paths = build_fashion_mnist(args.out, args.source, install=not args.no_install)
    except (FileNotFoundError, ValueError) as err:
        sys.exit('error: %s' % err)
    for split, path in sorted(paths.items()):
        print('%s: %s' % (split, path))


if __name__ == '__main__':
    main()
