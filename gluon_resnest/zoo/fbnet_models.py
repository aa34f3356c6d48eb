"""FBNetV2-F1/F3/F4 as facebookresearch/mobile-vision defines them
(``mobile_cv/arch/fbnet_v2/fbnet_modeldef_cls_fbnetv2.py``), and SA-FBNetV2: the same networks
with each SE replaced by Split-Attention (the newer ResNeSt paper's Table 2). The paper does not
publish SA-FBNetV2's radix per block; the radices here are this project's choice (see each
model), so these three are reconstructions. No published MXNet weights exist for any of them."""
from .registry import register_model

__all__ = ['fbnetv2_f1', 'fbnetv2_f3', 'fbnetv2_f4', 'sa_fbnetv2_f1', 'sa_fbnetv2_f3',
           'sa_fbnetv2_f4']


def _stem_and_head(stem, first, body, head):
    return [[('conv_k3_hs', stem, 2, 1, 1)], [first]] + body + [[('ir_pool_hs', head, 1, 1, 6)]]


# stages 2-5 shared by F1 and F3 (F3 differs in its head width and input size)
_F1_BODY = [
    [('ir_k5', 24, 2, 1, 5.4566), ('ir_k5', 24, 1, 1, 4.7912)],
    [('ir_k5_sehsig', 32, 2, 1, 5.3501), ('ir_k5_sehsig', 24, 1, 1, 4.5379)],
    [('ir_k5_hs', 56, 2, 1, 5.7133), ('ir_k3_hs', 56, 1, 1, 4.1212),
     ('ir_k3_sehsig_hs', 56, 1, 1, 5.1246), ('skip', 80, 1, 1, 5.0333),
     ('ir_k5_sehsig_hs', 80, 1, 1, 4.5070), ('ir_k5_sehsig_hs', 80, 1, 1, 1.7712)],
    [('ir_k3_sehsig_hs', 144, 2, 1, 4.5685), ('ir_k5_sehsig_hs', 144, 1, 1, 5.8400),
     ('ir_k5_sehsig_hs', 144, 1, 1, 6.8754), ('skip', 224, 1, 1, 6.5245)],
]
F1 = _stem_and_head(8, ('ir_k5', 8, 1, 1, 1), _F1_BODY, 1600)
F3 = _stem_and_head(8, ('ir_k5', 8, 1, 1, 1), _F1_BODY, 1984)
F4 = _stem_and_head(16, ('ir_k3_hs', 16, 1, 1, 1), [
    [('ir_k5_hs', 24, 2, 1, 5.4566), ('ir_k5_hs', 24, 1, 1, 1.7912),
     ('ir_k5_hs', 24, 1, 1, 1.7912)],
    [('ir_k5_sehsig', 32, 2, 1, 5.3501), ('ir_k5_sehsig', 32, 1, 1, 3.5379),
     ('ir_k5_sehsig', 32, 1, 1, 4.5379), ('ir_k5_sehsig', 32, 1, 1, 4.5379)],
    [('ir_k5_hs', 64, 2, 1, 5.7133), ('ir_k3_hs', 64, 1, 1, 2.1212),
     ('skip', 64, 1, 1, 3.1246), ('ir_k3_hs', 104, 1, 1, 5.0333),
     ('ir_k5_sehsig_hs', 104, 1, 1, 2.5070), ('ir_k5_sehsig_hs', 104, 1, 1, 1.7712),
     ('ir_k5_sehsig_hs', 112, 1, 1, 3.7712)],
    [('ir_k3_sehsig_hs', 184, 2, 1, 5.5685), ('ir_k5_sehsig_hs', 184, 1, 1, 2.8400),
     ('ir_k5_sehsig_hs', 184, 1, 1, 4.8754), ('skip', 224, 1, 1, 6.5245)],
], 1984)


# SA-FBNetV2's radices (one per SE block, in table order): radix 4 on the first SE block, 2 on
# the others, the one rule that lands all three near Table 2's FLOPs (63.9 / 136.0 / 262.6 M
# against 65 / 136 / 262 M; radix 2 everywhere gives 62.2 / 132.1 / 257.3 M)
def _sa_radices(se_blocks):
    return (4,) + (2,) * (se_blocks - 1)


_SOURCE = dict(source='mobile-vision fbnet_modeldef_cls_fbnetv2.py; top-1: ResNeSt paper '
               '(newer version), Table 2', flops_convention='paper (conv MACs + pooling)')
_RECONSTRUCTION = dict(_SOURCE, reconstruction='radices chosen here, not published')


@register_model(trunk='fbnet', eval_crop=128, top1=68.3, params_m=5.999408, gflops=0.05641056,
                extra=_SOURCE)
def fbnetv2_f1():
    """FBNetV2-F1 (128 px): 5,999,408 conv weights and 56.41 MFLOPs as mobile-vision states."""
    return dict(stages=F1)


@register_model(trunk='fbnet', eval_crop=192, top1=73.2, params_m=6.899504, gflops=0.121824,
                extra=_SOURCE)
def fbnetv2_f3():
    """FBNetV2-F3 (192 px): 6,899,504 conv weights, 121.82 MFLOPs."""
    return dict(stages=F3)


@register_model(trunk='fbnet', eval_crop=224, top1=76.0, params_m=6.994824, gflops=0.238352,
                extra=_SOURCE)
def fbnetv2_f4():
    """FBNetV2-F4 (224 px): 6,994,824 conv weights, 238.35 MFLOPs."""
    return dict(stages=F4)


@register_model(trunk='fbnet', eval_crop=128, top1=69.9, gflops=0.065, extra=_RECONSTRUCTION)
def sa_fbnetv2_f1():
    """SA-FBNetV2-F1, a reconstruction: FBNetV2-F1 with its 8 SE blocks replaced by
    Split-Attention (radix 4 then 2; 63.9 MFLOPs, the paper's 65)."""
    return dict(stages=F1, radices=_sa_radices(8))


@register_model(trunk='fbnet', eval_crop=192, top1=74.1, gflops=0.136, extra=_RECONSTRUCTION)
def sa_fbnetv2_f3():
    """SA-FBNetV2-F3, a reconstruction (radix 4 then 2; 136.0 MFLOPs, the paper's 136)."""
    return dict(stages=F3, radices=_sa_radices(8))


@register_model(trunk='fbnet', eval_crop=224, top1=76.6, gflops=0.262, extra=_RECONSTRUCTION)
def sa_fbnetv2_f4():
    """SA-FBNetV2-F4, a reconstruction (10 SE blocks; radix 4 then 2; 262.6 MFLOPs, the
    paper's 262)."""
    return dict(stages=F4, radices=_sa_radices(10))
