"""What the prediction commands check of a user's image list before any model loads."""
import os

__all__ = ['output_names']


def output_names(paths):
    """The output base name of each image (its file name without the extension); an error
    naming missing images, or two images that would write the same output file."""
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise FileNotFoundError('image not found: %s' % ', '.join(missing))
    names = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError('two images would write the same %s.png: %s'
                         % (twice[0], ', '.join(p for p, n in zip(paths, names)
                                                if n == twice[0])))
    return names
