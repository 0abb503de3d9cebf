"""cityscapesscripts' evaluation of predictions of the centred square crop (LZU §5.2)."""
import os.path as osp
from typing import Sequence

import mmcv
import numpy as np
from mmengine.utils import mkdir_or_exist
from mmseg.evaluation import CityscapesMetric
from mmseg.registry import METRICS

from .transforms import center_square_box


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
