"""Zoom and unzoom around an OpenMMLab model's feature extractor (LZU §4, Figure 3).

:class:`LZUMixin` is composed with a framework's model class (first base) and
overrides ``loss`` / ``predict`` / ``_forward`` and ``extract_feat``:

* If every sample's metainfo has ``lzu_zoom`` (written by the pipeline's
  fixed-saliency zoom), the batch is already zoomed; the features are
  unzoomed with exactly the recorded grid (mirrored when the sample was
  flipped after zooming).
* Otherwise the model zooms the batch itself, on its device and
  differentiably, with its own warp (``lzu`` config), each image within its
  valid (unpadded) region, and unzooms with the same warp.

Either way the backbone/neck are unchanged and the heads see unzoomed features
in the coordinates of the un-warped, padded batch: labels, losses and
post-processing work as for the base model. A checkpoint of the base model
loads with ``strict=True`` (LZU adds no parameters).
"""
import hashlib
from collections import OrderedDict
from contextlib import contextmanager
from typing import List, NamedTuple, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from lzu_mm.ops import LZWarp, apply_unzoom, load_saliency, sampling_grid, uniform_saliency, unzoom_positions

#: Keys accepted in a model's ``lzu`` config dict.
LZU_KEYS = ('saliency', 'grid_shape', 'separable', 'attraction_fwhm', 'anti_crop', 'exact_per_level', 'clamp')


def build_lzu_warp(lzu: Optional[dict]) -> Optional[LZWarp]:
    """Build the model-side fixed warp from a model's ``lzu`` config.

    Args:
        lzu: ``None`` (no model-side warp: the pipeline must zoom), or a dict
            with ``saliency`` (a file path, or ``'uniform'``), ``grid_shape``
            ``(h, w)``, and optionally ``separable`` (True),
            ``attraction_fwhm`` (13.), ``anti_crop`` (True),
            ``exact_per_level`` (False), ``clamp`` (False).

    Raises:
        ValueError: unknown keys, missing ``grid_shape``, or a bad saliency
            file (named in the message).
    """
    if lzu is None:
        return None
    if not isinstance(lzu, dict):
        raise ValueError(f'lzu must be a dict or None, got {type(lzu).__name__}')
    unknown = set(lzu) - set(LZU_KEYS)
    if unknown:
        raise ValueError(f'lzu has unknown keys {sorted(unknown)}; expected a subset of {LZU_KEYS}')
    if lzu.get('grid_shape') is None:
        raise ValueError('lzu.grid_shape must be given as (h, w), got None')
    source = lzu.get('saliency', 'uniform')
    saliency = (uniform_saliency(lzu['grid_shape']) if source in (None, 'uniform') else
                load_saliency(source, lzu['grid_shape']))
    return LZWarp(saliency, separable=lzu.get('separable', True), attraction_fwhm=lzu.get('attraction_fwhm', 13.),
                  anti_crop=lzu.get('anti_crop', True), exact_per_level=lzu.get('exact_per_level', False),
                  clamp=lzu.get('clamp', False))


class LZUState(NamedTuple):
    """How the current batch was zoomed: what unzoom needs."""
    warp: Optional[LZWarp]  # cached fixed warp, or None for per-sample grids
    grid: Optional[Tensor]  # [B, h, w, 2] per-sample grids when ``warp`` is None
    img_shapes: List[Sequence[int]]  # valid (h, w) of each zoomed image
    pad_shape: Sequence[int]  # (H_pad, W_pad) of the batch tensor
    separable: bool = True  # inversion of the per-sample grids (the pipeline's choice)


def _flip_grid(grid: np.ndarray, direction: Optional[str]) -> np.ndarray:
    """The grid of a zoomed image flipped after zooming: mirror the lattice and negate that coordinate."""
    if direction in ('horizontal', 'diagonal'):
        grid = grid[:, ::-1] * np.array([-1, 1], dtype=grid.dtype)
    if direction in ('vertical', 'diagonal'):
        grid = grid[::-1] * np.array([1, -1], dtype=grid.dtype)
    return np.ascontiguousarray(grid)


def _metainfo(sample) -> dict:
    return sample.metainfo if hasattr(sample, 'metainfo') else sample


class LZUMixin:
    """Adds LZU zoom/unzoom to an OpenMMLab model. Use as the first base class.

    Subclasses call :meth:`init_lzu` in ``__init__``; frameworks whose
    ``inputs`` are not an image tensor override :meth:`_lzu_images` and
    :meth:`_lzu_replace_images`.
    """

    def init_lzu(self, lzu: Optional[dict] = None, cache_size: int = 8) -> None:
        """Set up the model-side warp (see :func:`build_lzu_warp`) and the grid caches."""
        self.lzu_cfg = None if lzu is None else dict(lzu)
        warp = build_lzu_warp(lzu)
        # a submodule whose only buffer is non-persistent: base checkpoints still load with strict=True
        self.lzu_warp = warp
        self._lzu_recorded: 'OrderedDict[tuple, LZWarp]' = OrderedDict()  # warps recorded by the pipeline
        self._lzu_cache_size = cache_size
        self._lzu_state: Optional[LZUState] = None
        self._lzu_exact = False if lzu is None else bool(lzu.get('exact_per_level', False))
        self._lzu_clamp = False if lzu is None else bool(lzu.get('clamp', False))

    # ----------------------------------------------------------------- inputs
    def _lzu_images(self, inputs) -> Tensor:
        """The ``[B, C, H, W]`` image batch inside ``inputs``."""
        return inputs

    def _lzu_replace_images(self, inputs, images: Tensor):
        """``inputs`` with the image batch replaced (no in-place change)."""
        return images

    # ------------------------------------------------------------------- zoom
    def _recorded_warp(self, record: dict, direction: Optional[str]) -> LZWarp:
        grid = _flip_grid(np.asarray(record['grid'], dtype=np.float32), direction)
        separable = bool(record.get('separable', True))
        key = (hashlib.sha1(grid.tobytes()).hexdigest(), grid.shape, separable)
        cache = self._lzu_recorded
        if key not in cache:
            cache[key] = LZWarp.from_grid(torch.from_numpy(grid)[None], separable=separable,
                                          exact_per_level=self._lzu_exact, clamp=self._lzu_clamp)
            while len(cache) > self._lzu_cache_size:
                cache.popitem(last=False)
        cache.move_to_end(key)
        return cache[key]

    def lzu_zoom(self, inputs, data_samples=None):
        """Zoom ``inputs`` model-side if the pipeline did not; return ``(inputs, LZUState)``.

        Raises:
            ValueError: some samples were zoomed by the pipeline and others
                not, or nothing zoomed the batch and the model has no warp.
        """
        images = self._lzu_images(inputs)
        pad_shape = tuple(images.shape[-2:])
        metas = [_metainfo(s) for s in data_samples] if data_samples else []
        img_shapes = [tuple(m.get('img_shape', pad_shape))[:2] for m in metas] or [pad_shape] * images.shape[0]
        recorded = [m.get('lzu_zoom') for m in metas]
        if metas and all(r is not None for r in recorded):
            warps = [
                self._recorded_warp(r, m.get('flip_direction') if m.get('flip', False) else None)
                for r, m in zip(recorded, metas)
            ]
            if all(w is warps[0] for w in warps):
                return inputs, LZUState(warps[0], None, img_shapes, pad_shape)
            if len({w.separable for w in warps}) > 1:
                raise ValueError('the lzu_zoom records of one batch mix separable and non-separable warps; '
                                 'zoom every sample of a dataset with the same warp type')
            grid = torch.cat([w.grid(images.device, images.dtype) for w in warps])
            return inputs, LZUState(None, grid, img_shapes, pad_shape, warps[0].separable)
        if any(r is not None for r in recorded):
            raise ValueError('some samples of the batch carry an lzu_zoom record (zoomed by the pipeline) and '
                             'others do not; zoom all of them in the pipeline or none')
        if self.lzu_warp is None:
            raise ValueError(f'{type(self).__name__}: the batch was not zoomed by the pipeline (no lzu_zoom in the '
                             "metainfo; is 'lzu_zoom' in the packing transform's meta_keys?) and the model has no "
                             'warp of its own (lzu=None); set model.lzu=dict(saliency=..., grid_shape=...)')
        zoomed = self.lzu_warp.zoom(images, pad_shape, img_shapes=img_shapes, out_img_shapes=img_shapes)
        return self._lzu_replace_images(inputs, zoomed), LZUState(self.lzu_warp, None, img_shapes, pad_shape)

    @contextmanager
    def lzu_context(self, inputs, data_samples=None):
        """Zoom (if needed) for one forward pass; yields the inputs to run the base model on."""
        inputs, state = self.lzu_zoom(inputs, data_samples)
        previous, self._lzu_state = self._lzu_state, state
        try:
            yield inputs
        finally:
            self._lzu_state = previous

    # ----------------------------------------------------------------- unzoom
    def lzu_unzoom(self, feats, state: Optional[LZUState] = None):
        """Unzoom a feature map or a list/tuple of FPN levels ``[B, C, hf, wf]``."""
        state = state or self._lzu_state
        flat = [feats] if isinstance(feats, Tensor) else list(feats)
        shapes = [f.shape[-2:] for f in flat]
        if state.warp is not None:
            grids = state.warp.unzoom_grids(shapes, state.img_shapes, state.pad_shape, flat[0].device, flat[0].dtype)
        else:
            positions = unzoom_positions(state.grid, shapes, state.img_shapes, state.pad_shape, state.separable,
                                         self._lzu_exact, self._lzu_clamp)
            grids = [sampling_grid(p, s, flat[0].dtype) for p, s in zip(positions, shapes)]
        return apply_unzoom(feats, grids)

    # ------------------------------------------------------ model entry points
    def extract_feat(self, inputs, *args, **kwargs):
        """The base model's features, computed on the zoomed batch and unzoomed."""
        state = self._lzu_state
        if state is None:  # called directly (e.g. by an analysis tool): zoom here
            inputs, state = self.lzu_zoom(inputs, None)
        return self.lzu_unzoom(super().extract_feat(inputs, *args, **kwargs), state)

    def loss(self, inputs, data_samples, **kwargs):
        with self.lzu_context(inputs, data_samples) as inputs:
            return super().loss(inputs, data_samples, **kwargs)

    def predict(self, inputs, data_samples=None, **kwargs):
        with self.lzu_context(inputs, data_samples) as inputs:
            return super().predict(inputs, data_samples, **kwargs)

    def _forward(self, inputs, data_samples=None, **kwargs):
        with self.lzu_context(inputs, data_samples) as inputs:
            return super()._forward(inputs, data_samples, **kwargs)
