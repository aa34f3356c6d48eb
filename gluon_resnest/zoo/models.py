"""The model table. Architectures and figures: Zhang et al. 2020 (Tables 2, 4, 5) and the
official ResNeSt release; weight hashes: GluonCV's and the official release's model stores."""
from .registry import register_model

__all__ = ['resnest14', 'resnest26', 'resnest50', 'resnest101', 'resnest200', 'resnest269',
           'resnest50_fast_1s1x64d', 'resnest50_fast_2s1x64d', 'resnest50_fast_4s1x64d',
           'resnest50_fast_1s2x40d', 'resnest50_fast_2s2x40d', 'resnest50_fast_4s2x40d',
           'resnest50_fast_1s4x24d', 'resnetd50', 'resnest14_small',
           'resnest14_small_s1', 'resnetd14_small', 'resnest14_small_radix1',
           'resnest14_small_radix4']

# ResNet-D trunk with the paper's tweaks: deep stem, avg-pool shortcut, avd after the 3x3
_RESNEST = dict(radix=2, cardinality=1, bottleneck_width=64, deep_stem=True, avg_down=True,
                avd=True, avd_first=False)
# ablation models (paper Table 2): avd before the 3x3, 50 layers
_FAST = dict(_RESNEST, layers=(3, 4, 6, 3), stem_width=32, avd_first=True)


@register_model(sha1='7e0b0cae2fd7e9084d1e498b858af1429a6eb1cb', weights_from='gluoncv')
def resnest14():
    """ResNeSt-14 (2s1x64d)."""
    return dict(_RESNEST, layers=(1, 1, 1, 1), stem_width=32)


@register_model(sha1='364590740605b6a2b95f5bb77436d781a817436f', weights_from='gluoncv')
def resnest26():
    """ResNeSt-26 (2s1x64d)."""
    return dict(_RESNEST, layers=(2, 2, 2, 2), stem_width=32)


@register_model(eval_crop=224, top1=81.1, params_m=27.5, weights_from='gluoncv',
                sha1='bcfefe1dd1dd1ef5cfed5563123c1490ea37b42e', extra={'gflops': 5.39})
def resnest50():
    """ResNeSt-50 (2s1x64d)."""
    return dict(_RESNEST, layers=(3, 4, 6, 3), stem_width=32)


@register_model(eval_crop=256, top1=82.8, params_m=48.3, weights_from='gluoncv',
                sha1='5da943b3230f071525a98639945a6b3b3a45ac95')
def resnest101():
    """ResNeSt-101 (2s1x64d)."""
    return dict(_RESNEST, layers=(3, 4, 23, 3), stem_width=64)


# the paper trains ResNeSt-200 at 256 px and ResNeSt-269 at 320 px and evaluates them at 320 and
# 416 px
@register_model(eval_crop=320, train_crop=256, top1=83.9, params_m=70.2, weights_from='gluoncv',
                sha1='0c5d117df664ace220aa6fc2922c094bb079d381')
def resnest200():
    """ResNeSt-200 (2s1x64d), dropout 0.2 before the classifier."""
    return dict(_RESNEST, layers=(3, 24, 36, 3), stem_width=64, final_drop=0.2)


@register_model(eval_crop=416, train_crop=320, top1=84.5, params_m=111.0,
                weights_from='gluoncv',
                sha1='11ae7f5da2bcdbad05ba7e84f9b74383e717f3e3')
def resnest269():
    """ResNeSt-269 (2s1x64d), dropout 0.2 before the classifier."""
    return dict(_RESNEST, layers=(3, 30, 48, 8), stem_width=64, final_drop=0.2)


@register_model(top1=80.35, params_m=26.3, weights_from='resnest', extra={'gflops': 4.34},
                sha1='5e16dbe56f1fba8e1bc2faddd91f874bfbd74193')
def resnest50_fast_1s1x64d():
    """ResNeSt-50-fast 1s1x64d (radix 1: sigmoid gate)."""
    return dict(_FAST, radix=1, cardinality=1, bottleneck_width=64)


@register_model(top1=80.65, params_m=27.5, weights_from='resnest', extra={'gflops': 4.34},
                sha1='85eb779a5e313d74b5e5390dae02aa8082a0f469')
def resnest50_fast_2s1x64d():
    """ResNeSt-50-fast 2s1x64d."""
    return dict(_FAST, radix=2, cardinality=1, bottleneck_width=64)


@register_model(top1=80.90, params_m=31.9, weights_from='resnest', extra={'gflops': 4.35},
                sha1='3f215532c6d8e07a10df116309993d4479fc3e4b')
def resnest50_fast_4s1x64d():
    """ResNeSt-50-fast 4s1x64d."""
    return dict(_FAST, radix=4, cardinality=1, bottleneck_width=64)


@register_model(top1=80.72, params_m=25.9, weights_from='resnest', extra={'gflops': 4.38},
                sha1='af3514c2ec757a3a9666a75b82f142ed47d55bee')
def resnest50_fast_1s2x40d():
    """ResNeSt-50-fast 1s2x40d."""
    return dict(_FAST, radix=1, cardinality=2, bottleneck_width=40)


@register_model(top1=80.84, params_m=26.9, weights_from='resnest', extra={'gflops': 4.38},
                sha1='2db13245aa4967cf5e8617cb4911880dd41628a4')
def resnest50_fast_2s2x40d():
    """ResNeSt-50-fast 2s2x40d."""
    return dict(_FAST, radix=2, cardinality=2, bottleneck_width=40)


@register_model(top1=81.17, params_m=30.4, weights_from='resnest', extra={'gflops': 4.41},
                sha1='b24d515797832e02da4da9c8a15effd5e44cfb56')
def resnest50_fast_4s2x40d():
    """ResNeSt-50-fast 4s2x40d."""
    return dict(_FAST, radix=4, cardinality=2, bottleneck_width=40)


@register_model(top1=80.97, params_m=25.7, weights_from='resnest', extra={'gflops': 4.42},
                sha1='7318153ddb5e542a20cc6c58192f3c6209cff9ed')
def resnest50_fast_1s4x24d():
    """ResNeSt-50-fast 1s4x24d."""
    return dict(_FAST, radix=1, cardinality=4, bottleneck_width=24)


@register_model(params_m=25.6)
def resnetd50():
    """ResNet-D-50 baseline of the ablation (0s1x64d: plain 3x3 conv, no split attention)."""
    return dict(_FAST, radix=0, cardinality=1, bottleneck_width=64)


# 28-32 px images such as Fashion-MNIST: no stem max pool. Mean/std: Fashion-MNIST's.
_SMALL_IMAGES = dict(eval_crop=28, crop_ratio=1.0, mean=(0.286,) * 3, std=(0.353,) * 3)
_RESNEST14_SMALL = dict(_RESNEST, layers=(1, 1, 1, 1), stem_width=16, planes=(16, 32, 64, 128),
                        stem_pool=False)


@register_model(**_SMALL_IMAGES)
def resnest14_small():
    """ResNeSt-14 (2s1x64d) sized for 28-32 px images such as Fashion-MNIST: quarter-width
    stages and no stem max pool, so a 28 px input reaches the stages at 14/7/4/2 px (0.55M
    parameters, 12 MFLOPs at 28 px)."""
    return _RESNEST14_SMALL


@register_model(**_SMALL_IMAGES)
def resnest14_small_s1():
    """resnest14_small with a stride-1 stem: a 28 px input reaches the stages at 28/14/7/4 px
    (0.55M parameters, 45 MFLOPs at 28 px); the main job's longer setting."""
    return dict(_RESNEST14_SMALL, stem_stride=1)


@register_model(**_SMALL_IMAGES)
def resnetd14_small():
    """resnest14_small without split attention (radix 0: the plain ResNet-D 3x3 conv), the
    baseline of the same depth and widths."""
    return dict(_RESNEST14_SMALL, radix=0)


# the paper's radix ablation (Table 5: 0s1x64d ... 4s1x64d) on the small model: the split
# convolution has radix x the groups and outputs, so its multiply-adds stay those of radix 1


@register_model(**_SMALL_IMAGES)
def resnest14_small_radix1():
    """resnest14_small with radix 1 (a sigmoid gate per channel, SE-like attention)."""
    return dict(_RESNEST14_SMALL, radix=1)


@register_model(**_SMALL_IMAGES)
def resnest14_small_radix4():
    """resnest14_small with radix 4 (4 splits per cardinal group)."""
    return dict(_RESNEST14_SMALL, radix=4)
