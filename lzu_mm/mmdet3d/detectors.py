"""LZU monocular 3D detectors: zoom the image, unzoom every FPN level (LZU §4, §5.3, Figure 3).

Under zooming the image is only resampled: the 3D head sees features in the
coordinates of the *uniformly* resized image, so camera intrinsics
(``cam2img``), ``centers_2d`` and 2D boxes are those of a uniform resize to
the target size (the pipeline's :class:`~lzu_mm.mmdet3d.FixedSaliencyZoom3D`
scales them as ``Resize3D`` does), depths stay as they are, and 3D boxes come
out in camera coordinates, in metres.

Any MMDetection3D :class:`SingleStageMono3DDetector` becomes an LZU detector
from the config alone (``model = dict(type='LZU', base='FCOSMono3D', ...)``,
:mod:`lzu_mm.common.factory`) or with :func:`lzu_mono3d_detector`; other 3D
detectors (point clouds, voxels, several views) are refused at build time; ``LZUFCOSMono3D`` (FCOS3D, the paper's
Table 5) and ``LZUSMOKEMono3D`` are registered. The ``lzu`` argument is that
of :class:`lzu_mm.common.LZUMixin`: ``None`` (the pipeline zoomed; the model
unzooms with the grid recorded in each sample's ``lzu_zoom`` metainfo), or
``dict(saliency=<file or 'uniform'>, grid_shape=(h, w), separable=True,
attraction_fwhm=..., anti_crop=True)`` to zoom model-side a batch that the
pipeline resized uniformly (e.g. after SMOKE's ``AffineResize``). LZU adds no
parameters: a checkpoint of the base detector loads with ``strict=True``.
"""
from typing import Optional

from mmdet3d.models.detectors import Base3DDetector, FCOSMono3D, SMOKEMono3D, SingleStageMono3DDetector
from mmdet3d.registry import MODELS
from torch import Tensor

from lzu_mm.common import LZUMixin
from lzu_mm.common import factory


class ResizedInputMono3DMixin:
    """Decode 3D boxes with the intrinsics of the (resized) network input.

    MMDetection3D's ``FCOSMono3DHead`` with ``rescale=True`` divides the
    predicted 2D centres by ``scale_factor`` (back to original-image pixels)
    and then back-projects them with ``cam2img`` -- which ``Resize3D`` has
    already scaled to the resized image. The 3D boxes are then wrong whenever
    the test image is resized (MMDetection3D's own nuScenes configs test at
    1x, ``scale_factor == 1``, so it never shows). This mixin runs the head
    with ``rescale=False`` -- every 3D quantity is decoded in the resized
    image with its own intrinsics, which is exact -- and then maps the 2D
    outputs (``pred_instances.bboxes``, ``[N, 4]`` pixels ``x1, y1, x2, y2``)
    back to original-image pixels by dividing by ``scale_factor`` ``(sx, sy)``
    when ``rescale`` is True. 3D boxes (camera coordinates, metres) do not
    depend on ``rescale``.
    """

    def predict(self, inputs, data_samples, rescale: bool = True, **kwargs):
        results = super().predict(inputs, data_samples, rescale=False, **kwargs)
        if rescale:
            for sample in results:
                pred = sample.get('pred_instances')
                if pred is None or 'bboxes' not in pred or len(pred) == 0:
                    continue
                sx, sy = (float(v) for v in sample.metainfo.get('scale_factor', (1., 1.))[:2])
                pred.bboxes = pred.bboxes / pred.bboxes.new_tensor([sx, sy, sx, sy])
        return results


@MODELS.register_module()
class ResizedFCOSMono3D(ResizedInputMono3DMixin, FCOSMono3D):
    """FCOS3D whose 3D boxes are decoded with the resized image's intrinsics (the uniform baselines).

    Same parameters, state dict and training as ``FCOSMono3D``; only the test
    decoding differs (see :class:`ResizedInputMono3DMixin`), which matters
    when the test pipeline resizes the image (0.25x / 0.5x / 0.75x).
    """


class LZUMono3DMixin(LZUMixin):
    """:class:`lzu_mm.common.LZUMixin` for MMDetection3D: the images are ``inputs['imgs']``.

    Args (of the composed class' ``__init__``):
        lzu: see the module docstring.
        *args, **kwargs: the base detector's arguments.

    Raises:
        ValueError / FileNotFoundError: bad ``lzu`` config or saliency file
            (at build time); a sample transformed after the pipeline's zoom in
            a way its record cannot describe, e.g. flipped without
            ``flip_direction`` in its metainfo (at the forward, see
            :func:`lzu_mm.common.model.post_zoom_flip`).
    """

    def __init__(self, *args, lzu: Optional[dict] = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.init_lzu(lzu)

    def _lzu_images(self, inputs: dict) -> Tensor:
        """The ``[B, C, H, W]`` image batch ``inputs['imgs']``."""
        if not isinstance(inputs, dict) or 'imgs' not in inputs:
            found = sorted(inputs) if isinstance(inputs, dict) else type(inputs).__name__
            raise ValueError(f"{type(self).__name__} expects batch inputs as a dict with 'imgs' "
                             f'[B, C, H, W] (from Det3DDataPreprocessor), got {found}')
        return inputs['imgs']

    def _lzu_replace_images(self, inputs: dict, images: Tensor) -> dict:
        """A shallow copy of ``inputs`` with ``'imgs'`` replaced (the caller's dict is not changed)."""
        return {**inputs, 'imgs': images}


def lzu_mono3d_detector(base: type, name: Optional[str] = None, register: bool = True) -> type:
    """The LZU variant of an MMDetection3D single-stage monocular 3D detector class (idempotent).

    The class is :func:`lzu_mm.common.factory.lzu_model_class` ``(base)``:
    ``(LZUMono3DMixin, ResizedInputMono3DMixin, base)``; it takes the base's
    arguments plus ``lzu``, zooms / unzooms around ``extract_feat`` and
    decodes 3D boxes with the resized image's intrinsics. Calling it again
    for the same ``base`` returns the same class (and registers nothing new).
    ``model = dict(type='LZU', base='PGDMono3D'...)`` in a config does the same.

    Args:
        base: a subclass of ``SingleStageMono3DDetector`` (``FCOSMono3D``,
            ``SMOKEMono3D``, ``PGD``'s ``FCOSMono3D``, ...).
        name: registered name, default ``'LZU' + base.__name__``.
        register: register it in MMDetection3D's ``MODELS`` under ``name``.

    Raises:
        TypeError: ``base`` is not a ``SingleStageMono3DDetector``.
        KeyError: ``name`` is registered to another class.
    """
    if not (isinstance(base, type) and issubclass(base, SingleStageMono3DDetector)):
        raise TypeError(f'base must be a SingleStageMono3DDetector subclass, got {base!r}')
    if register:
        return factory.register_alias(MODELS, base, name)
    return factory.lzu_model_class(base)


factory.register_family('mmdet3d', SingleStageMono3DDetector, (LZUMono3DMixin, ResizedInputMono3DMixin))
factory.refuse(Base3DDetector,
               'LZU zooms one camera image and unzooms 2-D image feature maps; point-cloud, voxel, multi-view and '
               'multi-modal 3D detectors (VoxelNet, CenterPoint, MVX, ImVoxelNet, DfM, ...) take points or several '
               'views, or lift the features to 3-D inside extract_feat; only SingleStageMono3DDetector subclasses '
               '(FCOS3D, PGD, SMOKE) are supported')
factory.register_lzu(MODELS)

#: FCOS3D (paper Table 5 / Table 2) with LZU.
LZUFCOSMono3D = lzu_mono3d_detector(FCOSMono3D)
#: SMOKE with LZU: the same mechanism on another single-stage monocular 3D detector.
LZUSMOKEMono3D = lzu_mono3d_detector(SMOKEMono3D)
