"""Adaptive and learned saliency on video (LZU §5.1, Table 1 "LZU, adaptive"; FOVEA KDE SI / LKDE / KDE SC).

The warp of frame ``t`` is built from boxes: at test time the detections of
frame ``t - 1`` of the same sequence ("online"), in training the jittered
ground truth of frame ``t`` and, in the cascaded phase, the model's own
jittered detections of frame ``t`` (LZU §5.1, after FOVEA §4). Every frame gets
its own saliency, LZ grid and inverse, computed on the device; the image
zoomed is the full-resolution source that ``ResizeWithSource`` hands over, so
magnified regions use full-resolution pixels.

Pieces (all registered in mmengine's root registries, so every framework's
config finds them):

* :class:`BoxSaliency`: saliency from boxes (:func:`lzu_mm.ops.bbox_kde_saliency`),
  learned scales (LKDE), composite with a fixed saliency (KDE SC).
* :class:`AdaptiveSaliencyMixin`: an :class:`~lzu_mm.common.LZUMixin` whose
  :meth:`~lzu_mm.common.LZUMixin.lzu_source_warp` returns per-image grids
  ``[B, h, w, 2]`` from per-image saliency; the training phases; online
  prediction with a per-sequence memory of the last frame's detections and an
  audit record (``lzu_saliency`` metainfo of every prediction).
* :class:`SequenceSampler` (``DATA_SAMPLERS``): whole sequences per process,
  frames in order.
* :class:`OnlineTestLoop` / :class:`OnlineValLoop` (``LOOPS``): reset the
  memory, refuse a sampler that splits sequences.
* :class:`CascadeSaliencyHook` (``HOOKS``): switches training from jittered
  ground truth to the cascade at a given epoch, and logs the phase.

Frames. Boxes are turned into saliency in pixels of the *source* image (the
image before ``ResizeWithSource``, flipped as the model flips it before
zooming; for Argoverse-HD the 1920x1200 original, the frame FOVEA built its
saliency in), because the grid is applied to it as-is. Detections are kept in
original-image coordinates; the frame's ``homography_matrix`` (else its
``scale_factor`` and flip flags) maps them to the network-input frame, and
``src_shape / img_shape`` of its ``lzu_zoom`` record to the source.
"""
from collections import deque
from contextlib import contextmanager
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.dist import get_dist_info
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.registry import DATA_SAMPLERS, HOOKS, LOOPS
from mmengine.runner import TestLoop, ValLoop
from torch import Tensor, nn
from torch.utils.data import Sampler

from lzu_mm.ops import bbox_kde_saliency, load_saliency, saliency_to_grid
from lzu_mm.ops._validate import check_shape_2d
from .model import LZUMixin, _metainfo, _where

#: Keys of a model's ``adaptive`` config (:meth:`AdaptiveSaliencyMixin.init_adaptive`).
ADAPTIVE_KEYS = ('bandwidth_scale', 'amplitude_scale', 'learned', 'alpha', 'fallback', 'jitter_std', 'sequence_key',
                 'frame_key', 'max_frame_gap', 'record_saliency')
#: Training phases: where the boxes of a training frame's saliency come from.
PHASES = ('ground_truth', 'cascade')
_NO_BOXES = np.zeros((0, 4), dtype=np.float32)


def _number(value, name: str, low: float, inclusive: bool = True) -> float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value) and (
        value >= low if inclusive else value > low)
    if not ok:
        raise ValueError(f'adaptive.{name} must be a number {">=" if inclusive else ">"} {low}, got {value!r}')
    return float(value)


class BoxSaliency(nn.Module):
    """Per-image saliency from boxes: KDE (FOVEA "KDE SI"), learned KDE ("LKDE"), composite ("KDE SC").

    ``S = alpha * KDE(boxes) + (1 - alpha) * F`` with ``KDE`` FOVEA's
    box-to-saliency formula (:func:`lzu_mm.ops.bbox_kde_saliency`), ``F`` the
    fixed saliency normalised to sum 1, and the fallback map (uniform, or
    ``F``) for an image without boxes.

    Learned scales (``learned=True``, FOVEA's ``LearnedKDEGrid``): two
    parameters ``p_b``, ``p_a`` (``bandwidth``, ``amplitude``, initialised to
    0) give ``bandwidth_scale = |1 + p_b| * init_b + 0.1`` and
    ``amplitude_scale = |1 + p_a| * init_a + 0.1`` (positive whatever the
    parameters become). Their optimiser settings go through the config's
    ``paramwise_cfg.custom_keys`` (FOVEA: lr x 0.005, no weight decay).

    Args:
        grid_shape: ``(h, w)`` of the saliency (the LZ grid).
        bandwidth_scale: variance per pixel of box size (FOVEA: 64); the
            initial value when learned.
        amplitude_scale: weight of a box's normalised Gaussian against
            FOVEA's per-box uniform term (FOVEA: 1); initial value when learned.
        learned: learn both scales (LKDE).
        alpha: weight of the box saliency in the composite (FOVEA KDE SC:
            0.5); 1 (default) is the box saliency alone.
        fixed: ``[1, 1, h, w]`` fixed saliency (for ``alpha < 1`` or
            ``fallback='fixed'``).
        fallback: saliency of an image without boxes (first frames, empty
            detections): ``'uniform'`` (FOVEA) or ``'fixed'``.
        align_corners: grid point convention of the KDE (see
            :func:`~lzu_mm.ops.bbox_kde_saliency`).

    Raises:
        ValueError: bad numbers, ``alpha`` outside ``[0, 1]``, an unknown
            ``fallback``, or a composite / fixed fallback without ``fixed``.
    """

    def __init__(self,
                 grid_shape: Sequence[int],
                 bandwidth_scale: float = 64.,
                 amplitude_scale: float = 1.,
                 learned: bool = False,
                 alpha: float = 1.,
                 fixed: Optional[Tensor] = None,
                 fallback: str = 'uniform',
                 align_corners: bool = False):
        super().__init__()
        self.grid_shape = check_shape_2d(grid_shape, 'lzu.grid_shape')
        self.bandwidth_init = _number(bandwidth_scale, 'bandwidth_scale', 0, inclusive=False)
        self.amplitude_init = _number(amplitude_scale, 'amplitude_scale', 0)
        self.alpha = _number(alpha, 'alpha', 0)
        if self.alpha > 1:
            raise ValueError(f'adaptive.alpha must lie in [0, 1] (weight of the box saliency), got {alpha!r}')
        if fallback not in ('uniform', 'fixed'):
            raise ValueError(f"adaptive.fallback must be 'uniform' or 'fixed', got {fallback!r}")
        if fixed is None and (self.alpha < 1 or fallback == 'fixed'):
            raise ValueError('adaptive.alpha < 1 (composite saliency) and adaptive.fallback="fixed" need a fixed '
                             'saliency: set lzu.saliency to a saliency file')
        self.fallback = fallback
        self.learned = bool(learned)
        self.align_corners = bool(align_corners)
        if self.learned:
            self.bandwidth = nn.Parameter(torch.zeros(1))
            self.amplitude = nn.Parameter(torch.zeros(1))
        fixed = None if fixed is None else (fixed / fixed.sum()).to(torch.float64)
        self.register_buffer('fixed', fixed, persistent=False)

    def scales(self):
        """``(bandwidth_scale, amplitude_scale)``: numbers, or 1-element tensors when learned (FOVEA's form)."""
        if not self.learned:
            return self.bandwidth_init, self.amplitude_init
        return ((1 + self.bandwidth).abs() * self.bandwidth_init + 0.1,
                (1 + self.amplitude).abs() * self.amplitude_init + 0.1)

    def forward(self, boxes: Sequence[Optional[Tensor]], img_shapes, device=None) -> Tensor:
        """``[B, 1, h, w]`` float64 saliency, each summing to 1, from ``B`` box sets in pixels of ``img_shapes``."""
        device = torch.device(device) if device is not None else self.fixed.device if self.fixed is not None else None
        boxes = [torch.zeros(0, 4, device=device) if b is None else b for b in boxes]
        bandwidth, amplitude = self.scales()
        fallback = self.fixed if self.fallback == 'fixed' else None
        saliency = bbox_kde_saliency(boxes, img_shapes, self.grid_shape, bandwidth, amplitude, fallback=fallback,
                                     align_corners=self.align_corners, dtype=torch.float64)
        if self.alpha < 1:
            saliency = self.alpha * saliency + (1 - self.alpha) * self.fixed.to(saliency)
        return saliency

    def extra_repr(self) -> str:
        return (f'grid_shape={self.grid_shape}, bandwidth_scale={self.bandwidth_init}, amplitude_scale='
                f'{self.amplitude_init}, learned={self.learned}, alpha={self.alpha}, fallback={self.fallback!r}')


def _box_tensor(boxes) -> Tensor:
    """``[N, 4]`` tensor of a box structure (mmdet ``HorizontalBoxes`` or a tensor)."""
    return getattr(boxes, 'tensor', boxes)


def _apply_box_affine(boxes: Tensor, matrix: Tensor) -> Tensor:
    """Boxes ``[N, 4]`` mapped by an axis-aligned affine ``3 x 3`` ``matrix`` (scale, flip, translation)."""
    corners = boxes.reshape(-1, 2, 2)  # (x1, y1), (x2, y2)
    mapped = corners @ matrix[:2, :2].t() + matrix[:2, 2]
    return torch.cat([mapped.amin(1), mapped.amax(1)], 1)


def original_to_input(meta: dict, index: int = 0) -> np.ndarray:
    """The ``3 x 3`` map from original-image pixels to the network-input frame of a sample.

    MMDetection's ``homography_matrix`` when the metainfo has it (every
    resize and flip composed), else ``scale_factor`` followed by the flips of
    ``flip`` / ``flip_direction``. Only scales, flips and translations can be
    followed (boxes stay axis-aligned).

    Raises:
        ValueError: the map is not axis-aligned (a rotation or shear), or a
            flip without a direction (the message names the sample).
    """
    h, w = (float(v) for v in meta['img_shape'][:2])
    if meta.get('homography_matrix') is not None:
        matrix = np.asarray(meta['homography_matrix'], dtype=np.float64)
    else:
        sx, sy = (float(v) for v in np.broadcast_to(np.asarray(meta.get('scale_factor', (1., 1.)), float), (2, )))
        matrix = np.diag([sx, sy, 1.])
        if meta.get('flip', False):
            direction = meta.get('flip_direction')
            if direction not in ('horizontal', 'vertical', 'diagonal'):
                raise ValueError(f"{_where(meta, index)} is flipped but its metainfo has flip_direction={direction!r}; "
                                 "put 'flip_direction' (or 'homography_matrix') in the packing transform's meta_keys")
            flip = np.eye(3)
            if direction in ('horizontal', 'diagonal'):
                flip[0] = (-1, 0, w)
            if direction in ('vertical', 'diagonal'):
                flip[1] = (0, -1, h)
            matrix = flip @ matrix
    if abs(matrix[0, 1]) > 1e-9 or abs(matrix[1, 0]) > 1e-9 or np.abs(matrix[2] - (0, 0, 1)).max() > 1e-9:
        raise ValueError(f'{_where(meta, index)}: its homography_matrix {np.round(matrix, 4).tolist()} is not '
                         'axis-aligned; adaptive saliency follows resizes, flips and translations only')
    return matrix


def input_to_source(meta: dict) -> np.ndarray:
    """``3 x 3`` scale from the network-input frame to the pixels of the source record (``ResizeWithSource``)."""
    record = meta['lzu_zoom']
    (sh, sw), (h, w) = record['src_shape'][:2], record['img_shape'][:2]
    return np.diag([sw / w, sh / h, 1.])


def _light_copy(sample):
    """A new data sample with the same metainfo values (not deep-copied) and no data fields."""
    copy = type(sample)()
    for key, value in sample.metainfo_items():
        copy.set_field(value, key, field_type='metainfo')
    return copy


def _finite_detections(instances) -> Tuple[Tensor, Tensor]:
    """``(boxes [N, 4], scores [N])`` of predicted instances without NaN / Inf boxes or scores."""
    boxes = _box_tensor(instances.bboxes).detach()
    scores = instances.scores.detach() if 'scores' in instances else boxes.new_ones(len(boxes))
    keep = torch.isfinite(boxes).all(1) & torch.isfinite(scores)
    return boxes[keep], scores[keep]


class AdaptiveSaliencyMixin(LZUMixin):
    """An LZU model whose warp is built per image from boxes (use as the first base, call :meth:`init_adaptive`).

    * Training (``loss``): the saliency of each image comes from its
      ground-truth boxes (phase ``'ground_truth'``) or, in phase
      ``'cascade'``, from the model's own detections of the same image (a
      first pass zoomed with the fallback saliency, without gradient, in eval
      mode), in both cases with every box centre jittered by an unbiased
      Gaussian of ``jitter_std`` pixels of the source image per axis
      (LZU §5.1; FOVEA §4 and its ``bbox2sal``, whose ``2 j (randn - 0.5)``
      has standard deviation ``2 j`` and a bias of ``-j``: ``jitter_std=100``
      is FOVEA's ``j = 50`` without the bias). :class:`CascadeSaliencyHook`
      sets the phase.
    * Prediction (``predict``): online, frame ``t`` of a sequence is zoomed
      with the saliency of the final detections of frame ``t - 1`` (all kept
      detections, whatever their score; kept in original-image coordinates
      per sequence, mapped into frame ``t``'s source pixels); a sequence's
      first frame, a gap of more than ``max_frame_gap`` frames, or empty
      detections get the fallback. Frames of one sequence within a batch are
      run one after another (a batch gives the same result as single frames);
      frames of different sequences are batched. Every prediction's metainfo
      gets the audit record ``lzu_saliency = dict(source='previous_frame' or
      'fallback', reason, prev_img_id, prev_fid, bboxes [N, 4] original-image
      pixels of frame t - 1, scores [N], saliency [h, w] when
      record_saliency)``: exactly the detections that fed the saliency
      (NaN / Inf boxes or scores dropped; the KDE then clips boxes to the image
      and drops empty ones).
    * Anything else (``_forward``, ``extract_feat`` called directly): the
      fallback saliency.

    The batch must come from ``ResizeWithSource`` (the full-resolution image
    is zoomed); the metainfo needs ``lzu_zoom``, ``homography_matrix`` (or
    ``scale_factor``, ``flip``, ``flip_direction``) and, for prediction, the
    sequence and frame keys (Argoverse-HD: ``sid``, ``fid``).
    """

    def init_adaptive(self, adaptive: Optional[dict] = None) -> None:
        """Set up the per-image saliency; call after :meth:`init_lzu`.

        Args:
            adaptive: dict with optional keys ``bandwidth_scale`` (64.),
                ``amplitude_scale`` (1.), ``learned`` (False), ``alpha`` (1.),
                ``fallback`` (``'uniform'``), see :class:`BoxSaliency`;
                ``jitter_std`` (pixels of the source image, 100.),
                ``sequence_key`` (``'sid'``), ``frame_key`` (``'fid'``),
                ``max_frame_gap`` (1: frame ``t`` uses frame ``t - 1`` only),
                ``record_saliency`` (False: the audit record also holds the
                saliency map). The grid (``grid_shape``, ``separable``,
                ``attraction_fwhm``, ``anti_crop``, ``align_corners``) and the
                fixed saliency (``saliency``: a file, or ``'uniform'``) are the
                model's ``lzu`` config.

        Raises:
            ValueError: unknown keys or bad values, or no ``lzu`` warp config.
        """
        cfg = dict(adaptive or {})
        unknown = set(cfg) - set(ADAPTIVE_KEYS)
        if unknown:
            raise ValueError(f'adaptive has unknown keys {sorted(unknown)}; expected a subset of {ADAPTIVE_KEYS}')
        if getattr(self, '_lzu_missing', None) is not None:  # adaptive models need their fixed saliency at build
            raise self._lzu_missing
        if self.lzu_warp is None:
            raise ValueError(f'{type(self).__name__} needs lzu=dict(grid_shape=..., separable=..., '
                             "attraction_fwhm=..., anti_crop=..., saliency='uniform' or a fixed saliency file) for its "
                             'warps')
        lzu = self.lzu_cfg
        source = lzu.get('saliency', 'uniform')
        fixed = None if source in (None, 'uniform') else load_saliency(source, lzu['grid_shape'])
        self.lzu_saliency = BoxSaliency(lzu['grid_shape'], cfg.get('bandwidth_scale', 64.),
                                        cfg.get('amplitude_scale', 1.), cfg.get('learned', False),
                                        cfg.get('alpha', 1.), fixed, cfg.get('fallback', 'uniform'),
                                        lzu.get('align_corners', False))
        self._lzu_attraction_fwhm = lzu.get('attraction_fwhm', 13.)
        self._lzu_anti_crop = bool(lzu.get('anti_crop', True))
        self._lzu_jitter_std = _number(cfg.get('jitter_std', 100.), 'jitter_std', 0)
        self._lzu_sequence_key = cfg.get('sequence_key', 'sid')
        self._lzu_frame_key = cfg.get('frame_key', 'fid')
        gap = cfg.get('max_frame_gap', 1)
        if not (isinstance(gap, int) and not isinstance(gap, bool) and gap >= 1):
            raise ValueError(f'adaptive.max_frame_gap must be an int >= 1, got {gap!r}')
        self._lzu_max_gap = gap
        self._lzu_record_saliency = bool(cfg.get('record_saliency', False))
        self.lzu_saliency_phase = 'ground_truth'
        self._lzu_boxes: Optional[List[Optional[Tensor]]] = None  # per image, source pixels, for the next zoom
        self._lzu_last_saliency: Optional[Tensor] = None
        self._lzu_online: Dict[object, dict] = {}  # sequence -> last frame's detections (original pixels)

    # ------------------------------------------------------------- phases
    def set_saliency_phase(self, phase: str) -> None:
        """Where training boxes come from: ``'ground_truth'`` (jittered GT) or ``'cascade'`` (own detections)."""
        if phase not in PHASES:
            raise ValueError(f'saliency phase must be one of {PHASES}, got {phase!r}')
        self.lzu_saliency_phase = phase

    def lzu_online_reset(self) -> None:
        """Forget every sequence's last detections (the online loops call it before a run)."""
        self._lzu_online = {}

    # -------------------------------------------------------------- warps
    @contextmanager
    def lzu_saliency_boxes(self, boxes: List[Optional[Tensor]]):
        """Within the context, the next zooms build each image's saliency from ``boxes``.

        Args:
            boxes: one entry per image of the batch: ``[N, 4]`` ``(x1, y1, x2,
                y2)`` in pixels of its source image (the image
                ``ResizeWithSource`` recorded, after the model's flips), or
                None for the fallback.
        """
        previous, self._lzu_boxes = self._lzu_boxes, boxes
        try:
            yield
        finally:
            self._lzu_boxes = previous

    def lzu_source_warp(self, sources: Tensor, data_samples) -> Tensor:
        """Per-image LZ grids ``[B, h, w, 2]`` (float64) from the boxes set for this batch (else the fallback).

        The saliency is built in pixels of each source image (``src_shape``
        of its record); gradients reach learned scales through the grid.
        """
        metas = [_metainfo(s) for s in data_samples]
        boxes = self._lzu_boxes if self._lzu_boxes is not None else [None] * len(metas)
        src_shapes = [tuple(m['lzu_zoom']['src_shape'][:2]) for m in metas]
        saliency = self.lzu_saliency(boxes, src_shapes, sources.device)
        self._lzu_last_saliency = saliency.detach()
        return saliency_to_grid(saliency, self._lzu_separable, self._lzu_attraction_fwhm, self._lzu_anti_crop)

    def _check_sources(self, metas: Sequence[dict]) -> None:
        for i, meta in enumerate(metas):
            record = meta.get('lzu_zoom')
            if record is None or record.get('mode') != 'source':
                raise ValueError(f'{type(self).__name__} zooms the full-resolution image with a saliency per image, '
                                 f'but {_where(meta, i)} has no ResizeWithSource record: use ResizeWithSource (not '
                                 "Resize or FixedSaliencyZoom) in the pipeline and put 'lzu_zoom' in meta_keys")

    def _to_source(self, boxes: Tensor, meta: dict, index: int, original: bool) -> Tensor:
        """Boxes in the network-input frame (or original pixels with ``original``) -> source pixels."""
        matrix = input_to_source(meta)
        if original:
            matrix = matrix @ original_to_input(meta, index)
        return _apply_box_affine(boxes, boxes.new_tensor(matrix))

    def _jitter(self, boxes: Tensor) -> Tensor:
        """Centres shifted by an unbiased Gaussian of ``jitter_std`` pixels per axis (sizes kept)."""
        if self._lzu_jitter_std == 0 or not len(boxes):
            return boxes
        shift = torch.randn(len(boxes), 2, device=boxes.device, dtype=boxes.dtype) * self._lzu_jitter_std
        return boxes + shift.repeat(1, 2)

    # ------------------------------------------------------------ training
    @torch.no_grad()
    def _own_detections(self, inputs, data_samples) -> List[Tensor]:
        """The model's detections of the batch (network-input frame), zoomed with the fallback, eval mode."""
        copies = [_light_copy(s) for s in data_samples]  # the zoom takes the source image out of the metainfo
        training = self.training
        self.train(False)
        try:
            with self.lzu_saliency_boxes([None] * len(copies)):
                results = LZUMixin.predict(self, inputs, copies, rescale=False)
        finally:
            self.train(training)
        return [_finite_detections(r.pred_instances)[0] for r in results]

    def loss(self, inputs, data_samples, **kwargs):
        """Losses with each image zoomed by the saliency of its jittered GT boxes (or, cascaded, own detections)."""
        metas = [_metainfo(s) for s in data_samples]
        self._check_sources(metas)
        if self.lzu_saliency_phase == 'cascade':
            found = self._own_detections(inputs, data_samples)
        else:
            found = [_box_tensor(s.gt_instances.bboxes) if 'gt_instances' in s else None for s in data_samples]
        boxes = []
        for i, (meta, b) in enumerate(zip(metas, found)):
            if b is None or not len(b):
                boxes.append(None)
                continue
            boxes.append(self._jitter(self._to_source(b.detach().double(), meta, i, original=False)))
        with self.lzu_saliency_boxes(boxes):
            return super().loss(inputs, data_samples, **kwargs)

    # -------------------------------------------------------------- online
    def _frame_key(self, meta: dict, index: int):
        missing = [k for k in (self._lzu_sequence_key, self._lzu_frame_key) if meta.get(k) is None]
        if missing:
            raise ValueError(f'{_where(meta, index)} has no {missing} in its metainfo: online adaptive saliency needs '
                             f'the sequence and frame of every sample; add them to the packing transform\'s meta_keys '
                             f'(or set adaptive.sequence_key / frame_key)')
        return meta[self._lzu_sequence_key], int(meta[self._lzu_frame_key])

    def _previous(self, key, meta: dict, index: int, device) -> Tuple[Optional[Tensor], dict]:
        """Source-pixel boxes of frame t - 1 of the sample's sequence (or None) and the audit record."""
        sequence, fid = key
        memory = self._lzu_online.get(sequence)
        audit = dict(source='fallback', reason=None, prev_img_id=None, prev_fid=None, bboxes=_NO_BOXES,
                     scores=np.zeros(0, np.float32))
        if memory is None:
            audit['reason'] = 'first frame of its sequence'
            return None, audit
        gap = fid - memory['fid']
        if not 0 < gap <= self._lzu_max_gap:
            audit['reason'] = (f'frame gap {gap} to the last predicted frame {memory["fid"]} of the sequence '
                               f'(max_frame_gap={self._lzu_max_gap})')
            return None, audit
        boxes, scores = memory['bboxes'], memory['scores']
        audit.update(source='previous_frame', prev_img_id=memory['img_id'], prev_fid=memory['fid'],
                     bboxes=boxes.cpu().numpy().astype(np.float32), scores=scores.cpu().numpy().astype(np.float32))
        if not len(boxes):
            audit['reason'] = 'no detections in the previous frame'
            return None, audit
        return self._to_source(boxes.to(device, torch.float64), meta, index, original=True), audit

    def _remember(self, key, result, meta: dict, index: int, rescale: bool) -> None:
        """Keep a frame's final detections in original-image pixels for the next frame of its sequence."""
        boxes, scores = _finite_detections(result.pred_instances)
        matrix = np.linalg.inv(original_to_input(meta, index))  # network-input frame -> original pixels
        if rescale:  # mmdet's rescale divided by scale_factor only (a flipped sample stays flipped): undo it first
            sx, sy = (float(v) for v in np.broadcast_to(np.asarray(meta.get('scale_factor', (1., 1.)), float), (2, )))
            matrix = matrix @ np.diag([sx, sy, 1.])
        boxes = _apply_box_affine(boxes.double(), boxes.new_tensor(matrix, dtype=torch.float64))
        self._lzu_online[key[0]] = dict(fid=key[1], img_id=meta.get('img_id'), bboxes=boxes, scores=scores)

    def predict(self, inputs, data_samples, rescale: bool = True, **kwargs):
        """Online prediction: each frame zoomed with the saliency of its sequence's previous frame (see class doc)."""
        metas = [_metainfo(s) for s in data_samples]
        self._check_sources(metas)
        keys = [self._frame_key(m, i) for i, m in enumerate(metas)]
        for i, meta in enumerate(metas):
            original_to_input(meta, i)  # refuse what cannot be followed at the first frame, not mid-sequence
        images = self._lzu_images(inputs)
        outputs = [None] * len(data_samples)
        for wave in _waves(keys):
            sub = inputs if len(wave) == len(data_samples) else self._lzu_replace_images(inputs, images[wave])
            previous = [self._previous(keys[i], metas[i], i, images.device) for i in wave]
            with self.lzu_saliency_boxes([p[0] for p in previous]):
                results = super().predict(sub, [data_samples[i] for i in wave], rescale=rescale, **kwargs)
            for k, (i, result, (_, audit)) in enumerate(zip(wave, results, previous)):
                if self._lzu_record_saliency:
                    audit['saliency'] = self._lzu_last_saliency[k, 0].to('cpu', torch.float32).numpy()
                result.set_metainfo(dict(lzu_saliency=audit))
                self._remember(keys[i], result, metas[i], i, rescale)
                outputs[i] = result
        return outputs


def _waves(keys: Sequence[tuple]) -> List[List[int]]:
    """Batch positions grouped so that no group holds two frames of one sequence; groups in frame order.

    The ``k``-th frame (by frame index) of every sequence in the batch goes to
    group ``k``: group ``k`` only needs detections of groups before it.
    """
    rank = {}
    order = sorted(range(len(keys)), key=lambda i: (keys[i][1], i))
    waves: List[List[int]] = []
    for i in order:
        k = rank.get(keys[i][0], 0)
        rank[keys[i][0]] = k + 1
        if k == len(waves):
            waves.append([])
        waves[k].append(i)
    return [sorted(w) for w in waves]


# ---------------------------------------------------------------------------------------------------- data & loops
@DATA_SAMPLERS.register_module()
class SequenceSampler(Sampler):
    """Whole sequences per process, frames in order: the sampler of online (previous-frame) evaluation.

    Sequences (samples sharing ``data_info[sequence_key]``) are never split:
    each goes whole to one process (largest first, to the process with the
    fewest frames so far; deterministic), and its frames come in increasing
    ``frame_key``. With ``interleave=k`` a process runs ``k`` of its sequences
    side by side, one frame of each in turn (set it to the dataloader's
    ``batch_size`` so that a batch holds frames of different sequences, which
    the model runs together); ``1`` runs them one after another.

    Args:
        dataset: the dataset (``get_data_info(i)`` must give both keys).
        sequence_key: data-info key of the sequence (Argoverse-HD: ``'sid'``).
        frame_key: data-info key of the frame index (``'fid'``).
        interleave: sequences per process run side by side (>= 1).
        seed: unused (the order is deterministic); accepted as mmengine passes it.

    Raises:
        ValueError: ``interleave < 1``, or a sample without either key (naming it).
    """

    def __init__(self, dataset, sequence_key: str = 'sid', frame_key: str = 'fid', interleave: int = 1,
                 seed: Optional[int] = None):
        if not (isinstance(interleave, int) and interleave >= 1):
            raise ValueError(f'SequenceSampler.interleave must be an int >= 1, got {interleave!r}')
        self.dataset = dataset
        self.rank, self.world_size = get_dist_info()
        sequences: Dict[object, list] = {}
        for index in range(len(dataset)):
            info = dataset.get_data_info(index)
            missing = [k for k in (sequence_key, frame_key) if info.get(k) is None]
            if missing:
                raise ValueError(f'SequenceSampler: sample {index} of {type(dataset).__name__} has no {missing} in its '
                                 f'data info (sequence_key={sequence_key!r}, frame_key={frame_key!r})')
            sequences.setdefault(info[sequence_key], []).append((int(info[frame_key]), index))
        ordered = [[i for _, i in sorted(frames)] for frames in sequences.values()]
        loads = [0] * self.world_size
        mine = []
        for frames in sorted(ordered, key=lambda f: (-len(f), min(f))):
            target = min(range(self.world_size), key=lambda r: (loads[r], r))
            loads[target] += len(frames)
            if target == self.rank:
                mine.append(frames)
        mine.sort(key=min)  # in the order the dataset lists them
        self.num_sequences = len(mine)
        self.indices = _interleave(mine, interleave)

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)

    def set_epoch(self, epoch: int) -> None:
        """Nothing to do: the order does not depend on the epoch."""


def _interleave(sequences: List[List[int]], k: int) -> List[int]:
    """Round-robin over ``k`` sequences at a time; a finished one is replaced by the next sequence."""
    active = [deque(s) for s in sequences[:k]]
    pending = deque(deque(s) for s in sequences[k:])
    order = []
    while active:
        following = []
        for frames in active:
            order.append(frames.popleft())
            if frames:
                following.append(frames)
            elif pending:
                following.append(pending.popleft())
        active = following
    return order


class _OnlineLoop:
    """Checks and reset shared by the online loops."""
    _loader = 'test_dataloader'

    def _prepare_online(self) -> None:
        model = self.runner.model.module if is_model_wrapper(self.runner.model) else self.runner.model
        if not hasattr(model, 'lzu_online_reset'):
            raise TypeError(f'{type(self).__name__} runs frames in sequence order for a model with online adaptive '
                            f'saliency (e.g. LZUAdaptiveRetinaNet), got {type(model).__name__}')
        sampler = getattr(self.dataloader, 'sampler', None)
        if not isinstance(sampler, SequenceSampler):
            raise ValueError(f"{type(self).__name__} needs {self._loader}.sampler=dict(type='SequenceSampler') (whole "
                             f'sequences per process, frames in order), got {type(sampler).__name__}')
        model.lzu_online_reset()
        rank, world = get_dist_info()
        print_log(f'{type(self).__name__}: {sampler.num_sequences} sequences, {len(sampler)} frames on process '
                  f'{rank} of {world}; frame t is zoomed with the saliency of frame t-1\'s detections',
                  logger='current')


@LOOPS.register_module()
class OnlineTestLoop(_OnlineLoop, TestLoop):
    """mmengine's ``TestLoop`` for online adaptive saliency: memory reset, :class:`SequenceSampler` required."""

    def run(self) -> dict:
        self._prepare_online()
        return super().run()


@LOOPS.register_module()
class OnlineValLoop(_OnlineLoop, ValLoop):
    """mmengine's ``ValLoop`` for online adaptive saliency: memory reset, :class:`SequenceSampler` required."""
    _loader = 'val_dataloader'

    def run(self) -> dict:
        self._prepare_online()
        return super().run()


@HOOKS.register_module()
class CascadeSaliencyHook(Hook):
    """Train with jittered ground truth, then from ``begin_epoch`` on with the cascade (LZU §5.1).

    Before every training epoch it sets the model's saliency phase
    (:meth:`AdaptiveSaliencyMixin.set_saliency_phase`) and logs it, so the
    switch is visible in the log (``Epoch k: adaptive saliency from ...``).
    The paper uses the cascade for the last epoch (``begin_epoch=3`` of 3);
    ``begin_epoch=None`` never switches (the "w/o cascade" ablation).

    Args:
        begin_epoch: first epoch (1-based, as the log's ``Epoch(train) [k]``)
            of the cascaded phase, or None.

    Raises:
        ValueError: ``begin_epoch`` not None or an int >= 1.
        TypeError: (at training) the model has no saliency phases.
    """
    priority = 'NORMAL'

    def __init__(self, begin_epoch: Optional[int] = None):
        if begin_epoch is not None and not (isinstance(begin_epoch, int) and begin_epoch >= 1):
            raise ValueError(f'CascadeSaliencyHook.begin_epoch must be None or an int >= 1, got {begin_epoch!r}')
        self.begin_epoch = begin_epoch

    def before_train_epoch(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        if not hasattr(model, 'set_saliency_phase'):
            raise TypeError(f'CascadeSaliencyHook needs a model with adaptive saliency phases (e.g. '
                            f'LZUAdaptiveRetinaNet), got {type(model).__name__}')
        epoch = runner.epoch + 1
        cascade = self.begin_epoch is not None and epoch >= self.begin_epoch
        phase = 'cascade' if cascade else 'ground_truth'
        switched = phase != model.lzu_saliency_phase
        model.set_saliency_phase(phase)
        what = ("the model's own jittered detections (cascaded saliency)" if cascade else
                'jittered ground-truth boxes')
        print_log(f'Epoch {epoch}: adaptive saliency from {what}' + (' -- switched' if switched else ''),
                  logger='current')
