"""The published weights of the dense-prediction models, as GluonCV's model store lists them
(sha1) with the paper's figures: the zoo lists every task's files (``list_models(task=...)``)
without importing the tasks, which build the networks the files fit."""
from .info import ModelInfo

__all__ = ['SEGMENTATION_WEIGHTS', 'DETECTION_WEIGHTS']


def _deeplab(backbone, sha1, miou):
    return ModelInfo(name='deeplab_%s_ade' % backbone, arch={}, eval_crop=480, sha1=sha1,
                     weights_from='gluoncv',
                     extra=dict(head='deeplabv3', backbone=backbone, dataset='ade20k',
                                classes=150, base_size=520, crop_size=480, miou=miou))


def _faster_rcnn(backbone, sha1, box_ap):
    return ModelInfo(name='faster_rcnn_fpn_syncbn_%s_coco' % backbone, arch={}, eval_crop=800,
                     sha1=sha1, weights_from='gluoncv',
                     extra=dict(detector='faster_rcnn_fpn', backbone=backbone, dataset='coco',
                                classes=80, box_ap=box_ap))


# DeepLabV3 on ADE20K: GluonCV's store and the paper's Table 7 (single-scale mIoU, %)
SEGMENTATION_WEIGHTS = (
    _deeplab('resnest50', 'a8312db6e30a464151580f2bda83479786455724', 45.12),
    _deeplab('resnest101', '6d05c630fb7acb38615f7f4d360fb90f47b25042', 46.91),
    _deeplab('resnest200', '9134a6f7d1399b549d5803d8faed3dfc74efc0d8', 48.36),
    _deeplab('resnest269', 'd45b33dedf4cca13b8147213c5360e30f93685bd', None))
# Faster R-CNN FPN on COCO: GluonCV 0.10.5's store and the paper's Table 5 (box mAP, %)
DETECTION_WEIGHTS = (
    _faster_rcnn('resnest50', '6df46961827647d418b11ffaf616a6a60d9dd16e', 42.33),
    _faster_rcnn('resnest101', 'baebfa1b7d7f56dd33a7687efea4b014736bd791', 44.72),
    _faster_rcnn('resnest269', 'b7d778f58921e459a6af200f6a323d6fe67069b9', None))
