"""The paper's training recipe: LR scaling and schedule, label smoothing, mixup, weight-decay
groups, DropBlock ramp."""
import mxnet as mx

__all__ = ['scaled_lr', 'lr_schedule', 'poly_schedule', 'smooth_labels', 'mixup', 'exclude_from_weight_decay',
           'dropblock_prob_at', 'mixup_lambda']


def scaled_lr(base_lr, global_batch, reference_batch=256):
    """Linear scaling: ``base_lr`` is the rate for a global batch of ``reference_batch`` (the
    paper's 256 for ImageNet; GluonCV's 16 for segmentation)."""
    return base_lr * global_batch / float(reference_batch)


def lr_schedule(lr, epochs, iters_per_epoch, warmup_epochs=5):
    """Linear warm-up from 0 over ``warmup_epochs``, then cosine to 0, updated per iteration."""
    total = max(1, epochs * iters_per_epoch)
    warmup = min(warmup_epochs * iters_per_epoch, total - 1)
    return mx.lr_scheduler.CosineScheduler(total, base_lr=lr, final_lr=0, warmup_steps=warmup,
                                           warmup_begin_lr=0, warmup_mode='linear')


def poly_schedule(lr, epochs, iters_per_epoch, warmup_epochs=0, power=0.9):
    """Linear warm-up from 0 over ``warmup_epochs``, then lr * (1 - t/T)^power to 0, updated per
    iteration (the segmentation recipe of DeepLab and GluonCV)."""
    total = max(1, epochs * iters_per_epoch)
    warmup = min(warmup_epochs * iters_per_epoch, total - 1)
    return mx.lr_scheduler.PolyScheduler(total, base_lr=lr, pwr=power, final_lr=0,
                                         warmup_steps=warmup, warmup_begin_lr=0,
                                         warmup_mode='linear')


def smooth_labels(labels, classes, eps=0.1):
    """One-hot targets with ``eps`` spread uniformly: 1 - eps + eps/K on the label."""
    onehot = mx.nd.one_hot(labels, classes)
    return onehot * (1 - eps) + eps / classes


def mixup(data, targets, lam):
    """Mix each sample with the batch reversed: lam * x + (1 - lam) * x[::-1] (and targets)."""
    return (lam * data + (1 - lam) * data[::-1], lam * targets + (1 - lam) * targets[::-1])


def exclude_from_weight_decay(net):
    """No weight decay on BN gamma/beta and on biases; returns how many parameters were set."""
    n = 0
    for name, param in net.collect_params().items():
        if name.endswith(('gamma', 'beta', 'bias')):
            param.wd_mult = 0.0
            n += 1
    return n


def dropblock_prob_at(epoch, epochs, final_prob):
    """DropBlock rate ramped linearly from 0 at the first epoch to ``final_prob`` at the last."""
    if epochs <= 1:
        return final_prob
    return final_prob * epoch / (epochs - 1.0)


def mixup_lambda(rng, alpha):
    """Mixing weight ~ Beta(alpha, alpha) from a numpy RandomState; 1 (no mixing) at alpha 0."""
    return float(rng.beta(alpha, alpha)) if alpha > 0 else 1.0
