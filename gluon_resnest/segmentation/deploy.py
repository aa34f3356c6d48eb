"""Deployment of a segmentation network: the main logits only (no auxiliary head), as a symbol
graph that runs at any input size, or ONNX."""
import contextlib
import warnings

from mxnet.gluon.block import HybridBlock

from ..deploy.export import export_model, export_onnx

__all__ = ['MainOutput', 'export_segmentation', 'export_segmentation_onnx']


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
