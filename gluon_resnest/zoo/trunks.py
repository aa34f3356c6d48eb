"""A zoo model as the trunk of a dense-prediction model (segmentation, detection): built with
``features_only`` and, optionally, its ImageNet weights from the verified store, a ``.params``
file or a classification checkpoint folder the trainer wrote."""
import json
import os
import re

import mxnet as mx

from .registry import get_model

__all__ = ['get_trunk', 'base_weights_path']


def base_weights_path(pretrained_base, backbone):
    """The .params file meant by ``pretrained_base`` when it names a file or a classification
    checkpoint folder of ``backbone``, else None (a bool, or a hash tag of published weights).
    Anything else is an error that says what the argument takes."""
    if not isinstance(pretrained_base, str):
        return None
    if os.path.isdir(pretrained_base):
        path = os.path.join(pretrained_base, 'model.params')
        if not os.path.isfile(path):
            raise FileNotFoundError('%s is not a checkpoint folder (no model.params)'
                                    % pretrained_base)
        meta_path = os.path.join(pretrained_base, 'meta.json')
        if os.path.isfile(meta_path):
            with open(meta_path) as f:
                meta = json.load(f)
            if meta.get('task', 'classification') != 'classification':
                raise ValueError('%s is a %s checkpoint; the base takes the backbone\'s '
                                 'classification weights (a train/train.py checkpoint folder, '
                                 'a .params file or imagenet)' % (pretrained_base, meta['task']))
            trained = meta.get('config', {}).get('model')
            if trained and trained != backbone:
                raise ValueError('%s holds %s weights, but the backbone is %s'
                                 % (pretrained_base, trained, backbone))
        return path
    if os.path.isfile(pretrained_base):
        return pretrained_base
    if re.fullmatch('[0-9a-f]{8,40}', pretrained_base):
        return None  # a tag of the published weights
    raise FileNotFoundError('%s: no such file or checkpoint folder (the base takes imagenet, '
                            'a sha1 tag of the published weights, a classification '
                            'checkpoint folder or a .params file)' % pretrained_base)


def get_trunk(backbone, pretrained_base=False, root=None, ctx=None, **kwargs):
    """``backbone``'s features_only trunk; ``pretrained_base``: False (uninitialized), True or
    a sha1 tag (the published ImageNet weights, verified), or a ``.params`` file or
    classification checkpoint folder of the same backbone (its classifier left out).
    ``kwargs``: trunk overrides (``output_stride``, ``norm_layer``, ...)."""
    ctx = ctx or mx.cpu()
    base_file = base_weights_path(pretrained_base, backbone) if pretrained_base else None
    trunk = get_model(backbone, pretrained=pretrained_base if pretrained_base and not base_file
                      else False, root=root, ctx=ctx, features_only=True, **kwargs)
    if base_file:
        from .store import load_weights_file
        # a classification file's head that a features_only trunk lacks is left out
        load_weights_file(trunk, base_file, backbone, ctx,
                          skip=getattr(trunk, 'classification_head', ()))
    return trunk
