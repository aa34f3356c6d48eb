"""Learning-rate scaling and schedules, and weight-decay groups, for every task."""
import mxnet as mx

__all__ = ['scaled_lr', 'lr_schedule', 'poly_schedule', 'step_schedule',
           'exclude_from_weight_decay']


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


def step_schedule(lr, epochs, iters_per_epoch, warmup_epochs=0, steps=(), factor=0.1,
                  warmup_iters=0, warmup_factor=1.0 / 3):
    """Linear warm-up from ``lr * warmup_factor`` over ``warmup_epochs`` epochs plus
    ``warmup_iters`` iterations, then ``lr`` multiplied by ``factor`` at each epoch of ``steps``
    (Detectron's and GluonCV's R-CNN recipe: 1/3, 500 iterations, steps at 8 and 11 of 12
    epochs), updated per iteration."""
    total = max(1, epochs * iters_per_epoch)
    warmup = min(int(warmup_epochs * iters_per_epoch) + warmup_iters, total - 1)
    at = [int(round(epoch * iters_per_epoch)) for epoch in steps]
    at = [i for i in at if 0 < i < total] or [total]  # MXNet wants at least one step
    return mx.lr_scheduler.MultiFactorScheduler(at, factor=factor, base_lr=lr,
                                                warmup_steps=warmup,
                                                warmup_begin_lr=lr * warmup_factor,
                                                warmup_mode='linear')


def exclude_from_weight_decay(net):
    """No weight decay on BN gamma/beta and on biases; returns how many parameters were set."""
    n = 0
    for name, param in net.collect_params().items():
        if name.endswith(('gamma', 'beta', 'bias')):
            param.wd_mult = 0.0
            n += 1
    return n
