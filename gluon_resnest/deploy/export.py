"""Export a network as a deployable symbol graph (``-symbol.json`` + ``-NNNN.params``)."""
import os

import mxnet as mx

from ..layers.dropblock import deploy_mode

__all__ = ['export_model']


def export_model(net, prefix, input_shape=(1, 3, 224, 224), epoch=0, ctx=None):
    """Hybridize ``net`` in inference mode and write ``{prefix}-symbol.json`` and
    ``{prefix}-{epoch:04d}.params``.

    The graph holds no random operators: DropBlock and dropout are left out. Returns the two
    paths; ``mx.gluon.SymbolBlock.imports(json, ['data'], params)`` loads them back.
    """
    if len(input_shape) != 4:
        raise ValueError('input_shape must be (N, C, H, W), got %r' % (input_shape,))
    ctx = ctx or mx.cpu()
    folder = os.path.dirname(os.path.abspath(prefix))
    os.makedirs(folder, exist_ok=True)
    with deploy_mode(net):
        net.hybridize()
        with mx.autograd.predict_mode():
            net(mx.nd.zeros(input_shape, ctx=ctx))
        net.export(prefix, epoch=epoch)
    return '%s-symbol.json' % prefix, '%s-%04d.params' % (prefix, epoch)
