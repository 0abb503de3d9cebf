"""Segmentation metrics of the LZU Cityscapes experiment (LZU §5.2, Table 3).

* :class:`ClasswiseIoUMetric` -- mmseg's ``IoUMetric`` that also returns the
  per-class IoUs (Table 3's columns) as metrics, so they reach mmengine's JSON.
* :class:`CenterCropCityscapesMetric` -- cityscapesscripts' evaluation of
  predictions of the centred square crop.
"""
import os.path as osp
from typing import Dict, Sequence

import mmcv
import numpy as np
import torch
from mmengine.utils import mkdir_or_exist
from mmseg.evaluation import CityscapesMetric, IoUMetric
from mmseg.registry import METRICS

from .transforms import center_square_box


@METRICS.register_module()
class ClasswiseIoUMetric(IoUMetric):
    """mmseg's ``IoUMetric`` whose results also hold each class's IoU, ``IoU.<class name>`` in %.

    ``IoUMetric`` prints the per-class table to the log only; Table 3 of the
    paper reports the 19 per-class IoUs, and ``tools/reproduce`` collates
    from mmengine's JSON output (``<work_dir>/<timestamp>/<timestamp>.json``),
    not from the log. IoU = intersection / union over the whole evaluated set,
    as ``IoUMetric`` computes it (``nan`` for a class absent from both
    prediction and ground truth, unless ``nan_to_num`` is set). Arguments and
    the other results are ``IoUMetric``'s.
    """

    def compute_metrics(self, results: list) -> Dict[str, float]:
        metrics = super().compute_metrics(results)  # logs the per-class table
        if self.format_only or 'mIoU' not in metrics:
            return metrics
        intersect = sum(r[0] for r in results).double()
        union = sum(r[1] for r in results).double()
        iou = intersect / union
        if self.nan_to_num is not None:
            iou = torch.nan_to_num(iou, nan=self.nan_to_num)
        for name, value in zip(self.dataset_meta['classes'], iou.tolist()):
            metrics[f'IoU.{name}'] = round(value * 100, 2)
        return metrics


@METRICS.register_module()
class CenterCropCityscapesMetric(CityscapesMetric):
    """mmseg's ``CityscapesMetric`` (cityscapesscripts) for predictions of the centred square crop.

    ``CityscapesMetric`` compares each prediction (written as a labelIds PNG)
    with the full-frame ``*_gtFine_labelIds.png`` (and ``instanceIds``) file.
    The LZU segmentation configs predict the centred ``s x s`` crop only
    (:class:`CenterSquareCrop` sets ``ori_shape`` to it), so this metric
    writes the same centred crop of both ground-truth files into
    ``<output_dir>/gt`` and evaluates against those. Arguments and results
    are ``CityscapesMetric``'s (``averageScoreCategories``,
    ``averageScoreInstCategories``; the per-class IoUs are printed by
    cityscapesscripts).

    ``output_dir`` is made absolute when the metric is built (the parent
    class removes it when the metric is deleted, possibly from another
    working directory).

    Raises:
        ValueError: a prediction that is not a centred square crop of its
            ground-truth frame.
        FileNotFoundError: an unreadable ground-truth file.
    """

    def __init__(self, output_dir: str, **kwargs) -> None:
        super().__init__(output_dir=osp.abspath(output_dir), **kwargs)

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        start = len(self.results)
        super().process(data_batch, data_samples)
        if self.format_only:
            return
        gt_dir = osp.join(self.output_dir, 'gt')
        mkdir_or_exist(gt_dir)
        for k, sample in enumerate(data_samples):
            pred_png, gt_labels = self.results[start + k]
            ph, pw = sample['pred_sem_seg']['data'].shape[-2:]
            cropped = osp.join(gt_dir, osp.basename(gt_labels))
            pairs = ((gt_labels, cropped),
                     (gt_labels.replace('labelIds', 'instanceIds'), cropped.replace('labelIds', 'instanceIds')))
            for src, dst in pairs:
                gt = mmcv.imread(src, flag='unchanged')
                if gt is None:
                    raise FileNotFoundError(f'CenterCropCityscapesMetric: cannot read ground truth {src}')
                gh, gw = gt.shape[:2]
                if ph > gh or pw > gw or ph != pw:
                    raise ValueError(f'CenterCropCityscapesMetric: prediction {ph}x{pw} of {sample["img_path"]} is '
                                     f'not a centred square crop of its ground truth {src} ({gh}x{gw})')
                x1, y1 = center_square_box(gh, gw, ph)
                mmcv.imwrite(np.ascontiguousarray(gt[y1:y1 + ph, x1:x1 + pw]), dst)
            self.results[start + k] = (pred_png, cropped)
