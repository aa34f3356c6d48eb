"""Deployment of a segmentation network: the main logits only (no auxiliary head), as a symbol
graph that runs at any input size, or ONNX."""
import contextlib
import warnings

from mxnet.gluon.block import HybridBlock

from ..deploy.export import Exported, export_model, export_onnx, traced_shape
from ..zoo.registry import get_model_info

__all__ = ['MainOutput', 'export_segmentation', 'export_segmentation_onnx', 'export_checkpoint']


class MainOutput(HybridBlock):
    """``net`` returning its main logits only."""

    def __init__(self, net, **kwargs):
        super(MainOutput, self).__init__(**kwargs)
        with self.name_scope():
            self.net = net

    def hybrid_forward(self, F, x):
        out = self.net(x)
        return out[0] if isinstance(out, (list, tuple)) else out


def export_segmentation(net, prefix, input_shape=(1, 3, 480, 480), preprocess=None,
                        meta=None):
    """``{prefix}-symbol.json`` + ``{prefix}-0000.params`` of the main logits; the graph takes any
    height and width (``input_shape`` only traces it). ``meta`` (backbone, classes, ...) goes to
    ``{prefix}-meta.json``. Returns the two paths."""
    with _aux_head_unused():
        return export_model(MainOutput(net), prefix, input_shape, preprocess=preprocess,
                            meta=meta)


def export_segmentation_onnx(net, path, input_shape=(1, 3, 480, 480)):
    """ONNX file of the main logits (MXNet's exporter), for ``input_shape``'s height and width
    only: the exporter converts bilinear resizing to a fixed size, not "like another tensor"
    (the batch stays dynamic). Returns the path."""
    net.fixed_output_size = tuple(input_shape[2:])
    try:
        with _aux_head_unused():
            return export_onnx(MainOutput(net), path, input_shape)
    finally:
        net.fixed_output_size = None


@contextlib.contextmanager
def _aux_head_unused():
    """The deployed graph leaves the auxiliary head out on purpose: no warning about it."""
    with warnings.catch_warnings():
        warnings.filterwarnings('ignore', message='Parameter .* is not used by any computation')
        yield


def export_checkpoint(checkpoint, prefix, input_size=None, batch_size=1, preprocess=False,
                      onnx=False):
    """The main logits of a checkpoint folder train/train_segmentation.py wrote: the symbol
    graph at any size (traced at ``input_size``, default the training crop), ONNX at that size;
    returns :class:`~gluon_resnest.deploy.export.Exported`."""
    from .evaluate import load_segmentation, segmentation_meta
    if preprocess and onnx:
        raise ValueError('--preprocess and --onnx: the segmentation ONNX file takes NCHW '
                         'normalized input; export them in two runs')
    net, config = load_segmentation(checkpoint)
    info = get_model_info(config['backbone'])
    shape = traced_shape(batch_size, input_size or config['crop_size'], preprocess)
    sym, params = export_segmentation(net, prefix, shape, info if preprocess else None,
                                      meta=segmentation_meta(config))
    onnx_path = export_segmentation_onnx(net, prefix + '.onnx', shape) if onnx else None
    return Exported(MainOutput(net), info, shape, sym, params, onnx_path)
