"""Zoom and unzoom around an OpenMMLab model's feature extractor (LZU §4, Figure 3).

:class:`LZUMixin` is composed with a framework's model class (first base) and
overrides ``loss`` / ``predict`` / ``_forward`` and ``extract_feat``:

* If every sample's metainfo has an ``lzu_zoom`` grid record (written by the
  pipeline's fixed-saliency zoom), the batch is already zoomed; the features
  are unzoomed with exactly the recorded grid (mirrored when the sample was
  flipped after zooming).
* If every record is a *source* record (``ResizeWithSource``: the pipeline
  resized uniformly and handed over the full-resolution image), the model
  resamples each source image on its device, into exactly the frame of the
  resized image, with *positions x interpolation*: the positions of its warp
  (:meth:`LZUMixin.lzu_source_warp`: the model's own fixed warp, the identity
  for ``lzu.positions='uniform'``, the LZ grid of the saliency that
  ``lzu.saliency_net`` predicts, or per-image grids of a subclass), the
  interpolation bilinear or ``lzu.interpolation`` (e.g. DownsizeNet,
  :mod:`lzu_mm.common.resampling`); then it unzooms with the same warp
  (nothing to unzoom for uniform positions).
  The record then holds the grid used instead of the image.
* Otherwise the model zooms the (uniformly resized) batch itself, in place,
  on its device and differentiably, with its own warp (``lzu`` config), each
  image within its valid (unpadded) region, and unzooms with the same warp.

Either way the backbone/neck are unchanged and the heads see unzoomed features
in the coordinates of the un-warped, padded batch: labels, losses and
post-processing work as for the base model. A checkpoint of the base model
loads with ``strict=True`` (LZU adds no parameters, unless a learned
interpolation or saliency network is configured: then it loads with the
frameworks' default ``strict=False`` and those start at their initialisation).
"""
import hashlib
from collections import OrderedDict
from contextlib import contextmanager
from typing import List, NamedTuple, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from lzu_mm.ops import (LZWarp, apply_unzoom, bilinear_resample, load_saliency, saliency_to_grid, sampling_grid,
                        uniform_saliency, unzoom_positions, zoom_sampling_grid)
from lzu_mm.ops._validate import check_grid

#: Keys of a model's ``lzu`` config that define its own (model-side) warp.
LZU_WARP_KEYS = ('saliency', 'grid_shape', 'separable', 'attraction_fwhm', 'anti_crop', 'align_corners')
#: Keys of a model's ``lzu`` config that set how features are unzoomed (any warp).
LZU_UNZOOM_KEYS = ('exact_per_level', 'clamp', 'strides', 'cell_centre')
#: Keys of a model's ``lzu`` config that choose how the full-resolution source is resampled (positions x
#: interpolation, :mod:`lzu_mm.common.resampling`): ``positions='uniform'``, a learned ``saliency_net`` and
#: the ``interpolation`` (``'bilinear'`` or a registered module such as ``DownsizeNet``).
LZU_RESAMPLING_KEYS = ('positions', 'saliency_net', 'interpolation')
#: Keys accepted in a model's ``lzu`` config dict.
LZU_KEYS = LZU_WARP_KEYS + LZU_UNZOOM_KEYS + LZU_RESAMPLING_KEYS
#: Values of ``lzu.positions``.
LZU_POSITIONS = ('uniform', 'lz')


def _check_strides(strides) -> Optional[list]:
    if strides is None:
        return None
    ok = isinstance(strides, (list, tuple)) and len(strides) > 0
    out = []
    for s in strides if ok else ():
        pair = (s, s) if isinstance(s, (int, float)) and not isinstance(s, bool) else tuple(s) if isinstance(
            s, (list, tuple)) else ()
        if len(pair) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in pair):
            ok = False
            break
        out.append(pair)
    if not ok:
        raise ValueError(f'lzu.strides must be a list of positive strides in pixels, one per feature level (a number '
                         f'or a pair (stride_y, stride_x)), e.g. [8, 16, 32, 64, 128]; got {strides!r}')
    return out


def _check_resampling(lzu: dict) -> None:
    """Refuse contradictory positions / interpolation settings of a model's ``lzu`` dict (at build time)."""
    positions = lzu.get('positions')
    if positions is not None and positions not in LZU_POSITIONS:
        raise ValueError(f'lzu.positions must be one of {LZU_POSITIONS} or None, got {positions!r}')
    net = lzu.get('saliency_net')
    if net is not None and not (isinstance(net, dict) and 'type' in net):
        raise ValueError(f"lzu.saliency_net must be a module config dict with a 'type' (e.g. "
                         f"dict(type='SaliencyNet', input_size=(128, 128))), got {net!r}")
    interp = lzu.get('interpolation')
    if interp is not None and interp != 'bilinear' and not (isinstance(interp, dict) and 'type' in interp):
        raise ValueError(f"lzu.interpolation must be 'bilinear' or a module config dict with a 'type' (e.g. "
                         f"dict(type='DownsizeNet', num_convs=2)), got {interp!r}")
    if positions == 'uniform':
        given = [k for k in ('saliency', 'saliency_net', 'grid_shape', 'attraction_fwhm') if lzu.get(k) is not None]
        if given:
            raise ValueError(f"lzu.positions='uniform' samples on a uniform grid, but lzu also gives {given} (an LZ "
                             "warp); drop them or positions")
    if net is not None and lzu.get('saliency') is not None:
        raise ValueError('lzu gives both a fixed saliency (lzu.saliency) and a learned one (lzu.saliency_net); '
                         'give one of them')
    if net is not None and lzu.get('grid_shape') is None:
        raise ValueError('lzu.grid_shape must be given as (h, w) with lzu.saliency_net (the LZ grid shape of the '
                         'learned saliency), got None')


def build_lzu_resampling(lzu: Optional[dict]):
    """The learned pieces of a model's ``lzu`` config: ``(interpolation, saliency_net)`` modules or ``None``.

    ``interpolation`` is ``None`` for bilinear (``'bilinear'`` or absent);
    ``saliency_net`` gets ``grid_shape=lzu['grid_shape']`` (a different
    ``grid_shape`` of its own is a ``ValueError``). Built from mmengine's
    ``MODELS`` (:mod:`lzu_mm.common.resampling` registers ``DownsizeNet``,
    ``BilinearInterpolation`` and ``SaliencyNet``).
    """
    from mmengine.registry import MODELS

    from . import resampling  # noqa: F401  (registers the modules)
    if not lzu:
        return None, None
    _check_resampling(lzu)
    interp = lzu.get('interpolation')
    interp = None if interp in (None, 'bilinear') else MODELS.build(dict(interp))
    net_cfg = lzu.get('saliency_net')
    net = None
    if net_cfg is not None:
        net_cfg = dict(net_cfg)
        grid_shape = tuple(int(v) for v in lzu['grid_shape'])
        if net_cfg.get('grid_shape') is not None and tuple(net_cfg['grid_shape']) != grid_shape:
            raise ValueError(f'lzu.saliency_net.grid_shape {tuple(net_cfg["grid_shape"])} differs from '
                             f'lzu.grid_shape {grid_shape}; give it once, in lzu.grid_shape')
        net_cfg['grid_shape'] = grid_shape
        net = MODELS.build(net_cfg)
    return interp, net


def build_lzu_warp(lzu: Optional[dict]) -> Optional[LZWarp]:
    """Build the model-side fixed warp from a model's ``lzu`` config.

    Args:
        lzu: ``None``, or a dict. With ``saliency`` (a file path, or
            ``'uniform'``) or ``grid_shape`` ``(h, w)`` it defines the model's
            own warp, with optional ``separable`` (True), ``attraction_fwhm``
            (13.), ``anti_crop`` (True), ``align_corners`` (False: half-pixel
            centres, as ``Resize``); the unzoom keys ``exact_per_level``
            (False), ``clamp`` (False), ``strides`` (inferred) and
            ``cell_centre`` (``'conv'``; ``'block'`` for patch-embedding
            backbones, see :mod:`lzu_mm.ops.warp`) apply to every warp,
            model-side or recorded by the pipeline. A dict with
            unzoom keys only (or ``None``) gives no model-side warp: the
            pipeline must zoom. ``positions='uniform'`` gives the identity
            warp (a uniform ``2 x 2`` saliency; the model then resamples the
            source uniformly and does not unzoom); a learned
            ``saliency_net`` gives no fixed warp (see
            :func:`build_lzu_resampling`).

    Returns:
        The model-side :class:`~lzu_mm.ops.LZWarp`, or ``None``.

    Raises:
        ValueError: unknown keys, a warp without ``grid_shape``, bad
            ``strides``, contradictory positions (``positions='uniform'`` with
            a saliency, a fixed and a learned saliency), or a bad saliency file
            (named in the message).
    """
    if lzu is None:
        return None
    if not isinstance(lzu, dict):
        raise ValueError(f'lzu must be a dict or None, got {type(lzu).__name__}')
    unknown = set(lzu) - set(LZU_KEYS)
    if unknown:
        raise ValueError(f'lzu has unknown keys {sorted(unknown)}; expected a subset of {LZU_KEYS}')
    _check_strides(lzu.get('strides'))
    if lzu.get('cell_centre', 'conv') not in ('conv', 'block'):
        raise ValueError(f"lzu.cell_centre must be 'conv' or 'block', got {lzu['cell_centre']!r}")
    _check_resampling(lzu)
    if lzu.get('positions') == 'uniform':
        return LZWarp(uniform_saliency((2, 2)), align_corners=lzu.get('align_corners', False))
    if lzu.get('saliency_net') is not None or not any(k in lzu for k in LZU_WARP_KEYS):
        return None
    if lzu.get('grid_shape') is None:
        raise ValueError('lzu.grid_shape must be given as (h, w) for a model-side warp, got None')
    source = lzu.get('saliency', 'uniform')
    saliency = (uniform_saliency(lzu['grid_shape']) if source in (None, 'uniform') else
                load_saliency(source, lzu['grid_shape']))
    return LZWarp(saliency, separable=lzu.get('separable', True), attraction_fwhm=lzu.get('attraction_fwhm', 13.),
                  anti_crop=lzu.get('anti_crop', True), exact_per_level=lzu.get('exact_per_level', False),
                  clamp=lzu.get('clamp', False), align_corners=lzu.get('align_corners', False))


class LZUState(NamedTuple):
    """How the current batch was zoomed: what unzoom needs."""
    warp: Optional[LZWarp]  # cached fixed warp, or None for per-sample grids
    grid: Optional[Tensor]  # [B, h, w, 2] per-sample grids when ``warp`` is None
    img_shapes: List[Sequence[int]]  # valid (h, w) of each zoomed image
    pad_shape: Sequence[int]  # (H_pad, W_pad) of the batch tensor
    separable: bool = True  # inversion of the per-sample grids (the pipeline's choice)
    align_corners: bool = False  # pixel convention of the per-sample grids (the pipeline's choice)
    losses: Optional[dict] = None  # regularisers of a learned warp, added to the training losses
    # warp and grid both None: the batch was resampled uniformly (lzu.positions='uniform'), nothing to unzoom


_FLIPS = ('horizontal', 'vertical', 'diagonal')


def _flip_grid(grid: np.ndarray, direction: Optional[str]) -> np.ndarray:
    """The grid of a zoomed image flipped after zooming: mirror the lattice and negate that coordinate.

    Exact in both pixel conventions: a flip maps normalised ``u`` to ``-u``.
    """
    if direction in ('horizontal', 'diagonal'):
        grid = grid[:, ::-1] * np.array([-1, 1], dtype=grid.dtype)
    if direction in ('vertical', 'diagonal'):
        grid = grid[::-1] * np.array([1, -1], dtype=grid.dtype)
    return np.ascontiguousarray(grid)


def _metainfo(sample) -> dict:
    return sample.metainfo if hasattr(sample, 'metainfo') else sample


def _where(meta: dict, index: int) -> str:
    path = meta.get('img_path') or meta.get('filename')
    return f'sample {index} ({path})' if path else f'sample {index}'


_AFTER_ZOOM = ('only RandomFlip (any direction) and padding may follow the zoom; put crops, affine transforms, '
               'mosaic / mix-up and resizes before FixedSaliencyZoom (or zoom model-side with model.lzu)')


def _homography_flip(after: np.ndarray, img_shape) -> Optional[str]:
    """The flip that the homography ``after`` (applied after the zoom) is, None for the identity; else raise."""
    h, w = (float(v) for v in img_shape[:2])
    candidates = {
        None: np.eye(3),
        'horizontal': np.array([[-1, 0, w], [0, 1, 0], [0, 0, 1]]),
        'vertical': np.array([[1, 0, 0], [0, -1, h], [0, 0, 1]]),
        'diagonal': np.array([[-1, 0, w], [0, -1, h], [0, 0, 1]]),
    }
    for direction, matrix in candidates.items():
        if np.allclose(after, matrix, rtol=0, atol=1e-6 * max(h, w, 1.)):
            return direction
    raise ValueError('a geometric transform after the zoom changed the image: the homography applied after '
                     f'FixedSaliencyZoom is {np.round(after, 4).tolist()}, which is neither the identity nor a flip; '
                     + _AFTER_ZOOM)


def _preprocess_like(preprocessor, images: Tensor) -> Tensor:
    """What a data preprocessor does to a ``[B, C, H, W]`` float batch: channel swap, then normalisation.

    Both are per-pixel affine maps, so they commute with bilinear zooming:
    normalising the zoomed source equals zooming the normalised source.
    Works with mmengine's ``ImgDataPreprocessor`` family (MMDetection,
    MMDetection3D) and MMSegmentation's ``SegDataPreProcessor``.
    """
    swap = getattr(preprocessor, '_channel_conversion', getattr(preprocessor, 'channel_conversion', False))
    if swap and images.shape[1] == 3:
        images = images[:, [2, 1, 0]]
    if getattr(preprocessor, '_enable_normalize', False):
        images = (images - preprocessor.mean.to(images)) / preprocessor.std.to(images)
    return images


def post_zoom_flip(record: dict, meta: dict, index: int = 0) -> Optional[str]:
    """How a sample zoomed by the pipeline was transformed after the zoom: ``None`` or a flip direction.

    The zoom transforms record, with the grid, what it applies to
    (``img_shape``, the flip state and the ``homography_matrix`` at zoom
    time). A sample whose image changed size since then was cropped, resized
    or mosaicked after the zoom, which the recorded grid cannot describe: it
    is refused. When both the record and the metainfo carry MMDetection's
    ``homography_matrix`` (add it to the packing ``meta_keys``), the transform
    applied after the zoom is exactly ``H_meta @ inv(H_zoom)``: the identity or
    a flip is accepted, anything else (``RandomAffine``, a translation) is
    refused. Otherwise the flip flags decide: a sample flipped after the zoom
    (``flip`` True now, False at zoom time) mirrors the grid; a flip *before*
    the zoom (recorded) needs no mirroring.

    Args:
        record: the sample's ``lzu_zoom`` metainfo.
        meta: the sample's metainfo.
        index: position in the batch (for messages).

    Returns:
        ``None``, ``'horizontal'``, ``'vertical'`` or ``'diagonal'``.

    Raises:
        ValueError: the image changed size or was transformed otherwise after
            the zoom, a flip after the zoom without ``flip_direction`` in the
            metainfo, or flips before and after the zoom that the flags cannot
            tell apart (the message names the sample and what to change).
    """
    where = _where(meta, index)
    zoomed, now = record.get('img_shape'), meta.get('img_shape')
    if zoomed is not None and now is not None and tuple(now[:2]) != tuple(zoomed[:2]):
        raise ValueError(f'{where}: the LZU zoom / resize transform made it {tuple(zoomed[:2])} pixels but its '
                         f'img_shape is now {tuple(now[:2])}: a transform after the zoom (a crop, resize, '
                         f'RandomCenterCropPad, Mosaic, AffineResize, a batch resize, ...) changed the image, and the '
                         f'record no longer describes it; ' + _AFTER_ZOOM)
    h_zoom, h_now = record.get('homography_matrix'), meta.get('homography_matrix')
    if h_zoom is not None and h_now is not None:
        after = np.asarray(h_now, dtype=np.float64) @ np.linalg.inv(np.asarray(h_zoom, dtype=np.float64))
        try:
            return _homography_flip(after, now if now is not None else zoomed)
        except ValueError as exc:
            raise ValueError(f'{where}: {exc}') from None
    if 'flip' not in meta:  # the packing transform does not pass the flip state: nothing known happened
        return None
    was = (bool(record.get('flip', False)), record.get('flip_direction') if record.get('flip', False) else None)
    is_ = (bool(meta.get('flip', False)), meta.get('flip_direction') if meta.get('flip', False) else None)
    if is_ == was:
        return None
    if is_[0] and not was[0]:
        if is_[1] not in _FLIPS:
            raise ValueError(f"{where} was zoomed by the pipeline and flipped after zooming, but its metainfo has "
                             f"flip_direction={is_[1]!r}: put 'flip_direction' (and 'flip', 'lzu_zoom') in the "
                             "packing transform's meta_keys so the LZ grid can be mirrored with the image")
        return is_[1]
    raise ValueError(f'{where}: the flip flags changed from {was} at zoom time to {is_}: flips both before and after '
                     "the zoom cannot be told apart from the flags; add 'homography_matrix' to the packing "
                     "transform's meta_keys (MMDetection records it) or flip on one side of the zoom only")


class LZUMixin:
    """Adds LZU zoom/unzoom to an OpenMMLab model. Use as the first base class.

    Subclasses call :meth:`init_lzu` in ``__init__``; frameworks whose
    ``inputs`` are not an image tensor override :meth:`_lzu_images` and
    :meth:`_lzu_replace_images`.
    """

    def init_lzu(self, lzu: Optional[dict] = None, cache_size: int = 8) -> None:
        """Set up the model-side warp (see :func:`build_lzu_warp`), the unzoom options and the grid caches."""
        self.lzu_cfg = None if lzu is None else dict(lzu)
        self._lzu_missing: Optional[FileNotFoundError] = None
        try:
            warp = build_lzu_warp(lzu)
        except FileNotFoundError as exc:  # the saliency may come with the checkpoint: completed at load_state_dict
            warp, self._lzu_missing = None, exc
        # a submodule whose only buffer is non-persistent: base checkpoints still load with strict=True
        self.lzu_warp = warp
        # positions x interpolation of the full-resolution source (ResizeWithSource); None: bilinear / no net
        interpolation, saliency_net = build_lzu_resampling(lzu)
        self.lzu_interpolation = interpolation
        self.lzu_saliency_net = saliency_net
        self._lzu_uniform = (lzu or {}).get('positions') == 'uniform'
        self._lzu_source_saliency: Optional[Tensor] = None  # the learned saliency of the batch being zoomed
        self._lzu_recorded: 'OrderedDict[tuple, LZWarp]' = OrderedDict()  # warps recorded by the pipeline
        self._lzu_cache_size = cache_size
        self._lzu_state: Optional[LZUState] = None
        lzu = lzu or {}
        self._lzu_exact = bool(lzu.get('exact_per_level', False))
        self._lzu_clamp = bool(lzu.get('clamp', False))
        self._lzu_strides = _check_strides(lzu.get('strides'))
        self._lzu_cell_centre = lzu.get('cell_centre', 'conv')
        # conventions of per-sample grids made by the model itself (lzu_source_warp overrides)
        self._lzu_separable = bool(lzu.get('separable', True))
        self._lzu_align_corners = bool(lzu.get('align_corners', False))
        self._lzu_attraction_fwhm = float(lzu.get('attraction_fwhm', 13.))
        self._lzu_anti_crop = bool(lzu.get('anti_crop', True))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, *args, **kwargs):
        """Load as the base model; a self-contained LZU checkpoint also brings its saliency maps.

        The warp record (:mod:`lzu_mm.common.checkpoint_warp`) in the state dict's root metadata is registered
        process-wide (so the test pipeline's zoom finds a missing saliency file in it) and completes a model-side
        warp whose saliency file was missing when the model was built; a model-side saliency that differs from
        the checkpoint's is warned about.
        """
        super()._load_from_state_dict(state_dict, prefix, local_metadata, *args, **kwargs)
        from .checkpoint_warp import RECORD_KEY, check_config_warp, register_checkpoint_warps
        root = local_metadata if not prefix else (getattr(state_dict, '_metadata', None) or {}).get('', {})
        record = (root or {}).get(RECORD_KEY)
        if record is None:
            return
        register_checkpoint_warps(record, source=f'{type(self).__name__} checkpoint')
        lzu = self.lzu_cfg or {}
        if self._lzu_missing is not None:
            warp = build_lzu_warp(lzu)  # FileNotFoundError again: the checkpoint does not carry it either
            device = next(iter(self.parameters()), torch.empty(0)).device
            self.lzu_warp, self._lzu_missing = warp.to(device), None
        if isinstance(lzu.get('saliency'), str) and lzu.get('grid_shape') is not None:
            check_config_warp(lzu['saliency'], lzu['grid_shape'], f'{type(self).__name__} (model.lzu)',
                              **{k: lzu[k] for k in ('separable', 'attraction_fwhm', 'anti_crop', 'align_corners')
                                 if k in lzu})

    def _lzu_needs_source(self) -> Optional[str]:
        """What of this model's ``lzu`` config needs the full-resolution source (None: nothing)."""
        if self.lzu_interpolation is not None:
            return f'lzu.interpolation ({type(self.lzu_interpolation).__name__})'
        if self.lzu_saliency_net is not None:
            return f'lzu.saliency_net ({type(self.lzu_saliency_net).__name__})'
        return None

    # ----------------------------------------------------------------- inputs
    def _lzu_images(self, inputs) -> Tensor:
        """The ``[B, C, H, W]`` image batch inside ``inputs``."""
        return inputs

    def _lzu_replace_images(self, inputs, images: Tensor):
        """``inputs`` with the image batch replaced (no in-place change)."""
        return images

    # ------------------------------------------------------------------- zoom
    def _recorded_warp(self, record: dict, meta: dict, index: int) -> LZWarp:
        """The cached warp of a pipeline's ``lzu_zoom`` record, mirrored if the sample was flipped after zooming."""
        grid = _flip_grid(np.asarray(record['grid'], dtype=np.float32), post_zoom_flip(record, meta, index))
        separable = bool(record.get('separable', True))
        align_corners = bool(record.get('align_corners', False))
        key = (hashlib.sha1(grid.tobytes()).hexdigest(), grid.shape, separable, align_corners)
        cache = self._lzu_recorded
        if key not in cache:
            cache[key] = LZWarp.from_grid(torch.from_numpy(grid)[None], separable=separable,
                                          exact_per_level=self._lzu_exact, clamp=self._lzu_clamp,
                                          align_corners=align_corners)
            while len(cache) > self._lzu_cache_size:
                cache.popitem(last=False)
        cache.move_to_end(key)
        return cache[key]

    def lzu_zoom(self, inputs, data_samples=None):
        """Zoom ``inputs`` model-side if the pipeline did not; return ``(inputs, LZUState)``.

        Raises:
            ValueError: some samples were zoomed by the pipeline and others
                not; a sample was transformed after the pipeline's zoom in a
                way its record cannot describe (see :func:`post_zoom_flip`);
                the records of a batch mix warp types or pixel conventions; or
                nothing zoomed the batch and the model has no warp.
        """
        if self._lzu_missing is not None:
            raise FileNotFoundError(f'{type(self).__name__}: {self._lzu_missing} (model.lzu.saliency), and no LZU '
                                    'checkpoint loaded into the model stores it; give the file, or load a checkpoint '
                                    'saved with LZUCheckpointHook (tools/train.py adds it)')
        images = self._lzu_images(inputs)
        pad_shape = tuple(images.shape[-2:])
        metas = [_metainfo(s) for s in data_samples] if data_samples else []
        img_shapes = [tuple(m.get('img_shape', pad_shape))[:2] for m in metas] or [pad_shape] * images.shape[0]
        recorded = [m.get('lzu_zoom') for m in metas]
        sources = [r is not None and r.get('mode') == 'source' for r in recorded]
        if metas and all(sources):
            return self._lzu_zoom_sources(inputs, images, data_samples, metas, recorded, img_shapes, pad_shape)
        if any(sources):
            raise ValueError('the lzu_zoom records of one batch mix full-resolution sources (ResizeWithSource) with '
                             'other samples; use one kind of LZU resize / zoom transform per dataset')
        needs = self._lzu_needs_source()
        if needs is not None or (self._lzu_uniform and any(r is not None for r in recorded)):
            what = needs or "lzu.positions='uniform'"
            raise ValueError(f'{type(self).__name__}: {what} resamples the full-resolution image, but the pipeline '
                             f'{"zoomed" if any(r is not None for r in recorded) else "resized"} it already (no '
                             "lzu_zoom source record); resize with ResizeWithSource (ResizeWithSource3D) instead of "
                             "Resize / FixedSaliencyZoom and put 'lzu_zoom' in the packing transform's meta_keys")
        if self._lzu_uniform:  # uniform positions on a uniformly resized batch: nothing to do
            return inputs, LZUState(None, None, img_shapes, pad_shape)
        if metas and all(r is not None for r in recorded):
            warps = [self._recorded_warp(r, m, i) for i, (r, m) in enumerate(zip(recorded, metas))]
            if all(w is warps[0] for w in warps):
                return inputs, LZUState(warps[0], None, img_shapes, pad_shape)
            for attr, what in (('separable', 'separable and non-separable warps'),
                               ('align_corners', 'pixel conventions (align_corners)')):
                if len({getattr(w, attr) for w in warps}) > 1:
                    raise ValueError(f'the lzu_zoom records of one batch mix {what}; zoom every sample of a dataset '
                                     'with the same warp type')
            grid = torch.cat([w.grid(images.device, torch.float64) for w in warps])
            return inputs, LZUState(None, grid, img_shapes, pad_shape, warps[0].separable, warps[0].align_corners)
        if any(r is not None for r in recorded):
            raise ValueError('some samples of the batch carry an lzu_zoom record (zoomed by the pipeline) and '
                             'others do not; zoom all of them in the pipeline or none')
        if self.lzu_warp is None:
            raise ValueError(f'{type(self).__name__}: the batch was not zoomed by the pipeline (no lzu_zoom in the '
                             "metainfo; is 'lzu_zoom' in the packing transform's meta_keys?) and the model has no "
                             'warp of its own (lzu=None); set model.lzu=dict(saliency=..., grid_shape=...)')
        zoomed = self.lzu_warp.zoom(images, pad_shape, img_shapes=img_shapes, out_img_shapes=img_shapes)
        return self._lzu_replace_images(inputs, zoomed), LZUState(self.lzu_warp, None, img_shapes, pad_shape)

    def lzu_source_warp(self, sources: Tensor, data_samples):
        """The warp that zooms the full-resolution sources of a batch (``ResizeWithSource``).

        Args:
            sources: ``[B, C, H, W]`` source images (float, un-normalised,
                the pipeline's channel order), padded at the bottom/right.
            data_samples: the batch's data samples (their ``img_shape`` is the
                target frame).

        Returns:
            An :class:`~lzu_mm.ops.LZWarp` shared by the batch (default: the
            model's own, ``model.lzu``; the identity warp for
            ``lzu.positions='uniform'``), or ``[B, h, w, 2]`` per-sample LZ
            grids: by default those of the saliency ``lzu.saliency_net``
            predicts from the sources (differentiable: the network learns
            through the zoom, the inversion and the unzoom); adaptive saliency
            overrides this. Per-sample grids follow ``lzu.separable`` and
            ``lzu.align_corners`` (``self._lzu_separable`` /
            ``self._lzu_align_corners``).

        Raises:
            ValueError: the model has no warp of its own.
        """
        if self.lzu_saliency_net is not None:
            src_shapes = [tuple(_metainfo(s)['lzu_zoom']['src_shape'][:2]) for s in data_samples]
            saliency = self.lzu_saliency_net(sources, src_shapes)
            self._lzu_source_saliency = saliency
            return saliency_to_grid(saliency.double(), self._lzu_separable, self._lzu_attraction_fwhm,
                                    self._lzu_anti_crop)
        if self.lzu_warp is None:
            raise ValueError(f'{type(self).__name__}: the pipeline handed over the full-resolution images '
                             '(ResizeWithSource) for the model to zoom, but the model has no warp (lzu=None); set '
                             'model.lzu=dict(saliency=..., grid_shape=...)')
        return self.lzu_warp

    def _lzu_zoom_sources(self, inputs, images, data_samples, metas, records, img_shapes, pad_shape):
        """Zoom the recorded source images into the frame of the uniformly resized batch ``images``."""
        flips = [post_zoom_flip(r, m, i) for i, (r, m) in enumerate(zip(records, metas))]
        sources = []
        for i, (record, flip) in enumerate(zip(records, flips)):
            if record.get('image') is None:
                raise ValueError(f'{_where(metas[i], i)}: its lzu_zoom source record has no image (it is taken '
                                 'out of the metainfo by the forward pass that zooms it, so that predictions do not '
                                 'carry it); pass freshly packed samples')
            src = torch.as_tensor(np.ascontiguousarray(record['image']), device=images.device)
            src = (src[..., None] if src.dim() == 2 else src).permute(2, 0, 1)
            if flip in ('horizontal', 'diagonal'):
                src = src.flip(-1)
            if flip in ('vertical', 'diagonal'):
                src = src.flip(-2)
            sources.append(src)
        src_shapes = [tuple(s.shape[-2:]) for s in sources]
        batch = images.new_zeros(len(sources), sources[0].shape[0], max(h for h, _ in src_shapes),
                                 max(w for _, w in src_shapes))
        for b, src in enumerate(sources):
            batch[b, :, :src.shape[1], :src.shape[2]] = src
        self._lzu_source_saliency = None
        warp = self.lzu_source_warp(batch, data_samples)
        saliency, self._lzu_source_saliency = self._lzu_source_saliency, None
        dtype = torch.float64 if batch.dtype == torch.float64 else torch.float32
        if isinstance(warp, LZWarp):  # positions: a fixed warp's cached sampling grid (the identity: uniform)
            sampling = warp.zoom_sampling_grid(batch.shape[-2:], pad_shape, len(sources), src_shapes, img_shapes,
                                               batch.device, dtype)
            uniform = self._lzu_uniform and warp is self.lzu_warp
            state = LZUState(None if uniform else warp, None, img_shapes, pad_shape)
            grids = warp.grid(batch.device, torch.float32).expand(len(sources), -1, -1, -1)
            separable, align_corners = warp.separable, warp.align_corners
        else:  # positions: per-sample LZ grids (learned or adaptive saliency)
            check_grid(warp, 'the per-sample grids of lzu_source_warp')
            if warp.shape[0] != len(sources):
                raise ValueError(f'lzu_source_warp returned {warp.shape[0]} grids for a batch of {len(sources)}')
            sampling = zoom_sampling_grid(warp, batch.shape[-2:], pad_shape, len(sources), src_shapes, img_shapes,
                                          dtype, self._lzu_align_corners,
                                          separable=self._lzu_separable)  # per axis: cheap per-image grids
            losses = self.lzu_saliency_net.loss(saliency) if saliency is not None else None
            state = LZUState(None, warp, img_shapes, pad_shape, self._lzu_separable, self._lzu_align_corners, losses)
            grids, separable, align_corners = warp, self._lzu_separable, self._lzu_align_corners
        zoomed = self.lzu_resample(batch, sampling)
        valid = torch.zeros(len(sources), 1, *pad_shape, dtype=torch.bool, device=images.device)
        for b, (h, w) in enumerate(img_shapes):
            valid[b, :, :h, :w] = True
        zoomed = torch.where(valid, _preprocess_like(self.data_preprocessor, zoomed).to(images.dtype), images)
        grids = grids.detach().float().cpu().numpy()
        saliency = None if saliency is None else saliency.detach().float().cpu().numpy()[:, 0]
        for b, (sample, record) in enumerate(zip(data_samples, records)):
            # predictions must not carry the full-resolution image; they carry the warp that was applied
            slim = {k: v for k, v in record.items() if k != 'image'}
            slim.update(grid=grids[b], separable=bool(separable), align_corners=bool(align_corners))
            if saliency is not None:
                slim['saliency'] = saliency[b]
            elif self.lzu_cfg and self.lzu_cfg.get('saliency') not in (None, 'uniform') and \
                    isinstance(self.lzu_cfg['saliency'], str):
                slim['saliency'] = self.lzu_cfg['saliency']
            if hasattr(sample, 'set_metainfo'):
                sample.set_metainfo(dict(lzu_zoom=slim))
            else:
                sample['lzu_zoom'] = slim
        return self._lzu_replace_images(inputs, zoomed), state

    def lzu_resample(self, images: Tensor, sampling_grid: Tensor) -> Tensor:
        """Interpolate the (float, un-normalised) sources at the positions: bilinear, or ``lzu.interpolation``.

        Args:
            images: ``[B, C, H, W]`` padded source batch.
            sampling_grid: ``[B or 1, Ho, Wo, 2]`` ``grid_sample`` grid over it
                (``align_corners=True``; padding positions read zeros).

        Returns:
            ``[B, C, Ho, Wo]``.
        """
        if self.lzu_interpolation is None:
            return bilinear_resample(images, sampling_grid)
        return self.lzu_interpolation(images, sampling_grid)

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
        if state.warp is None and state.grid is None:  # resampled uniformly: nothing to unzoom
            return feats
        flat = [feats] if isinstance(feats, Tensor) else list(feats)
        shapes = [f.shape[-2:] for f in flat]
        if state.warp is not None:
            grids = state.warp.unzoom_grids(shapes, state.img_shapes, state.pad_shape, flat[0].device, flat[0].dtype,
                                            self._lzu_strides, self._lzu_cell_centre)
        else:
            positions = unzoom_positions(state.grid, shapes, state.img_shapes, state.pad_shape, state.separable,
                                         self._lzu_exact, self._lzu_clamp, self._lzu_strides, state.align_corners,
                                         self._lzu_cell_centre)
            dtype = torch.float64 if flat[0].dtype == torch.float64 else torch.float32  # AMP: sample in float32
            grids = [sampling_grid(p, s, dtype) for p, s in zip(positions, shapes)]
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
            losses = super().loss(inputs, data_samples, **kwargs)
            losses.update(self._lzu_state.losses or {})  # a learned warp's regularisers
            return losses

    def predict(self, inputs, data_samples=None, **kwargs):
        with self.lzu_context(inputs, data_samples) as inputs:
            return super().predict(inputs, data_samples, **kwargs)

    def _forward(self, inputs, data_samples=None, **kwargs):
        with self.lzu_context(inputs, data_samples) as inputs:
            return super()._forward(inputs, data_samples, **kwargs)
