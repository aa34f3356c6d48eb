"""The paper's classification recipe: label smoothing and mixup (the learning-rate scaling,
schedules and weight-decay groups every task shares are engine.schedule; the DropBlock ramp is
engine.hooks.DropBlockRamp)."""
import mxnet as mx

__all__ = ['smooth_labels', 'mixup', 'mixup_lambda']


def smooth_labels(labels, classes, eps=0.1):
    """One-hot targets with ``eps`` spread uniformly: 1 - eps + eps/K on the label."""
    onehot = mx.nd.one_hot(labels, classes)
    return onehot * (1 - eps) + eps / classes


def mixup(data, targets, lam):
    """Mix each sample with the batch reversed: lam * x + (1 - lam) * x[::-1] (and targets)."""
    return (lam * data + (1 - lam) * data[::-1], lam * targets + (1 - lam) * targets[::-1])


def mixup_lambda(rng, alpha):
    """Mixing weight ~ Beta(alpha, alpha) from a numpy RandomState; 1 (no mixing) at alpha 0."""
    return float(rng.beta(alpha, alpha)) if alpha > 0 else 1.0
