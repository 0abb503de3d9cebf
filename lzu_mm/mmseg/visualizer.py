"""mmseg's ``SegLocalVisualizer`` for pipelines that crop the image before the model (:class:`CenterSquareCrop`).

mmseg's ``SegVisualizationHook`` and ``MMSegInferencer`` re-read the full image
from ``img_path`` (or take the input array) and hand it to the visualizer with
the data sample, whose ``pred_sem_seg`` / ``gt_sem_seg`` are in the frame of
``ori_shape``: for the paper's centred square crop (LZU §5.2) that is the
crop, not the full Cityscapes frame, and ``SegLocalVisualizer`` fails on the
size mismatch. :class:`LZUSegLocalVisualizer` cuts the image to the crop box
that :class:`CenterSquareCrop` records (``metainfo['crop_box']``) before
mmseg draws it.
"""
from typing import Optional

import numpy as np
from mmseg.registry import VISUALIZERS
from mmseg.structures import SegDataSample
from mmseg.visualization import SegLocalVisualizer


def crop_to_sample(image: np.ndarray, data_sample: Optional[SegDataSample]) -> np.ndarray:
    """The part of ``image`` that ``data_sample``'s maps describe.

    Args:
        image: ``[H, W, C]`` (or ``[H, W]``) image as read from the sample's
            ``img_path``, or already cropped.
        data_sample: its ``metainfo['crop_box'] = (x1, y1, x2, y2)`` (pixels,
            half-open) is cut from ``image`` unless ``image`` already has the
            box's size; without ``crop_box`` (or without a sample) ``image``
            is returned unchanged.

    Returns:
        ``image[y1:y2, x1:x2]`` (a view), or ``image``.

    Raises:
        ValueError: the box does not fit in ``image``; or the sample has no
            ``crop_box`` and its ``pred_sem_seg`` / ``gt_sem_seg`` differ in size
            from ``image`` (a crop not recorded in ``PackSegInputs.meta_keys``).
    """
    if data_sample is None:
        return image
    height, width = image.shape[:2]
    where = f' ({data_sample.img_path})' if 'img_path' in data_sample else ''
    box = data_sample.metainfo.get('crop_box', None)
    if box is None:
        for key in ('pred_sem_seg', 'gt_sem_seg'):
            if key in data_sample and tuple(data_sample.get(key).shape) != (height, width):
                h, w = data_sample.get(key).shape
                raise ValueError(f'LZUSegLocalVisualizer: {key} is {h}x{w} but the image is {height}x{width}'
                                 f"{where}; a pipeline that crops the image must record 'crop_box' "
                                 "(CenterSquareCrop does) and keep it in PackSegInputs.meta_keys")
        return image
    x1, y1, x2, y2 = (int(v) for v in box)
    if (height, width) == (y2 - y1, x2 - x1):
        return image  # already the crop
    if not (0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height):
        raise ValueError(f'LZUSegLocalVisualizer: crop_box {tuple(box)} does not fit in the {height}x{width} '
                         f'image{where}; expected the image the pipeline loaded')
    return image[y1:y2, x1:x2]


@VISUALIZERS.register_module()
class LZUSegLocalVisualizer(SegLocalVisualizer):
    """``SegLocalVisualizer`` that draws a cropped sample on the same crop of the full image it is given.

    Same arguments and drawing as mmseg's; ``add_datasample`` first cuts
    ``image`` with :func:`crop_to_sample` (``metainfo['crop_box']`` from
    :class:`lzu_mm.mmseg.CenterSquareCrop`), so mmseg's
    ``SegVisualizationHook`` (``tools/test.py --show`` / ``--show-dir``) and
    ``MMSegInferencer`` paint the predictions of the PSPNet configs (centred
    square crop of the Cityscapes frame) at the crop's size. Use it as the
    config's ``visualizer`` (``configs/lzu_pspnet/_base_``).
    """

    def add_datasample(self, name: str, image: np.ndarray, data_sample: Optional[SegDataSample] = None, *args,
                       **kwargs) -> None:
        super().add_datasample(name, crop_to_sample(image, data_sample), data_sample, *args, **kwargs)
