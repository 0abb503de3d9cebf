"""FOVEA: the whole detector in the zoomed image, boxes mapped back with the forward warp (LZU Table 1's baseline).

FOVEA (Thavamani, Li, Cebron, Ramanan, "FOVEA: Foveated Image Magnification
for Autonomous Navigation", ICCV 2021) zooms the image with a KDE saliency
and runs the unchanged detector on the zoomed image -- backbone, neck, heads,
NMS -- with no feature unzoom; the predicted boxes are mapped back to the
original image with the forward warp (the zoom samples original point
``T(u)`` at zoomed point ``u``, so a box corner found at ``u`` lies at
``T(u)``).

Training, against FOVEA's own recipe. FOVEA avoided inverting the warp: it
maps the *predicted* boxes back to the original image and computes the
box-regression loss there (LZU §2: for two-stage detectors, whose RPN has
its own loss, that needs "more complex modifications to the usual delta loss
formulation"). Here the *ground truth* is mapped into the zoomed image with
the exact inverse of the piecewise-bilinear warp
(:func:`lzu_mm.ops.zoom_boxes`, through :func:`lzu_mm.ops.invert_points`,
LZU §4.1), which FOVEA could not do, and every loss -- anchor assignment,
classification, regression, the RPN's and the RoI head's -- is the base
detector's own, in the zoomed frame. The two differ in how regression errors
are weighted (zoomed pixels here, original pixels in FOVEA: a box in a
magnified region counts more here) and agree on what the detector sees and
predicts; mapping back is identical. For a separable warp (FOVEA's, and the
configs') boxes map to boxes exactly; for a non-separable one to the box
enclosing the mapped outline.

Where the zoom happens is LZU's (:class:`lzu_mm.common.LZUMixin`): the
pipeline's ``FixedSaliencyZoom`` (FOVEA's fixed "KDE SD" saliency; flips
after the zoom are composed into the grid) or the model from the
full-resolution image (``ResizeWithSource`` and ``lzu=dict(...)``, any
positions including a learned ``saliency_net``). FOVEA's adaptive KDE
saliency (from the previous frame's detections) needs the run-time KDE of
the adaptive-saliency work, which a subclass supplies through
:meth:`lzu_mm.common.LZUMixin.lzu_source_warp`.
"""
from typing import List, Optional

import torch
from mmdet.models.detectors import FasterRCNN, RetinaNet
from mmdet.registry import MODELS
from mmdet.structures.bbox import scale_boxes

from lzu_mm.common import LZUMixin
from lzu_mm.common.model import LZUState
from lzu_mm.ops import unzoom_boxes, zoom_boxes

from .detectors import _LZUDetector


def _state_grid(state: LZUState, device):
    """``(grid [1 or B, h, w, 2] float64, separable, align_corners)`` of a zoom, or None if it is the identity."""
    if state.warp is not None:
        return state.warp.grid(device, torch.float64), state.warp.separable, state.warp.align_corners
    if state.grid is not None:
        return state.grid.to(device, torch.float64), state.separable, state.align_corners
    return None


def _map_batch(boxes: List[torch.Tensor], state: LZUState, to_zoomed: bool) -> List[torch.Tensor]:
    """Map each sample's ``[N_b, 4]`` boxes (its ``img_shape`` frame) into / out of its zoomed image, in one call."""
    if not boxes:
        return boxes
    found = _state_grid(state, boxes[0].device)
    if found is None or max(len(b) for b in boxes) == 0:
        return [b.clone() for b in boxes]
    grid, separable, align_corners = found
    most = max(len(b) for b in boxes)
    padded = boxes[0].new_zeros(len(boxes), most, 4)
    for k, b in enumerate(boxes):  # ragged -> padded (the mapping itself is batched)
        padded[k, :len(b)] = b
    fn = zoom_boxes if to_zoomed else unzoom_boxes
    mapped = fn(padded, grid, state.img_shapes, separable, align_corners)
    return [mapped[k, :len(b)].to(b.dtype) for k, b in enumerate(boxes)]


def _with_boxes(instances, boxes: torch.Tensor):
    """A shallow copy of ``instances`` whose ``bboxes`` (tensor or mmdet box type) hold ``boxes``."""
    out = instances.new()
    old = instances.bboxes
    out.bboxes = type(old)(boxes) if hasattr(old, 'tensor') else boxes
    return out


def _tensor(bboxes) -> torch.Tensor:
    return bboxes.tensor if hasattr(bboxes, 'tensor') else bboxes


class FOVEAMixin(LZUMixin):
    """Runs an MMDetection detector in the zoomed frame: ground truth zoomed in, predictions mapped back.

    Use as the first base of a detector class and call :meth:`init_lzu`
    (``lzu``: as for the LZU detectors; no feature unzoom happens), as the
    four lines of :mod:`lzu_mm.mmdet.detectors` with ``FOVEAMixin`` in place of
    ``LZUMixin``.
    """

    def extract_feat(self, inputs, *args, **kwargs):
        """The base detector's features of the zoomed batch, *not* unzoomed (the heads work in the zoomed frame)."""
        if self._lzu_state is None:  # called directly (e.g. by an analysis tool): zoom here
            inputs, _ = self.lzu_zoom(inputs, None)
        return super(LZUMixin, self).extract_feat(inputs, *args, **kwargs)

    def fovea_zoom_ground_truth(self, data_samples, state: Optional[LZUState] = None) -> list:
        """Copies of ``data_samples`` whose ``gt_instances`` / ``ignored_instances`` boxes lie in the zoomed image.

        Boxes are in the frame of the labels (``img_shape``, after flips) and
        are moved with the exact inverse of the batch's warp
        (:func:`lzu_mm.ops.zoom_boxes`); labels and everything else are shared.
        """
        state = state or self._lzu_state
        out = [s.new() for s in data_samples]
        for key in ('gt_instances', 'ignored_instances'):
            present = [k for k, s in enumerate(data_samples) if key in s and 'bboxes' in s.get(key)]
            if not present:
                continue
            mapped = _map_batch([_tensor(data_samples[k].get(key).bboxes) for k in present], state, True)
            for k, boxes in zip(present, mapped):
                setattr(out[k], key, _with_boxes(data_samples[k].get(key), boxes))
        return out

    def fovea_unzoom_predictions(self, results, state: Optional[LZUState] = None, rescale: bool = True):
        """Map the predicted boxes of ``results`` from the zoomed image to the original image, in place.

        The forward warp takes them to the ``img_shape`` frame
        (:func:`lzu_mm.ops.unzoom_boxes`); with ``rescale`` they are then
        divided by ``scale_factor`` as MMDetection's heads do.
        """
        state = state or self._lzu_state
        preds = [r.pred_instances for r in results]
        mapped = _map_batch([p.bboxes for p in preds], state, False)
        for result, pred, boxes in zip(results, preds, mapped):
            if rescale:
                sx, sy = result.metainfo['scale_factor'][:2]
                boxes = scale_boxes(boxes, [1 / sx, 1 / sy])
            pred.bboxes = boxes
        return results

    def loss(self, inputs, data_samples, **kwargs):
        """The base detector's losses in the zoomed frame, ground truth zoomed with the exact inverse."""
        with self.lzu_context(inputs, data_samples) as zoomed:
            state = self._lzu_state
            losses = super(LZUMixin, self).loss(zoomed, self.fovea_zoom_ground_truth(data_samples, state), **kwargs)
            losses.update(state.losses or {})
            return losses

    def predict(self, inputs, data_samples, rescale: bool = True, **kwargs):
        """Detect in the zoomed image; boxes come back in the original image (``rescale``) or the ``img_shape``
        frame."""
        with self.lzu_context(inputs, data_samples) as zoomed:
            state = self._lzu_state
            results = super(LZUMixin, self).predict(zoomed, data_samples, rescale=False, **kwargs)
        return self.fovea_unzoom_predictions(results, state, rescale)


@MODELS.register_module()
class FOVEARetinaNet(FOVEAMixin, _LZUDetector, RetinaNet):
    """RetinaNet run entirely on the zoomed image, boxes unwarped (FOVEA; see the module docstring).

    Args:
        lzu: ``None`` (the pipeline's ``FixedSaliencyZoom`` zooms) or a
            model-side warp / resampling config (:func:`lzu_mm.common.build_lzu_warp`).
        *args, **kwargs: ``RetinaNet`` arguments. A RetinaNet checkpoint loads with ``strict=True``.
    """


@MODELS.register_module()
class FOVEAFasterRCNN(FOVEAMixin, _LZUDetector, FasterRCNN):
    """Faster R-CNN run entirely on the zoomed image: RPN and RoI head trained on zoomed ground truth (FOVEA)."""


__all__ = ['FOVEAMixin', 'FOVEARetinaNet', 'FOVEAFasterRCNN']
