"""Zoom and unzoom: LZU's resampling of images and feature maps (§4, Figure 3).

Pixel convention. An LZ grid maps normalised zoomed-image coordinates to
normalised original-image coordinates, both in ``[-1, 1]``. How a pixel index
becomes a normalised coordinate is ``grid_sample``'s ``align_corners``:

* ``align_corners=False`` (default, the half-pixel convention): ``-1`` / ``+1``
  are the outer edges of the image and pixel ``i`` of an ``n``-pixel axis is
  ``(2i + 1) / n - 1``. This is the convention of OpenCV / mmcv ``Resize``
  and of the frameworks' label scaling (a box coordinate ``x`` becomes
  ``x * scale``), so a uniform zoom is exactly a bilinear ``Resize``.
* ``align_corners=True`` (the LZU authors' code): ``-1`` / ``+1`` are the
  centres of the first / last pixel, pixel ``i`` is ``2i / (n - 1) - 1``; a
  uniform zoom is then offset from ``Resize`` by up to ``(1 - s) / 2`` pixels
  at scale ``s``.

Geometry of padded batches and feature levels. A zoomed image of
``img_shape = (h_img, w_img)`` pixels may be padded at the bottom/right to
``pad_shape = (H_pad, W_pad)`` before the backbone. A feature level of stride
``s`` has ``ceil(H_pad / s)`` (or ``floor``) rows, and its cell ``(i, j)`` is
centred on pixel ``(i * s, j * s)``: the alignment of strided 3x3 / 1x1
convolutions with ``padding = kernel // 2`` (ResNet, FPN and its extra
P6/P7 convolutions, MiT's overlapping patch embeddings), and the anchor centre
of MMDetection's ``AnchorGenerator`` (``center_offset=0``); this is
``cell_centre='conv'``. Backbones built from non-overlapping ``s x s`` blocks
(Swin / ViT patch embeddings and merging, average pooling) centre cell ``i``
on pixel ``i * s + (s - 1) / 2`` instead: ``cell_centre='block'``. The stride is the
nominal one of the level (8, 16, ..., 128 for RetinaNet's P3-P7), not
``H_pad / h``: a 608-pixel batch has a 10-row P6 of stride 64, not 60.8. It
is inferred as the power of two ``s`` with ``floor(H_pad / s) <= h <=
ceil(H_pad / s)``, or given per level (``strides``). The warp's
normalised coordinates refer to the *valid* image only, so unzoom fills the
valid cells from valid cells only, and the padding cells with the padding
cells at the same place (the identity there); with a uniform saliency unzoom
is the identity.

Precision. Sampling positions are computed in float64 and rounded once to
float32 (float64 for float64 features); features in float16 / bfloat16 (AMP)
are sampled in float32 with autocast disabled and the result cast back, so a
mixed-precision model is unzoomed at the same positions as a float32 one.
"""
import math
from collections import OrderedDict
from typing import List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._validate import (check_batch, check_grid, check_saliency, check_separable, check_shape_2d, check_valid_shapes,
                        shape_pairs)
from .grid import saliency_to_grid
from .invert import _check_monotone, invert_1d, invert_lattice

Features = Union[Tensor, Sequence[Tensor]]
Positions = Union[Tensor, Tuple[Tensor, Tensor]]
Stride = Union[int, float, Sequence[float]]

#: Sampling position that reads zeros: normalised for ``grid_sample`` (zoom), in cells for unzoom.
_OUTSIDE = -4.0
#: Tolerance (normalised units) for a point on the border of the warped image to count as covered.
_COVER_TOL = 1e-9


def _sampling_dtype(dtype: torch.dtype) -> torch.dtype:
    """dtype that ``grid_sample`` runs in for maps of ``dtype``: float64 stays, everything else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _grid_sample(maps: Tensor, grid: Tensor, mode: str = 'bilinear') -> Tensor:
    """``grid_sample`` (``align_corners=True``, zero padding) in float32 / float64, autocast off.

    ``maps`` ``[B, C, H, W]`` in any floating dtype (float16 / bfloat16 are
    sampled in float32 and the result cast back); ``grid`` ``[B', Ho, Wo, 2]``
    (``B'`` = 1 broadcasts).
    """
    dtype = _sampling_dtype(maps.dtype)
    with torch.autocast(maps.device.type, enabled=False):
        out = F.grid_sample(maps.to(dtype), grid.to(dtype).expand(maps.shape[0], -1, -1, -1), mode=mode,
                            padding_mode='zeros', align_corners=True)
    return out.to(maps.dtype)


_CELL_CENTRES = ('conv', 'block')


def _cell_offset(stride: float, cell_centre: str) -> float:
    """Pixel of cell 0 of a level of ``stride``: 0 for conv-aligned cells, ``(stride - 1) / 2`` for blocks."""
    return 0.0 if cell_centre == 'conv' else (stride - 1) / 2


def _queries(n: int, stride: float, valid: Tensor, align_corners: bool = False, offset: float = 0.0) -> Tensor:
    """Normalised coordinates ``[B, n]`` of ``n`` cells of ``stride`` pixels.

    Cell ``k`` sits on pixel ``k * stride + offset``.

    ``valid`` ``[B]``: valid extent in pixels of each image (float64).
    """
    pix = torch.arange(n, device=valid.device, dtype=valid.dtype)[None] * stride + offset
    if align_corners:
        return 2 * pix / (valid[:, None] - 1).clamp_min(1) - 1
    return (2 * pix + 1) / valid[:, None] - 1


def _to_pixels(v: Tensor, valid: Tensor, align_corners: bool = False) -> Tensor:
    """Normalised coordinates -> pixel positions (``0 .. valid - 1`` at the first / last pixel centre)."""
    if align_corners:
        return (v + 1) * 0.5 * (valid - 1)
    return ((v + 1) * valid - 1) * 0.5


def _lattice2d(qx: Tensor, qy: Tensor) -> Tensor:
    bsz = max(qx.shape[0], qy.shape[0])
    return torch.stack([qx[:, None, :].expand(bsz, qy.shape[1], qx.shape[1]),
                        qy[:, :, None].expand(bsz, qy.shape[1], qx.shape[1])], -1)


def _eval_grid(grid: Tensor, qx: Tensor, qy: Tensor) -> Tensor:
    """The piecewise-bilinear warp ``T~`` (the bilinear interpolation of ``grid``) at the lattice ``qx x qy``.

    ``grid`` ``[B, h, w, 2]``, ``qx`` ``[B, W]``, ``qy`` ``[B, H]`` normalised
    zoomed-image coordinates; returns ``[B, H, W, 2]`` normalised original
    coordinates (border-extended outside ``[-1, 1]``).
    """
    return F.grid_sample(grid.permute(0, 3, 1, 2), _lattice2d(qx, qy), mode='bilinear', padding_mode='border',
                         align_corners=True).permute(0, 2, 3, 1)


def zoom(images: Tensor,
         grid: Tensor,
         out_shape: Sequence[int],
         img_shapes=None,
         out_img_shapes=None,
         mode: str = 'bilinear',
         align_corners: bool = False,
         separable: bool = False) -> Tensor:
    """Zoom images with an LZ grid (LZU §3, the saliency-guided downsampler).

    Output pixel ``(i, j)`` samples the input at ``T~(u)``, the piecewise-
    bilinear warp (the bilinear interpolation of ``grid``) at the pixel's
    normalised coordinate ``u``; positions are computed in float64, clamped
    to the valid input (border replication, as OpenCV's resize) and rounded
    once. With a uniform saliency and ``align_corners=False`` this is a
    bilinear ``Resize`` (OpenCV / mmcv ``imresize``, half-pixel centres).

    Args:
        images: ``[B, C, H, W]`` floating images (or any maps), possibly padded.
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
        align_corners: pixel convention (module docstring): False = half-pixel
            centres (``Resize``'s), True = the LZU authors' corner alignment.
        separable: the grid is separable (x depends on the column only, y on
            the row only; checked): the warp is evaluated along each axis
            (``O(H_out + W_out)``) instead of at every output pixel, the same
            positions up to float64 rounding. For grids made per image
            (adaptive saliency), where nothing is cached.

    Returns:
        ``[B, C, H_out, W_out]`` zoomed images, same dtype and device
        (float16 / bfloat16 are sampled in float32).

    Raises:
        ValueError: malformed ``images``/``grid``, mismatched batch sizes, bad
            ``out_shape``, ``img_shapes`` or ``out_img_shapes``.
    """
    check_grid(grid)
    check_batch(images, grid, 'images', '[B, C, H, W]')
    if mode not in ('bilinear', 'nearest'):
        raise ValueError(f"mode must be 'bilinear' or 'nearest', got {mode!r}")
    sampling = zoom_sampling_grid(grid, images.shape[-2:], out_shape, images.shape[0], img_shapes, out_img_shapes,
                                  _sampling_dtype(images.dtype), align_corners, separable)
    return _grid_sample(images, sampling, mode)


def zoom_sampling_grid(grid: Tensor,
                       in_shape: Sequence[int],
                       out_shape: Sequence[int],
                       batch_size: int = 1,
                       img_shapes=None,
                       out_img_shapes=None,
                       dtype=torch.float32,
                       align_corners: bool = False,
                       separable: bool = False) -> Tensor:
    """The ``grid_sample`` grid (``align_corners=True`` over the whole input tensor) of :func:`zoom`.

    Args: see :func:`zoom`; ``in_shape`` is ``(H, W)`` of the input tensor,
    ``batch_size`` its batch size.

    Returns:
        ``[B', H_out, W_out, 2]`` normalised grid over the ``in_shape`` input,
        ``B'`` = 1 when neither the grid nor the valid shapes vary over the batch.
        Positions are computed in float64 pixels and rounded once to ``dtype``.
    """
    out_shape = check_shape_2d(out_shape, 'out_shape')
    in_shape = tuple(int(v) for v in in_shape)
    grid = grid.to(torch.float64)
    per_sample = img_shapes is not None or out_img_shapes is not None
    bsz = batch_size if per_sample else grid.shape[0]
    if out_img_shapes is None:
        valid_out = grid.new_tensor([out_shape]).expand(bsz, 2)
    else:
        valid_out = check_valid_shapes(out_img_shapes, bsz, out_shape, 'out_img_shapes').to(grid.device, torch.float64)
    qx = _queries(out_shape[1], 1.0, valid_out[:, 1], align_corners)
    qy = _queries(out_shape[0], 1.0, valid_out[:, 0], align_corners)
    if img_shapes is not None:
        valid = check_valid_shapes(img_shapes, bsz, in_shape, 'img_shapes').to(grid.device, torch.float64)
    else:
        valid = grid.new_tensor([in_shape]).expand(bsz, 2)
    if separable:
        return _separable_zoom_sampling_grid(grid.expand(bsz, -1, -1, -1), qx, qy, valid, in_shape,
                                             out_img_shapes is not None, dtype, align_corners)
    up = _eval_grid(grid.expand(bsz, -1, -1, -1), qx, qy)
    size = valid[:, None, None, [1, 0]]
    pos = torch.minimum(_to_pixels(up, size, align_corners).clamp_min(0), size - 1)  # float64 input pixels
    if out_img_shapes is not None:
        inside = ((qx.abs() <= 1)[:, None, :] & (qy.abs() <= 1)[:, :, None])[..., None]
        pos = torch.where(inside, pos, torch.full_like(pos, _OUTSIDE))
    return sampling_grid(pos, in_shape, dtype)


def _separable_zoom_sampling_grid(grid: Tensor, qx: Tensor, qy: Tensor, valid: Tensor, in_shape, outside: bool,
                                  dtype, align_corners: bool) -> Tensor:
    """:func:`zoom_sampling_grid` of a separable ``[B, h, w, 2]`` float64 grid, evaluated per axis.

    ``qx`` ``[B, W_out]`` / ``qy`` ``[B, H_out]`` normalised output queries,
    ``valid`` ``[B, 2]`` valid input ``(h, w)``; ``outside``: queries beyond
    ``[-1, 1]`` (outside an output image's valid region) read zeros.
    """
    check_separable(grid.detach())
    h, w = grid.shape[1:3]
    # the piecewise-linear warp along each axis at the queries (grid_sample's border clamp: _interp1d clamps)
    ux = _interp1d(grid[:, 0, :, 0], (qx + 1) * (0.5 * (w - 1)))
    uy = _interp1d(grid[:, :, 0, 1], (qy + 1) * (0.5 * (h - 1)))
    axes = []
    for u, q, size, n in ((ux, qx, valid[:, 1:], in_shape[1]), (uy, qy, valid[:, :1], in_shape[0])):
        pos = torch.minimum(_to_pixels(u, size, align_corners).clamp_min(0), size - 1)
        scale = 2.0 / max(n - 1, 1)
        inside = q.abs() <= 1 if outside else torch.ones_like(q, dtype=torch.bool)
        far = pos.new_tensor(_OUTSIDE * scale - 1).to(dtype)  # a point outside an output image reads zeros
        axes.append((torch.where(inside, (pos * scale - 1).to(dtype), far), inside, far))
    (x, in_x, out_x), (y, in_y, out_y) = axes
    # both coordinates of a point are 'far' when either axis is outside, as in the 2-D evaluation
    cols = (in_y[:, :, None], x[:, None, :], out_x)
    rows = (in_x[:, None, :], y[:, :, None], out_y)
    if x.requires_grad or y.requires_grad:
        return torch.stack([torch.where(*cols), torch.where(*rows)], -1)
    sampling = x.new_empty(x.shape[0], y.shape[1], x.shape[1], 2)  # written in place: one pass per coordinate
    torch.where(*cols, out=sampling[..., 0])
    torch.where(*rows, out=sampling[..., 1])
    return sampling


def _axis_stride(feat: int, pad: int, stride: Optional[float], axis: str, level: int) -> float:
    """The stride of one axis of a level: checked if given, else inferred (see :func:`level_strides`)."""

    def fits(s):
        return s > 0 and math.floor(pad / s) <= feat <= math.ceil(pad / s)

    if stride is not None:
        if not fits(float(stride)):
            raise ValueError(f'strides[{level}] = {stride} does not fit feature level {level}: {feat} cells along '
                             f'{axis} for a padded batch of {pad} pixels (expected about {pad / stride:.2f})')
        return float(stride)
    ratio = pad / feat
    k = max(0, round(math.log2(ratio)))
    for s in (2**k, 2**(k + 1), 2**max(k - 1, 0)):
        if fits(s):
            return float(s)
    raise ValueError(f'cannot infer the stride of feature level {level}: {feat} cells along {axis} for a padded batch '
                     f'of {pad} pixels fit no power-of-two stride s with floor({pad}/s) <= {feat} <= ceil({pad}/s); '
                     'pass strides=[...] (one per level, pixels; model config: lzu=dict(strides=[...]))')


def level_strides(feat_shapes: Sequence[Sequence[int]],
                  pad_shape: Sequence[int],
                  strides: Optional[Sequence[Stride]] = None) -> List[Tuple[float, float]]:
    """Nominal ``(stride_y, stride_x)`` of each feature level of a padded batch, in pixels.

    A level made by strided convolutions from a ``pad_shape`` batch has
    ``ceil(H_pad / s)`` rows (``floor`` for unpadded convolutions) and its
    cell ``(i, j)`` sits at pixel ``(i * s, j * s)`` (module docstring). The
    stride is inferred per axis as the power of two ``s`` with ``floor(H_pad /
    s) <= h <= ceil(H_pad / s)`` nearest to ``H_pad / h``: RetinaNet's P6 on a
    608-pixel batch (10 rows) gets 64, not 60.8. Other strides must be given.

    Args:
        feat_shapes: ``(h, w)`` of each level.
        pad_shape: ``(H_pad, W_pad)`` of the batch tensor fed to the backbone.
        strides: optional per-level strides in pixels (a number, or a pair
            ``(stride_y, stride_x)``), checked against the shapes; e.g. the
            prior generator's strides.

    Returns:
        ``[(stride_y, stride_x), ...]`` in the order of ``feat_shapes``.

    Raises:
        ValueError: a given stride does not fit its level, or no power-of-two
            stride explains a level's shape (then pass ``strides``).
    """
    pad_shape = check_shape_2d(pad_shape, 'pad_shape')
    if strides is not None and len(strides) != len(feat_shapes):
        raise ValueError(f'strides must give one stride per feature level ({len(feat_shapes)}), got {len(strides)}')
    out = []
    for k, (hf, wf) in enumerate(feat_shapes):
        given = None if strides is None else strides[k]
        sy, sx = (given, given) if given is None or isinstance(given, (int, float)) else tuple(given)
        out.append((_axis_stride(hf, pad_shape[0], sy, 'y', k), _axis_stride(wf, pad_shape[1], sx, 'x', k)))
    return out


def unzoom_positions(grid: Tensor,
                     feat_shapes: Sequence[Tuple[int, int]],
                     img_shapes=None,
                     pad_shape: Optional[Sequence[int]] = None,
                     separable: bool = True,
                     exact_per_level: bool = False,
                     clamp: bool = False,
                     strides: Optional[Sequence[Stride]] = None,
                     align_corners: bool = False,
                     cell_centre: str = 'conv') -> List[Tensor]:
    """Where each cell of each unzoomed feature level reads the zoomed features (LZU §4.1-4.2).

    Cell ``(i, j)`` of a level of stride ``s`` sits at pixel ``(i s, j s)`` of
    the un-warped image (``cell_centre='conv'``; see the module docstring for
    ``'block'``); it reads the zoomed features at the cell that sits on
    ``T~^-1`` of that point, the exact inverse of the piecewise-bilinear warp.
    The inverse is computed once at the finest level and bilinearly resampled
    for the coarser ones (§4.2), or exactly for every level with
    ``exact_per_level=True``. Batch padding is exact (see the module
    docstring): cells of the valid region read valid cells only; cells of the
    padding read the padding cell at the same place (the identity), so with a
    uniform saliency unzoom is the identity everywhere. Computed in float64
    in cell units.

    Args:
        grid: ``[B, h, w, 2]`` (or ``[1, h, w, 2]``) normalised LZ grid.
        feat_shapes: ``(hf, wf)`` of each feature level, any order.
        img_shapes: valid zoomed-image ``(h_img, w_img)`` in pixels, one pair
            or one per batch element. Default: ``pad_shape`` (no padding).
        pad_shape: ``(H_pad, W_pad)`` of the batch tensor fed to the backbone,
            pixels. Default: ``img_shapes`` if it is one pair, else each level
            is taken as fully valid at stride 1 (a map of ``n`` cells spans
            ``n`` pixels).
        separable: invert separably (exact for separable grids; a
            non-separable grid raises) or with the full piecewise-bilinear
            inversion.
        exact_per_level: invert at every level instead of resampling the
            finest level's inverse.
        clamp: clamp points no tile covers onto the border of the valid region
            instead of reading zeros there.
        strides: optional per-level strides in pixels (see
            :func:`level_strides`); inferred from the shapes by default.
        align_corners: pixel convention of the zoom (module docstring).
        cell_centre: where a cell sits in its level's stride, ``'conv'``
            (pixel ``i * s``: strided convolutions, the default) or
            ``'block'`` (pixel ``i * s + (s - 1) / 2``: patch embeddings,
            pooling); see the module docstring.

    Returns:
        One entry per level, in the order of ``feat_shapes``, in float64 cells
        of that level (``0 .. wf-1``): where each output cell reads. For
        ``separable=True`` a tuple ``(x [B, wf], y [B, hf])`` of a product
        lattice (read with :func:`sample_bilinear`; outside the valid region
        each axis is the identity), else a ``[B, hf, wf, 2]`` ``(x, y)`` tensor
        (read with :func:`sample_bilinear`; the identity outside the valid
        region). Valid cells read positions in ``[0, floor(last valid cell)]``;
        points no tile covers get a negative position (zeros).

    Raises:
        ValueError: malformed ``grid``, ``feat_shapes``, ``img_shapes``,
            ``pad_shape``, ``strides`` or ``cell_centre``, mismatched batch
            sizes, or a non-separable grid with ``separable=True``.
    """
    check_grid(grid)
    if cell_centre not in _CELL_CENTRES:
        raise ValueError(f'cell_centre must be one of {_CELL_CENTRES}, got {cell_centre!r}')
    _check_monotone(grid, separable)  # a separable inversion needs a separable, monotone grid
    feat_shapes = [check_shape_2d(s, 'feat_shapes[%d]' % k) for k, s in enumerate(feat_shapes)]
    g = grid.to(torch.float64)
    if img_shapes is None and pad_shape is None:
        if strides is not None:
            raise ValueError('strides need pad_shape (or img_shapes): the stride of a level is relative to the '
                             'padded batch')
        bsz = grid.shape[0]
        valid = None  # each level fully valid: a map of n cells has valid extent n pixels at stride 1
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
        level_stride = dict(zip(map(tuple, feat_shapes), level_strides(feat_shapes, pad_shape, strides)))
    g = g.expand(bsz, -1, -1, -1)
    h, w = grid.shape[1:3]
    xs_marginal, ys_marginal = g[..., 0].mean(1), g[..., 1].mean(2)

    def geometry(shape):
        """(qx [B, wf], qy [B, hf], valid size in pixels [B, 2] (h, w), strides (sy, sx))."""
        hf, wf = shape
        if valid is None:
            size, (sy, sx) = g.new_tensor([[hf, wf]]).expand(bsz, 2), (1.0, 1.0)
        else:
            size, (sy, sx) = valid, level_stride[tuple(shape)]
        return (_queries(wf, sx, size[:, 1], align_corners, _cell_offset(sx, cell_centre)),
                _queries(hf, sy, size[:, 0], align_corners, _cell_offset(sy, cell_centre)), size, (sy, sx))

    def inverse(qx, qy):
        """Normalised warped positions: ((x [B, wf], y [B, hf]) if separable else [B, hf, wf, 2])."""
        if separable:
            return (invert_1d(xs_marginal, qx) * (2.0 / (w - 1)) - 1, invert_1d(ys_marginal, qy) * (2.0 / (h - 1)) - 1)
        return invert_lattice(g, qx, qy, separable=False)

    def to_cells(inv, q, size, stride, n):
        """Normalised warped positions -> cells: valid cells only, identity outside the valid region.

        ``inv`` and ``q`` (the queries) broadcast together; ``size`` is the
        valid extent in pixels, ``stride`` the level's, ``n`` its cell count.
        """
        offset = _cell_offset(stride, cell_centre)
        last = (size - 1 - offset) / stride  # the last valid pixel, in cells
        pos = (torch.minimum(_to_pixels(inv, size, align_corners).clamp_min(0), size - 1) - offset) / stride
        pos = torch.minimum(pos.clamp_min(0), last.floor())  # the last whole valid cell is floor(last)
        if not clamp:  # points no tile covers read zeros
            pos = torch.where(inv.abs() <= 1 + _COVER_TOL, pos, torch.full_like(pos, _OUTSIDE))
        ident = torch.arange(n, device=g.device, dtype=g.dtype)
        inside = _to_pixels(q, size, align_corners) <= size - 1 + 1e-6  # the cell's centre is on an image pixel
        return pos, inside, ident

    def finish(inv, qx, qy, size, strides_, shape):
        hf, wf = shape
        sy, sx = strides_
        if separable:
            px, in_x, ix = to_cells(inv[0], qx, size[:, 1:], sx, wf)
            py, in_y, iy = to_cells(inv[1], qy, size[:, :1], sy, hf)
            return torch.where(in_x, px, ix), torch.where(in_y, py, iy)
        px, in_x, ix = to_cells(inv[..., 0], qx[:, None, :], size[:, None, None, 1], sx, wf)
        py, in_y, iy = to_cells(inv[..., 1], qy[:, :, None], size[:, None, None, 0], sy, hf)
        inside = in_x & in_y
        return torch.stack([torch.where(inside, px, ix[None, None, :].expand_as(px)),
                            torch.where(inside, py, iy[None, :, None].expand_as(py))], -1)

    if exact_per_level or len(feat_shapes) == 1:
        out = []
        for shape in feat_shapes:
            qx, qy, size, strides_ = geometry(shape)
            out.append(finish(inverse(qx, qy), qx, qy, size, strides_, shape))
        return out

    finest = max(feat_shapes, key=lambda s: s[0] * s[1])
    qx0, qy0, _, _ = geometry(finest)
    inv0 = inverse(qx0, qy0)
    out = []
    for shape in feat_shapes:
        qx, qy, size, strides_ = geometry(shape)
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
        out.append(finish(inv, qx, qy, size, strides_, shape))
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
    :func:`sampling_grid` ``(positions)``, in float32 for float16 / bfloat16
    features (float64 for float64 ones).

    Args:
        features: ``[B, C, H, W]``.
        positions: ``[B, Ho, Wo, 2]`` (or ``[1, Ho, Wo, 2]``) ``(x, y)`` in
            cells, or a separable pair ``(x [B, Wo], y [B, Ho])``.

    Returns:
        ``[B, C, Ho, Wo]`` in the dtype of ``features``.
    """
    return _grid_sample(features, sampling_grid(positions, features.shape[-2:], _sampling_dtype(features.dtype)))


def apply_unzoom(features: Features, grids: Sequence[Tensor]) -> Features:
    """Resample feature maps with unzoom sampling grids (:func:`sampling_grid` of :func:`unzoom_positions`).

    Args:
        features: ``[B, C, hf, wf]`` map or a list/tuple of them (any floating
            dtype; float16 / bfloat16 are sampled in float32, autocast off).
        grids: one ``[B or 1, hf, wf, 2]`` grid per map.

    Returns:
        The resampled maps, same structure, shapes and dtypes.
    """
    single = isinstance(features, Tensor)
    feats = [features] if single else list(features)
    out = [_grid_sample(f, g) for f, g in zip(feats, grids)]
    if single:
        return out[0]
    return tuple(out) if isinstance(features, tuple) else out


def unzoom(features: Features,
           grid: Tensor,
           img_shapes=None,
           pad_shape: Optional[Sequence[int]] = None,
           separable: bool = True,
           exact_per_level: bool = False,
           clamp: bool = False,
           strides: Optional[Sequence[Stride]] = None,
           align_corners: bool = False,
           cell_centre: str = 'conv') -> Features:
    """Unzoom feature maps computed on a zoomed image (LZU §4, Figure 3).

    Each map is resampled with the inverse of the piecewise-bilinear warp, so
    cell ``(i, j)`` of a level of stride ``s`` holds the feature of the zoomed
    image at the point that the warp sent to un-warped pixel ``(i s, j s)``.
    Heads, losses and labels then work in un-warped coordinates. Batch
    padding is exact (see the module docstring); with a uniform saliency
    unzoom is the identity.

    Args:
        features: ``[B, C, hf, wf]`` map, or a list/tuple of them (FPN levels).
        grid: ``[B, h, w, 2]`` or ``[1, h, w, 2]`` normalised LZ grid of the zoom.
        img_shapes, pad_shape, separable, exact_per_level, clamp, strides,
            align_corners, cell_centre: see :func:`unzoom_positions`.

    Returns:
        The unzoomed maps, same structure, shapes, dtype and device.

    Raises:
        ValueError: malformed ``grid``/``features``, mismatched batch sizes,
            bad ``img_shapes``/``pad_shape``/``strides``, or a non-separable
            grid with ``separable=True``.
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
                                 exact_per_level, clamp, strides, align_corners, cell_centre)
    return apply_unzoom(features, [
        sampling_grid(p, f.shape[-2:], _sampling_dtype(f.dtype)) for p, f in zip(positions, feats)])


def _shapes_key(shapes):
    return None if shapes is None else tuple(tuple(float(v) for v in s) for s in shape_pairs(shapes))


def _strides_key(strides):
    if strides is None:
        return None
    return tuple((float(s), float(s)) if isinstance(s, (int, float)) else tuple(float(v) for v in s) for s in strides)


def _nbytes(value) -> int:
    if isinstance(value, Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, (list, tuple)):
        return sum(_nbytes(v) for v in value)
    return 0


class LZWarp(nn.Module):
    """A fixed (dataset-wide) LZ warp with cached forward and inverse grids.

    Holds one fixed saliency map and the LZ hyper-parameters. The forward grid
    is computed once per (device, dtype); the zoom sampling grid once per
    (input shape, output shape, valid shapes, device, dtype); the unzoom grids
    once per (feature shapes, image and pad shapes, strides, device, dtype). A
    new shape, device or dtype gets its own entry, so a grid is never reused
    stale. The cache is bounded by entry count and by bytes (least recently
    used entries are dropped): a 1920x1200 zoom grid is 18 MB, so multi-scale
    training must not keep one per scale forever.

    Args:
        saliency: ``[1, 1, h, w]`` (or ``[h, w]``) non-negative saliency.
        separable: separable LZ grid and inversion (FOVEA).
        attraction_fwhm: attraction kernel FWHM in grid cells.
        anti_crop: reflect-pad the saliency (FOVEA's anti-crop).
        exact_per_level: unzoom each level with its own exact inverse instead
            of resampling the finest level's (paper §4.2).
        clamp: border instead of zero padding where no tile covers a point.
        align_corners: pixel convention of zoom and unzoom (see the module
            docstring): False = half-pixel centres, as ``Resize``.
        cache_size: maximum number of cached entries.
        cache_bytes: maximum total size of the cached grids in bytes (an
            entry larger than this is computed but not kept).

    Raises:
        ValueError: invalid saliency (see :func:`saliency_to_grid`) or cache
            bounds.
    """

    def __init__(self,
                 saliency: Tensor,
                 separable: bool = True,
                 attraction_fwhm: float = 13.,
                 anti_crop: bool = True,
                 exact_per_level: bool = False,
                 clamp: bool = False,
                 align_corners: bool = False,
                 cache_size: int = 32,
                 cache_bytes: int = 256 * 2**20):
        super().__init__()
        if isinstance(saliency, Tensor) and saliency.dim() == 2:
            saliency = saliency[None, None]
        check_saliency(saliency)
        if saliency.shape[0] != 1:
            raise ValueError(f'saliency of a fixed warp must be [1, 1, h, w], got {tuple(saliency.shape)}')
        if int(cache_size) < 1 or int(cache_bytes) < 0:
            raise ValueError(f'cache_size must be >= 1 and cache_bytes >= 0, got {cache_size}, {cache_bytes}')
        self.register_buffer('saliency', saliency.detach().clone().float(), persistent=False)
        self.separable = bool(separable)
        self.attraction_fwhm = attraction_fwhm
        self.anti_crop = bool(anti_crop)
        self.exact_per_level = bool(exact_per_level)
        self.clamp = bool(clamp)
        self.align_corners = bool(align_corners)
        self.cache_size = int(cache_size)
        self.cache_bytes = int(cache_bytes)
        # validate the hyper-parameters now, not at the first forward
        saliency_to_grid(self.saliency, separable, attraction_fwhm, anti_crop)
        self._fixed_grid: Optional[Tensor] = None
        self._cache: 'OrderedDict[tuple, object]' = OrderedDict()
        self._cache_nbytes = 0

    @classmethod
    def from_grid(cls, grid: Tensor, separable: bool = True, **kwargs) -> 'LZWarp':
        """A cached warp around a precomputed ``[1, h, w, 2]`` LZ grid (e.g. one recorded by a pipeline zoom).

        Raises:
            ValueError: malformed grid, a folded grid, or a non-separable grid
                with ``separable=True``.
        """
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

    @property
    def cache_nbytes(self) -> int:
        """Bytes held by the cached grids."""
        return self._cache_nbytes

    def extra_repr(self) -> str:
        return (f'grid_shape={self.grid_shape}, separable={self.separable}, '
                f'attraction_fwhm={self.attraction_fwhm}, anti_crop={self.anti_crop}, '
                f'align_corners={self.align_corners}')

    def _cached(self, key, make):
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        value = make()
        size = _nbytes(value)
        if size > self.cache_bytes:
            return value
        self._cache[key] = value
        self._cache_nbytes += size
        while len(self._cache) > self.cache_size or self._cache_nbytes > self.cache_bytes:
            _, dropped = self._cache.popitem(last=False)
            self._cache_nbytes -= _nbytes(dropped)
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
        the result is identical to :func:`zoom` with :meth:`grid` in float64.
        ``img_shapes`` / ``out_img_shapes`` may be pairs, lists of pairs or
        ``[B, 2]`` tensors.
        """
        check_batch(images, self.grid(images.device), 'images', '[B, C, H, W]')
        sampling = self.zoom_sampling_grid(images.shape[-2:], out_shape, images.shape[0], img_shapes, out_img_shapes,
                                           images.device, _sampling_dtype(images.dtype))
        return _grid_sample(images, sampling)

    def zoom_sampling_grid(self, in_shape: Sequence[int], out_shape: Sequence[int], batch_size: int = 1,
                           img_shapes=None, out_img_shapes=None, device=None, dtype=torch.float32) -> Tensor:
        """The cached ``grid_sample`` grid of :meth:`zoom` (:func:`zoom_sampling_grid` of this warp's grid).

        ``[B', H_out, W_out, 2]`` normalised over the ``in_shape`` input tensor
        (``align_corners=True``), ``B'`` = 1 unless the valid shapes vary over
        the batch; cached per (input shape, ``out_shape``, valid shapes,
        device, dtype). What an interpolation other than bilinear (e.g.
        :class:`lzu_mm.common.resampling.DownsizeNet`) samples at.
        """
        out_shape = check_shape_2d(out_shape, 'out_shape')
        in_shape = tuple(int(v) for v in in_shape)
        device = torch.device(device) if device is not None else self.saliency.device
        per_sample = img_shapes is not None or out_img_shapes is not None
        key = ('zoom', in_shape, out_shape, batch_size if per_sample else 1, _shapes_key(img_shapes),
               _shapes_key(out_img_shapes), device, dtype)
        with torch.no_grad():
            return self._cached(key, lambda: zoom_sampling_grid(
                self.grid(device, torch.float64), in_shape, out_shape, batch_size, img_shapes, out_img_shapes, dtype,
                self.align_corners))

    def unzoom_grids(self, feat_shapes, img_shapes=None, pad_shape=None, device=None, dtype=torch.float32,
                     strides: Optional[Sequence[Stride]] = None, cell_centre: str = 'conv') -> List[Tensor]:
        """Cached unzoom sampling grids (:func:`sampling_grid` of :func:`unzoom_positions`), one per level.

        ``dtype`` is that of the features: float16 / bfloat16 features get
        float32 grids (they are sampled in float32).
        """
        device = torch.device(device) if device is not None else self.saliency.device
        dtype = _sampling_dtype(dtype)
        feat_shapes = [tuple(int(v) for v in s) for s in feat_shapes]
        key = ('unzoom', tuple(feat_shapes), _shapes_key(img_shapes), None if pad_shape is None else tuple(
            int(v) for v in pad_shape), _strides_key(strides), cell_centre, device, dtype)

        def make():
            positions = unzoom_positions(self.grid(device, torch.float64), feat_shapes, img_shapes, pad_shape,
                                         self.separable, self.exact_per_level, self.clamp, strides,
                                         self.align_corners, cell_centre)
            return [sampling_grid(p, s, dtype) for p, s in zip(positions, feat_shapes)]

        with torch.no_grad():
            return self._cached(key, make)

    def unzoom(self, features: Features, img_shapes=None, pad_shape=None,
               strides: Optional[Sequence[Stride]] = None, cell_centre: str = 'conv') -> Features:
        """Unzoom ``features`` zoomed by this warp (see :func:`unzoom`)."""
        feats = [features] if isinstance(features, Tensor) else list(features)
        grids = self.unzoom_grids([f.shape[-2:] for f in feats], img_shapes, pad_shape, feats[0].device,
                                  feats[0].dtype, strides, cell_centre)
        return apply_unzoom(features, grids)
