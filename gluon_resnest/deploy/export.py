"""Export for deployment: MXNet symbol (``-symbol.json`` + ``-NNNN.params``) and ONNX."""
import os
import tempfile
import warnings
from collections import namedtuple

import mxnet as mx
import numpy as np
from mxnet.gluon.block import HybridBlock

from ..layers.dropblock import deploy_mode
from ..zoo.store import read_params_file

__all__ = ['export_model', 'export_onnx', 'clean_onnx', 'Preprocessed', 'read_export_meta',
           'import_symbol', 'Exported', 'traced_shape']


class Preprocessed(HybridBlock):
    """``net`` behind its input preprocessing: takes (N, H, W, 3) RGB pixels in 0..255, as a
    deployment's image decoder gives them, and normalizes with the model's mean/std."""

    def __init__(self, net, mean, std, **kwargs):
        super(Preprocessed, self).__init__(**kwargs)
        with self.name_scope():
            self.net = net
            self.mean = self.params.get_constant(
                'mean', mx.nd.array(mean).reshape((1, 3, 1, 1)) * 255)
            self.std = self.params.get_constant(
                'std', mx.nd.array(std).reshape((1, 3, 1, 1)) * 255)

    def hybrid_forward(self, F, x, mean, std):
        x = F.transpose(F.cast(x, 'float32'), axes=(0, 3, 1, 2))
        return self.net(F.broadcast_div(F.broadcast_sub(x, mean), std))


# what a checkpoint's export gives its command: the network the files were made from (to check
# them against), the model's info (normalization), the traced input shape, and the files
Exported = namedtuple('Exported', 'net info input_shape symbol params onnx')


def traced_shape(batch_size, size, preprocess):
    """The input shape an export is traced at: NHWC pixels with ``preprocess``, else NCHW."""
    return (batch_size, size, size, 3) if preprocess else (batch_size, 3, size, size)


def _check_shape(input_shape, preprocess):
    if len(input_shape) != 4 or any(int(d) < 1 for d in input_shape):
        raise ValueError('input_shape must be 4 positive sizes (%s), got %r'
                         % ('N, H, W, 3' if preprocess else 'N, C, H, W', input_shape))


def export_model(net, prefix, input_shape=(1, 3, 224, 224), epoch=0, ctx=None,
                 preprocess=None, meta=None):
    """Hybridize ``net`` in inference mode and write ``{prefix}-symbol.json`` and
    ``{prefix}-{epoch:04d}.params``.

    The graph holds no random operators (DropBlock and dropout are left out). ``preprocess`` —
    a ModelInfo or any object with ``mean`` and ``std`` — folds the normalization in: the graph
    then takes (N, H, W, 3) pixels in 0..255 and ``input_shape`` is given in that layout.
    ``meta`` (a dict: the model, its classes and normalization) is written beside them as
    ``{prefix}-meta.json``, so that tools reading the export can check what it is.
    Returns the two paths; ``mx.gluon.SymbolBlock.imports(json, ['data'], params)`` loads them.
    """
    _check_shape(input_shape, preprocess)
    ctx = ctx or mx.cpu()
    folder = os.path.dirname(os.path.abspath(prefix))
    files = ('%s-symbol.json' % prefix, '%s-%04d.params' % (prefix, epoch))
    try:
        os.makedirs(folder, exist_ok=True)
        # written beside the targets, then renamed: a full disk or a kill leaves no half file
        with tempfile.TemporaryDirectory(prefix='.tmp-export-', dir=folder) as tmp:
            with deploy_mode(net):
                block = Preprocessed(net, preprocess.mean, preprocess.std) if preprocess else net
                if preprocess:
                    for constant in (block.mean, block.std):  # the net's own are set
                        constant.initialize(ctx=ctx)
                block.hybridize()
                with mx.autograd.predict_mode():
                    block(mx.nd.zeros(input_shape, ctx=ctx))
                staged = os.path.join(tmp, os.path.basename(prefix))
                block.export(staged, epoch=epoch)
            if meta is not None:
                import json
                with open(staged + '-meta.json', 'w') as f:
                    json.dump(dict(meta, input_shape=list(input_shape),
                                   input='NHWC pixels 0..255' if preprocess
                                   else 'NCHW normalized'), f, indent=1)
            for path in files + (('%s-meta.json' % prefix,) if meta is not None else ()):
                os.replace(os.path.join(tmp, os.path.basename(path)), path)
    except OSError as err:
        raise PermissionError('cannot write %s (%s)' % (files[0].rsplit('-', 1)[0] + '-*',
                                                        err.strerror or err)) from None
    return files


def export_onnx(net, path, input_shape=(1, 3, 224, 224), dynamic_batch=True, preprocess=None):
    """Write ``net`` as an ONNX model with MXNet's exporter (batch dimension dynamic by
    default), cleaned so runtimes can optimize it (:func:`clean_onnx`) and checked with
    ``onnx.checker``. Returns the path; the file appears only when complete."""
    try:
        import onnx  # noqa: F401  (mx.onnx needs it)
    except ImportError:
        raise ImportError('ONNX export needs the onnx package: pip install "onnx==1.14.1" '
                          '"protobuf<4.26"') from None
    _check_shape(input_shape, preprocess)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix='.tmp-onnx-', dir=folder) as tmp:
        sym, params = export_model(net, os.path.join(tmp, 'model'), input_shape,
                                   preprocess=preprocess)
        dynamic = [(None,) + tuple(input_shape[1:])] if dynamic_batch else None
        staged = os.path.join(tmp, 'model.onnx')
        mx.onnx.export_model(sym, params, in_shapes=[tuple(input_shape)], in_types=[np.float32],
                             onnx_file_path=staged, dynamic=dynamic_batch,
                             dynamic_input_shapes=dynamic)
        model = clean_onnx(onnx.load(staged))
        onnx.checker.check_model(model)
        onnx.save(model, staged)
        os.replace(staged, path)
    return path


def clean_onnx(model):
    """What MXNet's exporter writes that keeps runtimes from optimizing, removed with the
    outputs unchanged:

    - every weight listed as a graph input as well as an initializer, so a runtime must treat
      weights as values a caller may override (ONNX Runtime then neither folds BatchNorm into
      convolutions nor folds constants): weights become initializers only;
    - a division by a constant 1 before every softmax (its ``temperature``): removed.
    """
    from onnx import numpy_helper
    graph = model.graph
    weights = {tensor.name: tensor for tensor in graph.initializer}
    inputs = [value for value in graph.input if value.name not in weights]
    del graph.input[:]
    graph.input.extend(inputs)

    def is_one(name):
        return name in weights and bool(np.all(numpy_helper.to_array(weights[name]) == 1))
    renamed, kept = {}, []
    graph_outputs = {value.name for value in graph.output}
    for node in graph.node:
        node.input[:] = [renamed.get(name, name) for name in node.input]
        if (node.op_type == 'Div' and len(node.input) == 2 and is_one(node.input[1])
                and node.output[0] not in graph_outputs):
            renamed[node.output[0]] = node.input[0]
            continue
        kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)
    used = {name for node in kept for name in node.input}
    unused = [tensor for tensor in graph.initializer if tensor.name not in used]
    for tensor in unused:
        graph.initializer.remove(tensor)
    return model


def read_export_meta(symbol_path):
    """The ``-meta.json`` that :func:`export_model` wrote beside ``symbol_path``
    (``{prefix}-symbol.json``), or None for an export without one."""
    import json
    if not symbol_path.endswith('-symbol.json'):
        return None
    path = symbol_path[:-len('-symbol.json')] + '-meta.json'
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def import_symbol(symbol, params, ctx=None):
    """An exported graph, or ValueError naming the file that is corrupt or does not fit."""
    read_params_file(params)
    try:
        with warnings.catch_warnings():
            # MXNet cannot tell the input's dtype before the first call and says so; the
            # float32 it then assumes is the exported graph's
            warnings.filterwarnings('ignore', message='Cannot decide type')
            return mx.gluon.SymbolBlock.imports(symbol, ['data'], params, ctx=ctx or mx.cpu())
    except (mx.base.MXNetError, ValueError, AssertionError) as err:
        raise ValueError('%s with %s: not a readable graph, or the parameters do not fit it '
                         '(%s)' % (symbol, params, str(err).strip().split('\n')[0][:200])) \
            from None
