"""Model registry: each model is a table row of trunk arguments plus its metadata."""
import difflib
import inspect
import mxnet as mx

from ..backbone.fbnet import FBNet
from ..backbone.regnet import RegNet
from ..backbone.resnet import ResNeSt
from .info import ModelInfo
from .published import DETECTION_WEIGHTS, SEGMENTATION_WEIGHTS

__all__ = ['ModelInfo', 'register_model', 'get_model', 'get_model_info', 'list_models']

_REGISTRY = {}
# the trunk families: a model's ``arch`` holds the arguments of one of them
TRUNKS = {'resnest': ResNeSt, 'regnet': RegNet, 'fbnet': FBNet}


def _trunk_args(trunk):
    """Trunk arguments a caller may override through get_model(**kwargs)."""
    return tuple(p for p in inspect.signature(TRUNKS[trunk].__init__).parameters
                 if p not in ('self', 'classes', 'kwargs'))


def register_model(**meta):
    """Decorator: ``fn`` returns the model's trunk arguments; ``meta`` its :class:`ModelInfo`.

    The decorated name becomes a factory with the zoo's uniform signature.
    """
    def wrap(arch_fn):
        name = arch_fn.__name__
        if name in _REGISTRY:
            raise ValueError('model %r is registered twice' % name)
        _REGISTRY[name] = ModelInfo(name=name, arch=arch_fn(), **meta)

        def factory(pretrained=False, root=None, ctx=None, classes=1000, **kwargs):
            return get_model(name, pretrained=pretrained, root=root, ctx=ctx, classes=classes,
                             **kwargs)
        factory.__name__ = factory.__qualname__ = name
        factory.__doc__ = arch_fn.__doc__
        factory.info = _REGISTRY[name]
        return factory
    return wrap


# the published models of each task: the zoo's classification models (every one also a trunk
# for the other tasks) and the dense-prediction weights of zoo/published.py
TASKS = ('classification', 'segmentation', 'detection')
_TASK_REGISTRY = {'segmentation': {info.name: info for info in SEGMENTATION_WEIGHTS},
                  'detection': {info.name: info for info in DETECTION_WEIGHTS}}


def _task_models(task):
    if task not in TASKS:
        raise ValueError('unknown task %r; tasks: %s' % (task, ', '.join(TASKS)))
    return _REGISTRY if task == 'classification' else _TASK_REGISTRY[task]


def list_models(task='classification'):
    """Names of the registered models of ``task``, sorted: the zoo's classification models
    (every one also a trunk for the other tasks), or a task's published models, e.g.
    ``list_models(task='segmentation')``."""
    return sorted(_task_models(task))


def get_model_info(name, task='classification'):
    """The :class:`ModelInfo` of a registered model of ``task``."""
    models = _task_models(task)
    try:
        return models[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), models, n=3, cutoff=0.5)
        raise ValueError('unknown model %r%s; list_models(%s) gives all %d names'
                         % (name, ' (did you mean %s?)' % ', '.join(close) if close else '',
                            '' if task == 'classification' else 'task=%r' % task,
                            len(models))) from None


def _trunk_kwargs(name, kwargs, trunk='resnest'):
    kwargs = dict(kwargs)
    allowed = _trunk_args(trunk)
    if 'dilated' in kwargs:  # GluonCV's spelling of output_stride=8
        dilated = kwargs.pop('dilated')
        if dilated and kwargs.setdefault('output_stride', 8) != 8:
            raise ValueError('dilated=True means output_stride=8, got output_stride=%r'
                             % kwargs['output_stride'])
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise TypeError('%s: unknown argument%s %s; allowed: pretrained, root, ctx, classes, '
                        'dilated, %s' % (name, 's' if len(unknown) > 1 else '',
                                         ', '.join(unknown), ', '.join(allowed)))
    return kwargs


def get_model(name, pretrained=False, root=None, ctx=None, classes=1000, **kwargs):
    """Build a registered model.

    Parameters
    ----------
    name : str
        See :func:`list_models`.
    pretrained : bool or str
        True loads the published weights; a string selects them by (a prefix of) their sha1.
    root : str
        Folder of the weight files; default ``$MXNET_HOME/models`` or ``~/.mxnet/models``.
    ctx : Context or list of Context
        Where pretrained weights are loaded; default CPU.
    classes : int
        Classifier outputs. With pretrained weights and ``classes != 1000`` the backbone is loaded
        and the classifier freshly initialized.
    **kwargs
        Trunk overrides (see :class:`~gluon_resnest.backbone.ResNeSt`), e.g.
        ``output_stride=8``, ``dropblock_prob=0.1``, ``last_gamma=True``, ``norm_layer``.

    Without ``pretrained`` the network is returned uninitialized, as in GluonCV: call
    ``net.initialize()``.
    """
    info = get_model_info(name)
    arch = dict(info.arch, **_trunk_kwargs(name, kwargs, info.trunk))
    net = TRUNKS[info.trunk](classes=classes, **arch)
    net.info = info
    if pretrained:
        from .store import load_pretrained
        load_pretrained(net, info, tag=pretrained, root=root, ctx=ctx or mx.cpu())
    return net
