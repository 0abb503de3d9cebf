"""LZU detectors: zoom the input, unzoom every FPN level (LZU §4, Figure 3).

Any MMDetection detector (a ``BaseDetector`` subclass registered in
``MODELS``, the user's own included) becomes an LZU detector from the config
alone, ``model = dict(type='LZU', base='ATSS', lzu=None, **atss_kwargs)``:
:func:`lzu_mm.common.factory.lzu_model_class` composes
:class:`LZUDetectorMixin` (:class:`lzu_mm.common.LZUMixin`) with the base.
``LZURetinaNet``, ``LZUFCOS`` and ``LZUFasterRCNN`` are registered aliases of
those classes. Refused at build time, with the reason
(:func:`lzu_mm.common.factory.refuse`): knowledge-distillation detectors
(``KnowledgeDistillationSingleStageDetector``, ``LAD``), semi-supervised
wrappers (``SemiBaseDetector``, ``SoftTeacher``), ``TridentFasterRCNN``,
``Detectron2Wrapper``, trackers and video models (``BaseMOTModel``),
``DetTTAModel``, and ``BoxInst`` zoomed by the pipeline.

The ``lzu`` argument: ``None`` (the pipeline's :class:`FixedSaliencyZoom`
zooms; the model unzooms with the warp recorded in each sample's
``lzu_zoom`` metainfo), or ``dict(saliency=<file or 'uniform'>,
grid_shape=(h, w), separable=True, attraction_fwhm=..., anti_crop=True)`` to
zoom model-side, on the device and differentiably, the images of a batch
that the pipeline resized uniformly. LZU adds no parameters: a checkpoint of
the base detector loads with ``strict=True``.

Instance masks, DETR positional encodings and padding masks need nothing
more: the heads see features in the coordinates of the un-warped, padded
batch, the same ``img_shape`` / ``batch_input_shape`` as the base detector.
"""
from typing import Optional

from mmdet.models.detectors import (BoxInst, FCOS, FasterRCNN, KnowledgeDistillationSingleStageDetector, RetinaNet,
                                    SemiBaseDetector, TridentFasterRCNN)
from mmdet.models.detectors.base import BaseDetector
from mmdet.models.mot import BaseMOTModel
from mmdet.models.test_time_augs import DetTTAModel
from mmdet.registry import MODELS

from lzu_mm.common import AdaptiveSaliencyMixin, LZUMixin
from lzu_mm.common import factory


class LZUDetectorMixin(LZUMixin):
    """:class:`lzu_mm.common.LZUMixin` for MMDetection detectors: takes ``lzu`` besides the detector's arguments.

    Raises:
        ValueError / FileNotFoundError: bad ``lzu`` config or saliency file.
        ValueError: ``BoxInst`` without a model-side warp (its data
            preprocessor computes colour affinities on the batch, which must
            be the un-warped image).
    """

    def __init__(self, *args, lzu: Optional[dict] = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.init_lzu(lzu)
        if isinstance(self, BoxInst) and self.lzu_warp is None:
            raise ValueError(f'{type(self).__name__}: BoxInstDataPreprocessor computes the pairwise colour '
                             'affinities of the input batch, which must be the un-warped image; zoom model-side: '
                             "model.lzu=dict(saliency=..., grid_shape=...) with a uniform Resize in the pipeline")


_LZUDetector = LZUDetectorMixin  # the name FOVEA and older code use

factory.register_family('mmdet', BaseDetector, (LZUDetectorMixin, ))
factory.refuse(KnowledgeDistillationSingleStageDetector,
               'its teacher_model runs extract_feat on the (zoomed) batch outside the LZU wrapper, so the teacher '
               'would see zoomed, not unzoomed, features; distil into an LZU student with a custom detector')
factory.refuse(SemiBaseDetector,
               'it is a semi-supervised wrapper around a student and a teacher detector; make the inner detector '
               "LZU instead (detector=dict(type='LZU', base=..., lzu=dict(saliency=..., grid_shape=...)), "
               'zooming model-side, since the unlabeled pipelines apply geometric transforms after their resize)')
factory.refuse(TridentFasterRCNN,
               'its TridentResNet stacks the branches along the batch axis ([num_branch * B, C, h, w]), which '
               'the per-image unzoom of a batch of B cannot follow')
factory.refuse(BaseMOTModel,
               'trackers and video instance segmentors take clips ([B, T, C, H, W]) and are not detectors; make '
               "their detector LZU (detector=dict(type='LZU', base=...))")
factory.refuse(DetTTAModel,
               'DetTTAModel is a test-time-augmentation wrapper; make its module LZU (tta_model.module = the LZU '
               "model) and zoom each view with its own FixedSaliencyZoom (see lzu_mm.common.use_tta)")
try:
    from mmdet.models.detectors import Detectron2Wrapper as D2WrapperDetector
except ImportError:  # pragma: no cover - older MMDetection
    D2WrapperDetector = None
if D2WrapperDetector is not None:
    factory.refuse(D2WrapperDetector, 'it runs a detectron2 model, whose feature extraction and preprocessing are '
                   "detectron2's, not an OpenMMLab extract_feat LZU can wrap")
factory.register_lzu(MODELS)

#: RetinaNet (ResNet + FPN) with LZU: every FPN level is unzoomed before the head (the paper's Table 1 detector).
LZURetinaNet = factory.register_alias(MODELS, RetinaNet)
#: FCOS with LZU (single-stage, anchor-free).
LZUFCOS = factory.register_alias(MODELS, FCOS)
#: Faster R-CNN with LZU (two-stage): the RPN and the RoI head see unzoomed FPN levels.
LZUFasterRCNN = factory.register_alias(MODELS, FasterRCNN)


@MODELS.register_module()
class LZUAdaptiveRetinaNet(AdaptiveSaliencyMixin, RetinaNet):
    """RetinaNet with LZU and an adaptive saliency per frame (LZU Table 1 "LZU, adaptive"; FOVEA KDE SI / LKDE / SC).

    Zooms the full-resolution image (``ResizeWithSource`` in the pipeline)
    with a saliency built from boxes: jittered ground truth (then, cascaded,
    its own detections) in training, the previous frame's detections online
    (:class:`lzu_mm.common.AdaptiveSaliencyMixin`); every FPN level is
    unzoomed with that frame's inverse.

    Args:
        lzu: the LZ grid (``grid_shape``, ``separable``, ``attraction_fwhm``,
            ``anti_crop``, ``align_corners``) and the fixed saliency
            (``saliency``: a file for the composite / fixed fallback, or
            ``'uniform'``); see :func:`lzu_mm.common.build_lzu_warp`.
        adaptive: see :meth:`lzu_mm.common.AdaptiveSaliencyMixin.init_adaptive`.
        *args, **kwargs: ``RetinaNet`` arguments.

    Raises:
        ValueError / FileNotFoundError: bad ``lzu`` / ``adaptive`` config or saliency file.
    """

    def __init__(self, *args, lzu: Optional[dict] = None, adaptive: Optional[dict] = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.init_lzu(lzu)
        self.init_adaptive(adaptive)
