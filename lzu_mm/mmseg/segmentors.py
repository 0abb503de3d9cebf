"""LZU segmentor: an mmseg ``EncoderDecoder`` with features unzoomed after the neck (LZU §4, §5.2)."""
from typing import List, Optional

from mmseg.models.segmentors import EncoderDecoder
from mmseg.registry import MODELS
from torch import Tensor

from lzu_mm.common import LZUMixin


@MODELS.register_module()
class LZUEncoderDecoder(LZUMixin, EncoderDecoder):
    """``EncoderDecoder`` with LZU: zoom, backbone + neck, unzoom, then the heads.

    The backbone and neck run on the zoomed image; every map they return
    (each FPN level, ``[B, C, h_l, w_l]``) is unzoomed with the inverse of the
    piecewise-bilinear warp (:class:`lzu_mm.common.LZUMixin`), so the decode
    head and the auxiliary heads see features in the coordinates of the
    *un-warped* image of size ``img_shape`` (a uniform resize of the input).
    Losses compare them with the uniformly resized ``gt_seg_map``; at test
    time mmseg's post-processing resizes the logits from ``img_shape`` to
    ``ori_shape`` as usual. Works with any ``EncoderDecoder`` config whose
    ``extract_feat`` returns 2-D feature maps (PSPNet + FPN, FCN, DeepLabV3,
    ...).

    Where the zoom happens:

    * pipeline (the paper's fixed saliency): :class:`FixedSaliencyZoom`
      zooms the full-resolution image to the target size and records the LZ
      grid in ``metainfo['lzu_zoom']`` (add ``'lzu_zoom'`` to
      ``PackSegInputs.meta_keys``); ``lzu=None``.
    * model: ``lzu=dict(saliency=..., grid_shape=...)`` zooms each input
      image in place (same size) on the model's device.

    Args:
        lzu: model-side warp config (see :func:`lzu_mm.common.build_lzu_warp`)
            or ``None`` to rely on the pipeline's ``lzu_zoom`` record.
        *args, **kwargs: ``EncoderDecoder`` arguments.

    Raises:
        ValueError: ``test_cfg.mode`` is ``'slide'``: sliding-window inference
            would run each window with the warp of the whole image; LZU needs
            whole-image inference (``test_cfg=dict(mode='whole')``).

    An ``EncoderDecoder`` checkpoint loads with ``strict=True`` (LZU adds no
    parameters or persistent buffers).
    """

    def __init__(self, *args, lzu: Optional[dict] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.init_lzu(lzu)
        self._check_whole_inference()

    def _check_whole_inference(self) -> None:
        mode = (self.test_cfg or {}).get('mode', 'whole')
        if mode != 'whole':
            raise ValueError(f"{type(self).__name__} supports only whole-image inference, got test_cfg.mode={mode!r}: "
                             'sliding windows would be unzoomed with the warp of the whole zoomed image. '
                             "Set model.test_cfg=dict(mode='whole').")

    def inference(self, inputs: Tensor, batch_img_metas: List[dict]) -> Tensor:
        """Whole-image inference (see :class:`EncoderDecoder`); refuses ``mode='slide'`` (ValueError)."""
        self._check_whole_inference()
        return super().inference(inputs, batch_img_metas)

    def slide_inference(self, inputs: Tensor, batch_img_metas: List[dict]) -> Tensor:
        """Not supported with LZU: raises ``ValueError`` (use whole-image inference)."""
        raise ValueError(f'{type(self).__name__} does not support sliding-window inference: each window would be '
                         "unzoomed with the warp of the whole zoomed image. Use test_cfg=dict(mode='whole').")
