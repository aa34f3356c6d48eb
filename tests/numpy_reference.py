"""Independent NumPy statement of the paper's Split-Attention (Zhang et al. 2020, Eq. 1-3),
written in the cardinality-major view: for every cardinal group k, its R splits U_{k,r} are
summed (Eq. 1), globally pooled (Eq. 2), passed through the group's dense layers, and fused with
a softmax over r (Eq. 3; a sigmoid when R = 1). Only the weights are taken from the Gluon block."""
import numpy as np


def conv2d(x, w, b=None, stride=1, pad=0, dilation=1, groups=1):
    n, cin, h, wd = x.shape
    cout, cin_g, kh, kw = w.shape
    assert cin == cin_g * groups
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh = (h + 2 * pad - dilation * (kh - 1) - 1) // stride + 1
    ow = (wd + 2 * pad - dilation * (kw - 1) - 1) // stride + 1
    out = np.zeros((n, cout, oh, ow), dtype=np.float64)
    cout_g = cout // groups
    for g in range(groups):
        xs = xp[:, g * cin_g:(g + 1) * cin_g]
        ws = w[g * cout_g:(g + 1) * cout_g]
        for i in range(kh):
            for j in range(kw):
                patch = xs[:, :, i * dilation:i * dilation + stride * (oh - 1) + 1:stride,
                           j * dilation:j * dilation + stride * (ow - 1) + 1:stride]
                out[:, g * cout_g:(g + 1) * cout_g] += np.einsum('nchw,oc->nohw', patch,
                                                                 ws[:, :, i, j])
    if b is not None:
        out += b.reshape(1, -1, 1, 1)
    return out


def batchnorm(x, gamma, beta, mean, var, eps=1e-5):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps) * gamma.reshape(shape) \
        + beta.reshape(shape)


def relu(x):
    return np.maximum(x, 0)


def split_attention(x, p, channels, radix, cardinality, stride=1, pad=1, dilation=1):
    """x: (N, Cin, H, W) float64; p: dict of NumPy weights named as in the Gluon block
    ('conv.weight', 'bn.gamma', ..., 'fc1.weight', 'fc1.bias', 'bn1.*', 'fc2.weight', 'fc2.bias').
    Split (k, r) is made by its own slice of the grouped convolution."""
    cg = channels // cardinality            # channels of one split of one cardinal group
    cin_g = x.shape[1] // (cardinality * radix)  # input channels of one split's convolution
    bn = [p['bn.' + k] for k in ('gamma', 'beta', 'running_mean', 'running_var')]
    u = []
    for r in range(radix):
        for k in range(cardinality):
            g = r * cardinality + k  # where split (k, r) lives in the radix-major weights
            rows = slice(g * cg, (g + 1) * cg)
            conv = conv2d(x[:, g * cin_g:(g + 1) * cin_g], p['conv.weight'][rows], None, stride,
                          pad, dilation)
            u.append(relu(batchnorm(conv, *[t[rows] for t in bn])))
    return fuse_splits(np.concatenate(u, axis=1), p, channels, radix, cardinality)


def fuse_splits(u, p, channels, radix, cardinality):
    """Eq. 1-3 on given splits: u (N, radix * channels, H, W), split r of cardinal group k in
    channels r * channels + k * channels / cardinality onwards (however they were made)."""
    n = u.shape[0]
    cg = channels // cardinality
    ig = p['fc1.weight'].shape[0] // cardinality
    bn1 = [p['bn1.' + k] for k in ('gamma', 'beta', 'running_mean', 'running_var')]
    groups_out = []
    for k in range(cardinality):
        splits = [u[:, r * channels + k * cg:r * channels + (k + 1) * cg] for r in range(radix)]
        u_hat = sum(splits)                                   # Eq. 1
        s = u_hat.mean(axis=(2, 3))                           # Eq. 2: (N, cg)
        irows = slice(k * ig, (k + 1) * ig)
        z = s @ p['fc1.weight'][irows, :, 0, 0].T + p['fc1.bias'][irows]
        z = relu(batchnorm(z, *[t[irows] for t in bn1]))
        orows = slice(k * radix * cg, (k + 1) * radix * cg)
        logits = (z @ p['fc2.weight'][orows, :, 0, 0].T + p['fc2.bias'][orows]).reshape(
            n, radix, cg)
        if radix > 1:                                         # Eq. 3: softmax over the splits
            e = np.exp(logits - logits.max(axis=1, keepdims=True))
            att = e / e.sum(axis=1, keepdims=True)
        else:
            att = 1 / (1 + np.exp(-logits))
        groups_out.append(sum(att[:, r, :, None, None] * splits[r] for r in range(radix)))
    return np.concatenate(groups_out, axis=1)                 # V = Concat{V^1, ..., V^K}
