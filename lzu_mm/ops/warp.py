"""Zoom and unzoom: LZU's resampling of images and feature maps (§4, Figure 3).

Geometry of padded batches. A zoomed image of ``img_shape = (h_img, w_img)``
pixels may be padded at the bottom/right to ``pad_shape = (H_pad, W_pad)``
before the backbone (e.g. ``size_divisor=32``). A feature map of ``hf x wf``
cells then has strides ``(H_pad / hf, W_pad / wf)`` and cell ``(i, j)`` sits at
image pixel ``(i * stride_y, j * stride_x)``. The warp's normalised
coordinates refer to the *valid* image only: ``-1`` / ``+1`` are the centres
of its first / last pixel (``align_corners=True``). Unzoom therefore fills the
valid cells from valid cells only, and the padding cells with the padding
cells at the same place (the identity there, as for any warp whose border
maps to the border); with a uniform saliency unzoom is the identity.
"""
from collections import OrderedDict
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._validate import check_batch, check_grid, check_saliency, check_shape_2d, check_valid_shapes, shape_pairs
from .grid import _upsample_grid, saliency_to_grid
from .invert import _check_monotone, invert_1d, invert_lattice

Features = Union[Tensor, Sequence[Tensor]]
Positions = Union[Tensor, Tuple[Tensor, Tensor]]

#: Sampling position that reads zeros: normalised for ``grid_sample`` (zoom), in cells for unzoom.
_OUTSIDE = -4.0


def zoom(images: Tensor,
         grid: Tensor,
         out_shape: Sequence[int],
         img_shapes=None,
         out_img_shapes=None,
         mode: str = 'bilinear') -> Tensor:
    """Zoom images with an LZ grid (LZU §3, the saliency-guided downsampler).

    Output pixel ``(i, j)`` samples the input at the bilinearly upsampled grid
    value (:func:`~lzu_mm.ops.upsample_grid`) with ``grid_sample``
    (``align_corners=True``, zero padding); positions are computed in float64
    and rounded once. With a uniform saliency this is a bilinear resize with
    ``align_corners=True``.

    Args:
        images: ``[B, C, H, W]`` images (or any maps), possibly padded.
        grid: ``[B, h, w, 2]`` or ``[1, h, w, 2]`` normalised ``(x, y)`` grid
            from :func:`~lzu_mm.ops.saliency_to_grid`.
        out_shape: ``(H_out, W_out)`` size of the zoomed batch in pixels.
        img_shapes: optional valid ``(h, w)`` per input image (one pair or
            ``B`` pairs, pixels) when ``images`` are padded at the bottom/right;
            the grid's ``[-1, 1]`` then spans the valid region only. Default:
            the whole tensor is valid.
        out_img_shapes: optional valid ``(h, w)`` per output image: each image
            is zoomed into the top-left ``out_img_shapes[b]`` of the output and
            the rest is zero (zooming a padded batch in place, for example).
            Default: the whole ``out_shape``.
        mode: ``grid_sample`` interpolation, ``'bilinear'`` or ``'nearest'``.

    Returns:
        ``[B, C, H_out, W_out]`` zoomed images, same dtype and device.

    Raises:
        ValueError: malformed ``images``/``grid``, mismatched batch sizes, bad
            ``out_shape``, ``img_shapes`` or ``out_img_shapes``.
    """
    check_grid(grid)
    check_batch(images, grid, 'images', '[B, C, H, W]')
    if mode not in ('bilinear', 'nearest'):
        raise ValueError(f"mode must be 'bilinear' or 'nearest', got {mode!r}")
    sampling = zoom_sampling_grid(grid, images.shape[-2:], out_shape, images.shape[0], img_shapes, out_img_shapes,
                                  images.dtype)
    return F.grid_sample(images, sampling.expand(images.shape[0], -1, -1, -1), mode=mode, padding_mode='zeros',
                         align_corners=True)


def zoom_sampling_grid(grid: Tensor,
                       in_shape: Sequence[int],
                       out_shape: Sequence[int],
                       batch_size: int = 1,
                       img_shapes=None,
                       out_img_shapes=None,
                       dtype=torch.float32) -> Tensor:
    """The ``grid_sample`` grid of :func:`zoom` (see there for the arguments).

    Returns:
        ``[B', H_out, W_out, 2]`` normalised grid over the ``in_shape`` input,
        ``B'`` = 1 when neither the grid nor the valid shapes vary over the batch.
        Positions are computed in float64 pixels and rounded once to ``dtype``.
    """
    out_shape = check_shape_2d(out_shape, 'out_shape')
    in_shape = tuple(int(v) for v in in_shape)
    grid = grid.to(torch.float64)
    bsz = grid.shape[0] if img_shapes is None and out_img_shapes is None else batch_size
    if out_img_shapes is None:
        up = _upsample_grid(grid, out_shape).expand(bsz, -1, -1, -1)
    else:
        valid_out = check_valid_shapes(out_img_shapes, bsz, out_shape, 'out_img_shapes').to(grid.device,
                                                                                            torch.float64)
        qy = _queries(out_shape[0], 1.0, valid_out[:, 0])
        qx = _queries(out_shape[1], 1.0, valid_out[:, 1])
        up = F.grid_sample(grid.permute(0, 3, 1, 2).expand(bsz, -1, -1, -1), _lattice2d(qx, qy), mode='bilinear',
                           padding_mode='border', align_corners=True).permute(0, 2, 3, 1)
    if img_shapes is not None:
        valid = check_valid_shapes(img_shapes, bsz, in_shape, 'img_shapes').to(grid.device, torch.float64)
    else:
        valid = up.new_tensor([in_shape]).expand(bsz, 2)
    pos = (up + 1) * 0.5 * (valid[:, None, None, [1, 0]] - 1)  # float64 pixels of the input
    if out_img_shapes is not None:
        inside = ((qx.abs() <= 1 + 1e-9)[:, None, :] & (qy.abs() <= 1 + 1e-9)[:, :, None])[..., None]
        pos = torch.where(inside, pos, torch.full_like(pos, _OUTSIDE))
    return sampling_grid(pos, in_shape, dtype)


def _level_strides(feat_shape, pad_shape) -> Tuple[float, float]:
    return pad_shape[0] / feat_shape[0], pad_shape[1] / feat_shape[1]


def _queries(n: int, stride: float, valid: Tensor) -> Tensor:
    """Normalised (valid-image) coordinates ``[B, n]`` of ``n`` cells of ``stride`` pixels."""
    idx = torch.arange(n, device=valid.device, dtype=valid.dtype)
    return 2 * idx[None] * stride / (valid[:, None] - 1).clamp_min(1) - 1


def _lattice2d(qx: Tensor, qy: Tensor) -> Tensor:
    bsz = qx.shape[0]
    return torch.stack([qx[:, None, :].expand(bsz, qy.shape[1], qx.shape[1]),
                        qy[:, :, None].expand(bsz, qy.shape[1], qx.shape[1])], -1)


def unzoom_positions(grid: Tensor,
                     feat_shapes: Sequence[Tuple[int, int]],
                     img_shapes=None,
                     pad_shape: Optional[Sequence[int]] = None,
                     separable: bool = True,
                     exact_per_level: bool = False,
                     clamp: bool = False) -> List[Tensor]:
    """Where each cell of each unzoomed feature level reads the zoomed features (LZU §4.1-4.2).

    The inverse of the piecewise-bilinear warp is computed once at the finest
    level and bilinearly resampled for the coarser ones (§4.2), or exactly
    for every level with ``exact_per_level=True``. Batch padding is exact (see
    the module docstring): cells of the valid region read valid cells only;
    cells of the padding read the padding cell at the same place (the
    identity), so with a uniform saliency unzoom is the identity everywhere.
    Computed in float64 in cell units, so the identity is exact to float
    rounding of the features.

    Args:
        grid: ``[B, h, w, 2]`` (or ``[1, h, w, 2]``) normalised LZ grid.
        feat_shapes: ``(hf, wf)`` of each feature level, any order.
        img_shapes: valid zoomed-image ``(h_img, w_img)`` in pixels, one pair
            or one per batch element. Default: ``pad_shape`` (no padding).
        pad_shape: ``(H_pad, W_pad)`` of the batch tensor fed to the backbone,
            pixels. Default: ``img_shapes`` if it is one pair, else each level
            is taken as fully valid.
        separable: invert separably (exact for separable grids) or with the
            full piecewise-bilinear inversion.
        exact_per_level: invert at every level instead of resampling the
            finest level's inverse.
        clamp: clamp points no tile covers onto the border of the valid region
            instead of reading zeros there.

    Returns:
        One entry per level, in the order of ``feat_shapes``, in float64 cells
        of that level (``0 .. wf-1``): where each output cell reads. For
        ``separable=True`` a tuple ``(x [B, wf], y [B, hf])`` of a product
        lattice (read with :func:`sample_separable`; outside the valid region
        each axis is the identity), else a ``[B, hf, wf, 2]`` ``(x, y)`` tensor
        (read with :func:`sample_bilinear`; the identity outside the valid
        region). Valid cells read positions in ``[0, floor(last valid cell)]``;
        points no tile covers get a negative position (zeros).

    Raises:
        ValueError: malformed ``grid``, ``feat_shapes``, ``img_shapes`` or
            ``pad_shape``, or mismatched batch sizes.
    """
    check_grid(grid)
    _check_monotone(grid, separable)
    feat_shapes = [check_shape_2d(s, 'feat_shapes[%d]' % k) for k, s in enumerate(feat_shapes)]
    g = grid.to(torch.float64)
    if img_shapes is None and pad_shape is None:
        bsz = grid.shape[0]
        # each level fully valid: a map of n cells has valid extent n pixels at stride 1
        valid = None
    else:
        if pad_shape is None:
            pad_shape = check_shape_2d(img_shapes, 'img_shapes')
        pad_shape = check_shape_2d(pad_shape, 'pad_shape')
        n_shapes = 1 if img_shapes is None else len(shape_pairs(img_shapes))
        valid = check_valid_shapes(pad_shape if img_shapes is None else img_shapes, max(grid.shape[0], n_shapes),
                                   pad_shape, 'img_shapes').to(grid.device, torch.float64)
        bsz = valid.shape[0]
        if grid.shape[0] not in (1, bsz):
            raise ValueError(f'img_shapes gives {bsz} images but grid has batch size {grid.shape[0]}')
    g = g.expand(bsz, -1, -1, -1)
    h, w = grid.shape[1:3]
    xs_marginal, ys_marginal = g[..., 0].mean(1), g[..., 1].mean(2)

    def geometry(shape):
        """(qx [B, wf], qy [B, hf], last valid position in cells [B, 2] as (x, y))."""
        hf, wf = shape
        if valid is None:
            last = g.new_tensor([[wf - 1., hf - 1.]]).expand(bsz, 2)
            return _queries(wf, 1.0, last[:, 0] + 1), _queries(hf, 1.0, last[:, 1] + 1), last
        sy, sx = _level_strides(shape, pad_shape)
        # the last valid pixel (size - 1) sits at cell (size - 1) / stride
        last = torch.stack([(valid[:, 1] - 1) / sx, (valid[:, 0] - 1) / sy], -1)
        return _queries(wf, sx, valid[:, 1]), _queries(hf, sy, valid[:, 0]), last

    def inverse(qx, qy):
        """Normalised warped positions: ((x [B, wf], y [B, hf]) if separable else [B, hf, wf, 2])."""
        if separable:
            return (invert_1d(xs_marginal, qx) * (2.0 / (w - 1)) - 1, invert_1d(ys_marginal, qy) * (2.0 / (h - 1)) - 1)
        return invert_lattice(g, qx, qy, separable=False)

    def to_cells(inv, q, last, n):
        """Normalised warped positions -> cells: valid cells only, identity outside the valid region.

        ``inv`` and ``q`` broadcast together; ``last`` is the last valid position; ``n`` the cell count.
        """
        pos = (inv + 1) * 0.5 * last
        covered = (pos >= -1e-9) & (pos <= last + 1e-9)
        pos = torch.minimum(pos.clamp_min(0), last.floor())  # the last whole valid cell is floor(last)
        if not clamp:  # points no tile covers read zeros
            pos = torch.where(covered, pos, torch.full_like(pos, _OUTSIDE))
        ident = torch.arange(n, device=g.device, dtype=g.dtype)
        return pos, q.abs() <= 1 + 1e-9, ident

    def finish(inv, qx, qy, last, shape):
        hf, wf = shape
        if separable:
            px, in_x, ix = to_cells(inv[0], qx, last[:, :1], wf)
            py, in_y, iy = to_cells(inv[1], qy, last[:, 1:], hf)
            return torch.where(in_x, px, ix), torch.where(in_y, py, iy)
        px, in_x, ix = to_cells(inv[..., 0], qx[:, None, :], last[:, None, None, 0], wf)
        py, in_y, iy = to_cells(inv[..., 1], qy[:, :, None], last[:, None, None, 1], hf)
        inside = in_x & in_y
        return torch.stack([torch.where(inside, px, ix[None, None, :].expand_as(px)),
                            torch.where(inside, py, iy[None, :, None].expand_as(py))], -1)

    if exact_per_level or len(feat_shapes) == 1:
        out = []
        for shape in feat_shapes:
            qx, qy, last = geometry(shape)
            out.append(finish(inverse(qx, qy), qx, qy, last, shape))
        return out

    finest = max(feat_shapes, key=lambda s: s[0] * s[1])
    qx0, qy0, _ = geometry(finest)
    inv0 = inverse(qx0, qy0)
    out = []
    for shape in feat_shapes:
        qx, qy, last = geometry(shape)
        if shape == finest:
            inv = inv0
        else:
            # cell k of this level sits at the image point of finest-level (fractional) cell
            # fx[k], where the finest level's (affine) query equals this level's query
            fx = (qx - qx0[:, :1]) / (qx0[:, 1:2] - qx0[:, :1]) if qx0.shape[1] > 1 else qx * 0
            fy = (qy - qy0[:, :1]) / (qy0[:, 1:2] - qy0[:, :1]) if qy0.shape[1] > 1 else qy * 0
            if separable:
                inv = (_interp1d(inv0[0], fx), _interp1d(inv0[1], fy))
            else:
                where = _lattice2d(fx * 2 / max(finest[1] - 1, 1) - 1, fy * 2 / max(finest[0] - 1, 1) - 1)
                inv = F.grid_sample(inv0.permute(0, 3, 1, 2), where, mode='bilinear', padding_mode='border',
                                    align_corners=True).permute(0, 2, 3, 1)
        out.append(finish(inv, qx, qy, last, shape))
    return out


def _interp1d(values: Tensor, pos: Tensor) -> Tensor:
    """Linear interpolation of ``values`` ``[B, n]`` at fractional indices ``pos`` ``[B, m]`` (border-clamped)."""
    n = values.shape[1]
    if n == 1:
        return values.expand(-1, pos.shape[1])
    pos = pos.clamp(0, n - 1)
    i0 = pos.detach().floor().clamp(max=n - 2).long()
    frac = pos - i0
    return values.gather(1, i0) * (1 - frac) + values.gather(1, i0 + 1) * frac


def sampling_grid(positions: Positions, in_shape: Sequence[int], dtype=torch.float32) -> Tensor:
    """``grid_sample`` grid (``align_corners=True``) for positions given in cells.

    Args:
        positions: ``[B, Ho, Wo, 2]`` ``(x, y)`` positions, or a separable pair
            ``(x [B, Wo], y [B, Ho])``, in cells of the input map (float64 allowed).
        in_shape: ``(H, W)`` of the map to sample.
        dtype: dtype of the returned grid (that of the features).

    Returns:
        ``[B, Ho, Wo, 2]`` normalised grid: cell ``k`` of an ``n``-cell axis is
        ``2k / (n - 1) - 1``. Computed in float64, rounded once to ``dtype``.
    """
    h, w = in_shape
    scale = (2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1))
    if isinstance(positions, tuple):
        x, y = positions
        x, y = x * scale[0] - 1, y * scale[1] - 1
        bsz = max(x.shape[0], y.shape[0])
        grid = torch.stack([x[:, None, :].expand(bsz, y.shape[1], x.shape[1]),
                            y[:, :, None].expand(bsz, y.shape[1], x.shape[1])], -1)
    else:
        grid = positions * positions.new_tensor(scale) - 1
    return grid.to(dtype)


def sample_bilinear(features: Tensor, positions: Positions) -> Tensor:
    """Bilinear sampling at positions given in cells, zero outside the map.

    ``grid_sample`` (``align_corners=True``, zero padding) at
    :func:`sampling_grid` ``(positions)``.

    Args:
        features: ``[B, C, H, W]``.
        positions: ``[B, Ho, Wo, 2]`` (or ``[1, Ho, Wo, 2]``) ``(x, y)`` in
            cells, or a separable pair ``(x [B, Wo], y [B, Ho])``.

    Returns:
        ``[B, C, Ho, Wo]`` in the dtype of ``features``.
    """
    grid = sampling_grid(positions, features.shape[-2:], features.dtype)
    return F.grid_sample(features, grid.expand(features.shape[0], -1, -1, -1), mode='bilinear',
                         padding_mode='zeros', align_corners=True)


def apply_unzoom(features: Features, grids: Sequence[Tensor]) -> Features:
    """Resample feature maps with unzoom sampling grids (:func:`sampling_grid` of :func:`unzoom_positions`)."""
    single = isinstance(features, Tensor)
    feats = [features] if single else list(features)
    out = [
        F.grid_sample(f, g.to(f.dtype).expand(f.shape[0], -1, -1, -1), mode='bilinear', padding_mode='zeros',
                      align_corners=True) for f, g in zip(feats, grids)
    ]
    if single:
        return out[0]
    return tuple(out) if isinstance(features, tuple) else out


def unzoom(features: Features,
           grid: Tensor,
           img_shapes=None,
           pad_shape: Optional[Sequence[int]] = None,
           separable: bool = True,
           exact_per_level: bool = False,
           clamp: bool = False) -> Features:
    """Unzoom feature maps computed on a zoomed image (LZU §4, Figure 3).

    Each map is resampled with the inverse of the piecewise-bilinear warp, so
    cell ``(i, j)`` holds the feature of the zoomed image at the point that the
    warp sent to un-warped pixel ``(i * stride_y, j * stride_x)``. Heads,
    losses and labels then work in un-warped coordinates. Batch padding is
    exact (see the module docstring); with a uniform saliency unzoom is the
    identity.

    Args:
        features: ``[B, C, hf, wf]`` map, or a list/tuple of them (FPN levels).
        grid: ``[B, h, w, 2]`` or ``[1, h, w, 2]`` normalised LZ grid of the zoom.
        img_shapes, pad_shape, separable, exact_per_level, clamp: see
            :func:`unzoom_positions`.

    Returns:
        The unzoomed maps, same structure, shapes, dtype and device.

    Raises:
        ValueError: malformed ``grid``/``features``, mismatched batch sizes,
            bad ``img_shapes``/``pad_shape``.
    """
    check_grid(grid)
    feats = [features] if isinstance(features, Tensor) else list(features)
    if not feats:
        raise ValueError('features must be a [B, C, h, w] tensor or a non-empty list of them, got an empty list')
    for k, f in enumerate(feats):
        check_batch(f, grid, f'features[{k}]', '[B, C, h, w]')
        if f.shape[0] != feats[0].shape[0]:
            raise ValueError(f'features[{k}] has batch size {f.shape[0]}, features[0] has {feats[0].shape[0]}')
    bsz = feats[0].shape[0]
    if img_shapes is not None and len(shape_pairs(img_shapes)) not in (1, bsz):
        raise ValueError(f'img_shapes must give one (h, w) per batch element ({bsz}), '
                         f'got {len(shape_pairs(img_shapes))}')
    if grid.shape[0] == 1 and bsz > 1:
        grid = grid.expand(bsz, -1, -1, -1)
    positions = unzoom_positions(grid, [f.shape[-2:] for f in feats], img_shapes, pad_shape, separable,
                                 exact_per_level, clamp)
    return apply_unzoom(features, [sampling_grid(p, f.shape[-2:], f.dtype) for p, f in zip(positions, feats)])


def _shapes_key(shapes):
    return None if shapes is None else tuple(tuple(float(v) for v in s) for s in shape_pairs(shapes))


class LZWarp(nn.Module):
    """A fixed (dataset-wide) LZ warp with cached forward and inverse grids.

    Holds one fixed saliency map and the LZ hyper-parameters. The forward grid
    is computed once per (device, dtype); the unzoom grids once per (feature
    shapes, image and pad shapes, device, dtype). A new shape, device or dtype
    gets its own entry, so a grid is never reused stale; the cache is bounded
    (least recently used entries are dropped).

    Args:
        saliency: ``[1, 1, h, w]`` (or ``[h, w]``) non-negative saliency.
        separable: separable LZ grid and inversion (FOVEA).
        attraction_fwhm: attraction kernel FWHM in grid cells.
        anti_crop: reflect-pad the saliency (FOVEA's anti-crop).
        exact_per_level: unzoom each level with its own exact inverse instead
            of resampling the finest level's (paper §4.2).
        clamp: border instead of zero padding where no tile covers a point.
        cache_size: maximum number of cached unzoom grid sets.

    Raises:
        ValueError: invalid saliency (see :func:`saliency_to_grid`).
    """

    def __init__(self,
                 saliency: Tensor,
                 separable: bool = True,
                 attraction_fwhm: float = 13.,
                 anti_crop: bool = True,
                 exact_per_level: bool = False,
                 clamp: bool = False,
                 cache_size: int = 32):
        super().__init__()
        if isinstance(saliency, Tensor) and saliency.dim() == 2:
            saliency = saliency[None, None]
        check_saliency(saliency)
        if saliency.shape[0] != 1:
            raise ValueError(f'saliency of a fixed warp must be [1, 1, h, w], got {tuple(saliency.shape)}')
        self.register_buffer('saliency', saliency.detach().clone().float(), persistent=False)
        self.separable = separable
        self.attraction_fwhm = attraction_fwhm
        self.anti_crop = anti_crop
        self.exact_per_level = exact_per_level
        self.clamp = clamp
        self.cache_size = cache_size
        # validate the hyper-parameters now, not at the first forward
        saliency_to_grid(self.saliency, separable, attraction_fwhm, anti_crop)
        self._fixed_grid: Optional[Tensor] = None
        self._cache: 'OrderedDict[tuple, object]' = OrderedDict()

    @classmethod
    def from_grid(cls, grid: Tensor, separable: bool = True, **kwargs) -> 'LZWarp':
        """A cached warp around a precomputed ``[1, h, w, 2]`` LZ grid (e.g. one recorded by a pipeline zoom)."""
        check_grid(grid)
        if grid.shape[0] != 1:
            raise ValueError(f'grid of a fixed warp must be [1, h, w, 2], got {tuple(grid.shape)}')
        _check_monotone(grid, separable)
        warp = cls(torch.ones(1, 1, *grid.shape[1:3]), separable=separable, **kwargs)
        warp._fixed_grid = grid.detach().to('cpu', torch.float32).clone()
        return warp

    @property
    def grid_shape(self) -> Tuple[int, int]:
        """``(h, w)`` of the saliency map and LZ grid."""
        return tuple(self.saliency.shape[-2:])

    def extra_repr(self) -> str:
        return (f'grid_shape={self.grid_shape}, separable={self.separable}, '
                f'attraction_fwhm={self.attraction_fwhm}, anti_crop={self.anti_crop}')

    def _cached(self, key, make):
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        value = make()
        self._cache[key] = value
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return value

    @torch.no_grad()
    def grid(self, device=None, dtype=torch.float32) -> Tensor:
        """The ``[1, h, w, 2]`` LZ grid on ``device`` in ``dtype`` (cached; computed in float64)."""
        device = torch.device(device) if device is not None else self.saliency.device
        def make():
            if self._fixed_grid is not None:
                return self._fixed_grid.to(device, dtype)
            return saliency_to_grid(self.saliency.to(device, torch.float64), self.separable, self.attraction_fwhm,
                                    self.anti_crop).to(dtype)

        return self._cached(('grid', device, dtype), make)

    def zoom(self, images: Tensor, out_shape: Sequence[int], img_shapes=None, out_img_shapes=None) -> Tensor:
        """Zoom ``[B, C, H, W]`` images to ``out_shape`` (see :func:`zoom`).

        The ``grid_sample`` grid is cached per (input shape, ``out_shape``,
        valid shapes, device, dtype), so per batch only ``grid_sample`` runs;
        the result is identical to :func:`zoom`.
        """
        grid = self.grid(images.device, images.dtype)
        check_batch(images, grid, 'images', '[B, C, H, W]')
        out_shape = check_shape_2d(out_shape, 'out_shape')
        key = ('zoom', tuple(images.shape[-2:]), out_shape, images.shape[0] if img_shapes or out_img_shapes else 1,
               _shapes_key(img_shapes), _shapes_key(out_img_shapes), images.device, images.dtype)
        with torch.no_grad():
            sampling = self._cached(key, lambda: zoom_sampling_grid(
                self.grid(images.device, torch.float64), images.shape[-2:], out_shape, images.shape[0], img_shapes,
                out_img_shapes, images.dtype))
        return F.grid_sample(images, sampling.expand(images.shape[0], -1, -1, -1), mode='bilinear',
                             padding_mode='zeros', align_corners=True)

    def unzoom_grids(self, feat_shapes, img_shapes=None, pad_shape=None, device=None,
                     dtype=torch.float32) -> List[Tensor]:
        """Cached unzoom sampling grids (:func:`sampling_grid` of :func:`unzoom_positions`), one per level."""
        device = torch.device(device) if device is not None else self.saliency.device
        feat_shapes = [tuple(int(v) for v in s) for s in feat_shapes]
        key = ('unzoom', tuple(feat_shapes), _shapes_key(img_shapes), None if pad_shape is None else tuple(
            int(v) for v in pad_shape), device, dtype)

        def make():
            positions = unzoom_positions(self.grid(device, torch.float64), feat_shapes, img_shapes, pad_shape,
                                         self.separable, self.exact_per_level, self.clamp)
            return [sampling_grid(p, s, dtype) for p, s in zip(positions, feat_shapes)]

        with torch.no_grad():
            return self._cached(key, make)

    def unzoom(self, features: Features, img_shapes=None, pad_shape=None) -> Features:
        """Unzoom ``features`` zoomed by this warp (see :func:`unzoom`)."""
        feats = [features] if isinstance(features, Tensor) else list(features)
        grids = self.unzoom_grids([f.shape[-2:] for f in feats], img_shapes, pad_shape, feats[0].device,
                                  feats[0].dtype)
        return apply_unzoom(features, grids)
