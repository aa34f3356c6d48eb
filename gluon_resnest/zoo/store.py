"""Pretrained weight store: ``{name}-{sha1[:8]}.params`` files under a root folder, verified by
sha1 before they are loaded; missing files are fetched from GluonCV's or the official ResNeSt
repository (or the ``MXNET_GLUON_REPO`` mirror)."""
import os
import tempfile
import zipfile

import mxnet as mx
from mxnet.gluon.utils import check_sha1, download

__all__ = ['default_root', 'get_model_file', 'load_pretrained', 'load_weights_file',
           'read_params_file', 'PretrainedWeightsError']

REPO_URLS = {
    'gluoncv': 'https://apache-mxnet.s3-accelerate.dualstack.amazonaws.com/',
    'resnest': 'https://hangzh.s3-us-west-1.amazonaws.com/',
}
_URL_FORMAT = '{repo_url}gluon/models/{file_name}.zip'
CLASSIFIER = ('fc.weight', 'fc.bias')


class PretrainedWeightsError(RuntimeError):
    """Pretrained weights are unavailable, or a file does not match its published hash."""


def default_root():
    """``$MXNET_HOME/models`` when MXNET_HOME is set, else ``~/.mxnet/models``."""
    home = os.environ.get('MXNET_HOME')
    return os.path.join(home, 'models') if home else os.path.join('~', '.mxnet', 'models')


def _expected_hash(info, tag):
    if not info.sha1:
        raise PretrainedWeightsError('%s has no published weights; build it with '
                                     'pretrained=False' % info.name)
    if tag is True:
        return info.sha1
    tag = str(tag).lower()
    if len(tag) < 8 or any(c not in '0123456789abcdef' for c in tag):
        raise PretrainedWeightsError(
            'pretrained=%r: a tag is at least the first 8 hex digits of the weights\' sha1 '
            '(%s: %s)' % (tag, info.name, info.sha1[:8]))
    if not info.sha1.startswith(tag):
        raise PretrainedWeightsError('pretrained=%r: %s has no weights with that hash; the '
                                     'published file is %s-%s.params' % (tag, info.name, info.name,
                                                                          info.sha1[:8]))
    return info.sha1


def _sha1_matches(path, sha1):
    return os.path.isfile(path) and check_sha1(path, sha1)


def get_model_file(info, tag=True, root=None):
    """Path of the verified weights of ``info`` (a ModelInfo), downloading them if missing.

    A file whose sha1 does not match is never returned.
    """
    sha1 = _expected_hash(info, tag)
    root = os.path.expanduser(root or default_root())
    file_name = '%s-%s' % (info.name, sha1[:8])
    path = os.path.join(root, file_name + '.params')
    if _sha1_matches(path, sha1):
        return path
    bad = os.path.exists(path)
    repo_url = os.environ.get('MXNET_GLUON_REPO', REPO_URLS[info.weights_from])
    url = _URL_FORMAT.format(repo_url=repo_url.rstrip('/') + '/', file_name=file_name)
    try:
        os.makedirs(root, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=root) as tmp:
            archive = download(url, path=os.path.join(tmp, file_name + '.zip'), retries=1)
            with zipfile.ZipFile(archive) as zf:
                zf.extract(file_name + '.params', tmp)
            fetched = os.path.join(tmp, file_name + '.params')
            if not check_sha1(fetched, sha1):
                raise PretrainedWeightsError('the file downloaded from %s does not match sha1 %s'
                                             % (url, sha1))
            os.replace(fetched, path)  # atomic: a half-written file never has the final name
    except PretrainedWeightsError:
        raise
    except Exception as err:  # offline, refused, no such file on the mirror, bad archive
        raise PretrainedWeightsError(
            '%s: %s %s, and downloading %s failed (%s: %s). Put the file there (sha1 %s), or '
            'set MXNET_GLUON_REPO to a mirror that serves gluon/models/%s.zip'
            % (info.name, path, 'does not match its sha1' if bad else 'is missing', url,
               type(err).__name__, err, sha1, file_name)) from None
    return path


def read_params_file(path):
    """{name: NDArray} of an MXNet ``.params`` file, or ValueError naming a file that is
    truncated or not one. Files saved by ``Block.save_parameters`` hold structural names;
    exports prefix ``arg:``/``aux:``, which are dropped."""
    if not os.path.isfile(path):
        raise FileNotFoundError('%s not found' % path)
    try:
        arrays = mx.nd.load(path)
    except mx.base.MXNetError:
        raise ValueError('%s is not a readable .params file (truncated or corrupt)'
                         % path) from None
    if not arrays:  # a network without parameters (MXNet loads an empty file as a list)
        return {}
    if not isinstance(arrays, dict):  # a list: saved without names
        raise ValueError('%s holds unnamed arrays, not a model\'s parameters' % path)
    return {key.split(':', 1)[-1]: value for key, value in arrays.items()}


def load_weights_file(net, path, name, ctx=mx.cpu(), classifier=CLASSIFIER, skip=(),
                      rename=None, ignore=()):
    """Load a ``.params`` file into ``net`` strictly, except for the ``classifier`` parameters,
    which are loaded or left out together: left out when ``net`` lacks them all
    (``features_only``), freshly initialized when the file has every one of them but in
    other shapes (another class count); a file missing some of them, or fitting some and not
    others, is an error like any other. File entries starting with a prefix in ``skip`` (a part
    ``net`` was built without) are left out, and the names in ``ignore`` are neither loaded
    nor required (extras a writer is known to add, constants the network makes itself).
    ``rename`` maps the file's names to ``net``'s structural names where they differ (e.g.
    GluonCV's global names). ``name`` is what errors call the weights."""
    try:
        params = read_params_file(path)
    except ValueError as err:
        raise PretrainedWeightsError(str(err)) from None
    params = {(rename or {}).get(k, k): v for k, v in params.items()
              if not k.startswith(tuple(skip)) and k not in ignore}
    own = {k: v for k, v in net._collect_params_with_prefix().items() if k not in ignore}

    def fits(key):  # a shape not inferred yet (a 0 dimension) takes the file's
        return len(own[key].shape) == len(params[key].shape) and all(
            mine in (0, theirs) for mine, theirs in zip(own[key].shape, params[key].shape))
    heads = [key for key in classifier if key in own]
    fresh = []  # classifier parameters of net that the file is for another class count of
    if not heads:  # features_only: the file's classifier is not used
        for key in classifier:
            params.pop(key, None)
    elif all(key in params for key in heads):
        fitting = [fits(key) for key in heads]
        if not any(fitting):
            fresh = heads
            for key in heads:
                params.pop(key)
        elif not all(fitting):
            raise PretrainedWeightsError(
                '%s does not fit %s: its %s fit, its %s do not (another class count changes '
                'them all)' % (path, name, ', '.join(k for k, f in zip(heads, fitting) if f),
                               ', '.join(k for k, f in zip(heads, fitting) if not f)))
    missing = sorted(set(own) - set(params) - set(fresh))
    extra = sorted(set(params) - set(own))
    if missing or extra:
        raise PretrainedWeightsError('%s does not fit %s: missing %s, unexpected %s'
                                     % (path, name, missing[:5], extra[:5]))
    for key, value in params.items():
        if not fits(key):
            raise PretrainedWeightsError('%s does not fit %s: %s has shape %s, the file %s'
                                         % (path, name, key, own[key].shape, value.shape))
        own[key]._load_init(value, ctx)  # what Block.load_parameters does
    for key in fresh:
        own[key].initialize(ctx=ctx)
    return path


def load_pretrained(net, info, tag=True, root=None, ctx=mx.cpu(), classifier=CLASSIFIER,
                    skip=()):
    """Load the published weights of ``info`` into ``net`` (see :func:`load_weights_file`)."""
    return load_weights_file(net, get_model_file(info, tag, root), info.name, ctx, classifier,
                             skip)
