"""Metrics checked against the reference implementations.

- :mod:`dsprep.eval.detection`: COCO AP/AR through pycocotools ``COCOeval``
  (ground truth from records of any format; boxes, masks, keypoints), PASCAL
  VOC07/VOC12 AP as the devkit's ``VOCevaldet.m`` computes it.
- :mod:`dsprep.eval.keypoints`: OKS sigmas and keypoint ground-truth fields.
- :mod:`dsprep.eval.segmentation`: confusion matrix, per-class IoU, mIoU,
  pixel accuracy, Cityscapes' 19 classes and iIoU.
- :mod:`dsprep.eval.classification`: top-1/top-5, mean per-class accuracy,
  confusion matrix, per-class precision/recall/F1.

No torch here; pycocotools, Pillow and matplotlib are imported where used.
"""
from .classification import ClassificationResult, classification_metrics
from .detection import DetectionResult, coco_evaluate, evaluate_detection, to_coco_gt, voc_ap, voc_evaluate
from .segmentation import SegmentationResult, confusion_matrix, evaluate_segmentation, segmentation_metrics

__all__ = [
    "ClassificationResult",
    "DetectionResult",
    "SegmentationResult",
    "classification_metrics",
    "coco_evaluate",
    "confusion_matrix",
    "evaluate_detection",
    "evaluate_segmentation",
    "segmentation_metrics",
    "to_coco_gt",
    "voc_ap",
    "voc_evaluate",
]
