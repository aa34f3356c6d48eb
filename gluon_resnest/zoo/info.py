"""What the zoo records of every model: :class:`ModelInfo`."""
from dataclasses import dataclass, field

__all__ = ['ModelInfo', 'IMAGENET_MEAN', 'IMAGENET_STD']

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelInfo:
    """What a user needs to build, feed and compare a model.

    ``input_size`` is the training crop (``train_crop``, default ``eval_crop``) and ``eval_crop``
    the evaluation crop, which is taken from an image whose short side was resized to
    ``eval_crop / crop_ratio``.
    """
    name: str
    arch: dict
    eval_crop: int = 224
    crop_ratio: float = 0.875
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    top1: float = None          # published ImageNet top-1 (%) at eval_crop
    params_m: float = None      # published parameter count (millions)
    sha1: str = None            # of the published .params file
    weights_from: str = None    # 'gluoncv' or 'resnest' (the official release)
    extra: dict = field(default_factory=dict)
    trunk: str = 'resnest'      # the family (TRUNKS) whose arguments ``arch`` holds
    gflops: float = None        # published multiply-adds (G) at eval_crop, convention in extra
    train_crop: int = None      # where the paper trains at another size than it evaluates

    @property
    def input_size(self):
        return self.train_crop or self.eval_crop

    @property
    def interpolation(self):
        # the official recipe resizes with bicubic above 256 px
        return 'bicubic' if self.eval_crop > 256 else 'bilinear'

    @property
    def resize(self):
        return int(round(self.eval_crop / self.crop_ratio))
