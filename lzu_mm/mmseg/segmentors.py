"""LZU segmentors: an mmseg ``EncoderDecoder`` with features unzoomed after the neck (LZU §4, §5.2).

Any ``EncoderDecoder`` subclass (``CascadeEncoderDecoder``, ``DepthEstimator``,
a user's own) becomes an LZU segmentor from the config alone,
``model = dict(type='LZU', base='EncoderDecoder', lzu=None, **kwargs)``:
:func:`lzu_mm.common.factory.lzu_model_class` composes
:class:`LZUSegmentorMixin` with it. ``LZUEncoderDecoder`` and
``LZUCascadeEncoderDecoder`` are registered aliases of those classes.
Refused at build time: ``MultimodalEncoderDecoder`` (its ``encode_decode``
bypasses ``extract_feat`` and hands the raw image to the decode head),
``SegTTAModel`` (wrap its module), other ``BaseSegmentor`` subclasses, and
``test_cfg.mode='slide_flip'`` (``DepthEstimator``: flips the zoomed windows).
"""
from typing import List, Optional

from mmseg.models.segmentors import (BaseSegmentor, CascadeEncoderDecoder, EncoderDecoder, MultimodalEncoderDecoder,
                                     SegTTAModel)
from mmseg.registry import MODELS
from torch import Tensor

from lzu_mm.common import LZUMixin
from lzu_mm.common import factory


#: Backbones made of non-overlapping patches (a patch embedding with kernel == stride and no padding, then patch
#: merging or a single level resized by the neck): cell ``i`` of a stride-``s`` level covers pixels ``i s`` to
#: ``i s + s - 1``, so :class:`LZUEncoderDecoder` unzooms them with ``cell_centre='block'`` unless ``model.lzu`` sets
#: it. Every other backbone -- ResNets (dilated ones included), MiT's overlapping patch embeddings (7x7/4 padding 3,
#: 3x3/2 padding 1), HRNet, MobileNets -- has conv-aligned cells (``'conv'``, the default). Matched by class name.
BLOCK_CENTRED_BACKBONES = frozenset({'SwinTransformer', 'VisionTransformer', 'MAE', 'BEiT', 'PCPVT', 'SVT', 'ConvNeXt'})


def _cell_centre_default(lzu: Optional[dict], backbone) -> Optional[dict]:
    """``lzu`` with ``cell_centre='block'`` for a :data:`BLOCK_CENTRED_BACKBONES` backbone unless it sets one."""
    kind = backbone.get('type') if isinstance(backbone, dict) else None
    name = (kind.__name__ if isinstance(kind, type) else str(kind)).split('.')[-1]
    if name not in BLOCK_CENTRED_BACKBONES or (lzu or {}).get('cell_centre') is not None:
        return lzu
    return dict(lzu or {}, cell_centre='block')


class LZUSegmentorMixin(LZUMixin):
    """An ``EncoderDecoder`` (subclass) with LZU: zoom, backbone + neck, unzoom, then the heads.

    The backbone and neck run on the zoomed image; every map they return
    (each FPN level, ``[B, C, h_l, w_l]``) is unzoomed with the inverse of the
    piecewise-bilinear warp (:class:`lzu_mm.common.LZUMixin`), so the decode
    head and the auxiliary heads see features in the coordinates of the
    *un-warped* image of size ``img_shape`` (a uniform resize of the input).
    Losses compare them with the uniformly resized ``gt_seg_map``; at test
    time mmseg's post-processing resizes the logits from ``img_shape`` to
    ``ori_shape`` as usual. Works with any ``EncoderDecoder`` config whose
    ``extract_feat`` returns 2-D feature maps (tested: PSPNet + FPN, FCN,
    DeepLabV3, DeepLabV3+ on a dilated ResNet, UperNet, SegFormer).

    Where the zoom happens:

    * pipeline (the paper's fixed saliency): :class:`FixedSaliencyZoom`
      zooms the full-resolution image to the target size and records the LZ
      grid in ``metainfo['lzu_zoom']`` (add ``'lzu_zoom'`` to
      ``PackSegInputs.meta_keys``); ``lzu=None``.
    * model: ``lzu=dict(saliency=..., grid_shape=...)`` zooms each input
      image in place (same size) on the model's device.

    Feature cells are conv-aligned (``lzu.cell_centre='conv'``) except for
    the patch backbones of :data:`BLOCK_CENTRED_BACKBONES` (Swin, ViT, BEiT,
    MAE, Twins, ConvNeXt), which default to ``'block'``.

    Args:
        lzu: model-side warp config (see :func:`lzu_mm.common.build_lzu_warp`)
            or ``None`` to rely on the pipeline's ``lzu_zoom`` record.
        *args, **kwargs: ``EncoderDecoder`` arguments.

    Sliding-window inference (``test_cfg.mode='slide'``, the stock
    Cityscapes configs of SegFormer and others) zooms *each window* with the
    model's own warp (``model.lzu``) and unzooms it with the same warp: the
    windows are cut from the uniformly resized image (keep ``Resize`` in the
    test pipeline), exactly as ``EncoderDecoder`` cuts them, and the
    overlapping window logits are averaged as usual. This matches a training
    pipeline that crops (``RandomCrop``) and lets the model zoom each crop.
    A warp recorded by the pipeline (``FixedSaliencyZoom``, ``ResizeWithSource``)
    belongs to the whole image and cannot be cut into windows.

    Raises:
        ValueError: at build time, ``test_cfg.mode='slide'`` without a
            model-side warp (``lzu=None``: the pipeline would have to zoom,
            see above): set ``model.lzu=dict(saliency=..., grid_shape=...)``
            to zoom each window, or ``test_cfg=dict(mode='whole')``; at the
            forward, a sliding-window batch that carries ``lzu_zoom`` records.

    An ``EncoderDecoder`` checkpoint loads with ``strict=True`` (LZU adds no
    parameters or persistent buffers).
    """

    def __init__(self, *args, lzu: Optional[dict] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.init_lzu(_cell_centre_default(lzu, kwargs.get('backbone', args[0] if args else None)))
        self._lzu_per_window = False  # True while slide_inference zooms each window
        if (self.test_cfg or {}).get('mode') == 'slide_flip':
            raise ValueError(f"{type(self).__name__}: test_cfg.mode='slide_flip' flips windows of the zoomed image "
                             'inside the model, which the unzoom cannot follow; use '
                             "test_cfg=dict(mode='whole') or mode='slide' with a model-side warp (model.lzu)")
        if self._sliding() and (self.lzu_warp is None or self._lzu_needs_source() is not None):
            what = self._lzu_needs_source() or 'none (lzu=None: the pipeline would zoom the whole image)'
            raise ValueError(f"{type(self).__name__}: test_cfg.mode='slide' zooms each window with the model's own "
                             f'fixed warp, bilinearly, but the model has {what}; set '
                             "model.lzu=dict(saliency=..., grid_shape=...) and keep Resize in the test pipeline, "
                             "or use whole-image inference with the pipeline's zoom: model.test_cfg=dict(mode='whole')")

    def _sliding(self) -> bool:
        return (self.test_cfg or {}).get('mode', 'whole') == 'slide'

    def predict(self, inputs: Tensor, data_samples=None):
        """``EncoderDecoder.predict``; in slide mode each window is zoomed by :meth:`encode_decode`, not the image."""
        if not self._sliding():
            return super().predict(inputs, data_samples)
        return super(LZUMixin, self).predict(inputs, data_samples)  # the base predict, without the whole-image zoom

    def slide_inference(self, inputs: Tensor, batch_img_metas: List[dict]) -> Tensor:
        """``EncoderDecoder.slide_inference`` with a zoom per window (model-side warp; see the class docstring).

        Raises:
            ValueError: a sample carries an ``lzu_zoom`` record (the pipeline
                zoomed or handed over the whole image), or the model has no
                warp of its own.
        """
        if any(m.get('lzu_zoom') is not None for m in batch_img_metas) or self.lzu_warp is None:
            raise ValueError(f'{type(self).__name__}: sliding-window inference zooms each window with the model\'s '
                             'own warp (model.lzu), but the batch was zoomed by the pipeline (lzu_zoom records) or the '
                             "model has no warp: keep Resize in the test pipeline and set model.lzu, or use "
                             "test_cfg=dict(mode='whole')")
        self._lzu_per_window = True
        try:
            return super().slide_inference(inputs, batch_img_metas)
        finally:
            self._lzu_per_window = False

    def encode_decode(self, inputs: Tensor, batch_img_metas: List[dict]) -> Tensor:
        """``EncoderDecoder.encode_decode``; a window of :meth:`slide_inference` is zoomed here (all of it valid)."""
        if not self._lzu_per_window:
            return super().encode_decode(inputs, batch_img_metas)
        with self.lzu_context(inputs, None) as zoomed:
            return super().encode_decode(zoomed, batch_img_metas)


factory.register_family('mmseg', EncoderDecoder, (LZUSegmentorMixin, ))
factory.refuse(MultimodalEncoderDecoder,
               'its encode_decode runs the image encoder itself (not extract_feat) and hands the raw, zoomed image '
               'to the decode head, so nothing could be unzoomed')
factory.refuse(SegTTAModel,
               'SegTTAModel is a test-time-augmentation wrapper; make its module LZU (tta_model.module = the LZU '
               'model) and zoom each view with its own FixedSaliencyZoom (see lzu_mm.common.use_tta)')
factory.refuse(BaseSegmentor,
               'LZU supports the EncoderDecoder family of segmentors (the decode heads read the unzoomed features of '
               'extract_feat); this segmentor is not an EncoderDecoder')
factory.register_lzu(MODELS)

#: ``EncoderDecoder`` with LZU (PSPNet, FCN, DeepLabV3(+), UperNet, SegFormer, ...); see :class:`LZUSegmentorMixin`.
LZUEncoderDecoder = factory.register_alias(MODELS, EncoderDecoder)
#: ``CascadeEncoderDecoder`` (OCRNet, PointRend) with LZU: every decode head of the cascade sees unzoomed features.
LZUCascadeEncoderDecoder = factory.register_alias(MODELS, CascadeEncoderDecoder)
