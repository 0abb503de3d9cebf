"""What an LZ warp does to an image, as arrays (pure torch + numpy, no plotting).

These are the quantities drawn by :mod:`lzu_mm.visualization.panels` (the
paper's Figures 2 and 6): the zoomed image, the sampling grid in original-image
pixels, the magnification ratio of the warp and the unzoomed reconstruction
``unzoom(zoom(image))`` with the regions that the inverse does not cover.

Conventions: images are ``[H, W, C]`` (or ``[H, W]``) numpy arrays in RGB
order, pixel coordinates ``(x, y)`` with ``(0, 0)`` the centre of the top-left
pixel; LZ grids are ``[h, w, 2]`` (or ``[1, h, w, 2]``) normalised ``(x, y)``
points in ``[-1, 1]``, as made by :func:`lzu_mm.ops.saliency_to_grid` and
recorded by the pipeline zoom in ``results['lzu_zoom']['grid']``. Pixels map
to normalised coordinates with the zoom's convention, ``align_corners``
(default False: half-pixel centres, as ``Resize``; see
:mod:`lzu_mm.ops.warp`), which every function here takes.
"""
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from lzu_mm.ops import zoom
from lzu_mm.ops.invert import invert_lattice
from lzu_mm.ops._validate import check_grid, check_shape_2d

ArrayLike = Union[np.ndarray, Tensor]

#: Tolerance (normalised units) for deciding that an inverse point lies inside the zoomed image.
_COVER_TOL = 1e-4


def as_grid(grid: ArrayLike) -> Tensor:
    """An LZ grid as a ``[1, h, w, 2]`` float64 tensor.

    Args:
        grid: ``[h, w, 2]`` or ``[1, h, w, 2]`` array or tensor of normalised
            ``(x, y)`` points.

    Raises:
        ValueError: not of that shape, not floating point or not finite.
    """
    g = torch.as_tensor(np.asarray(grid) if not isinstance(grid, Tensor) else grid)
    if g.dim() == 3:
        g = g[None]
    if g.dim() != 4 or g.shape[0] != 1:
        raise ValueError(f'grid must have shape [h, w, 2] or [1, h, w, 2], got {tuple(g.shape)}')
    check_grid(g)
    return g.detach().to('cpu', torch.float64)


def _image_tensor(image: np.ndarray) -> Tensor:
    """``[H, W, C]`` / ``[H, W]`` array -> ``[1, C, H, W]`` float64 tensor."""
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3):
        shape = getattr(image, 'shape', type(image).__name__)
        raise ValueError(f'image must be an [H, W, C] or [H, W] numpy array, got {shape}')
    arr = image if image.ndim == 3 else image[..., None]
    return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)[None].to(torch.float64)


def _to_image(t: Tensor, like: np.ndarray) -> np.ndarray:
    out = t[0].permute(1, 2, 0).numpy()
    if np.issubdtype(like.dtype, np.integer):
        info = np.iinfo(like.dtype)
        out = np.clip(np.rint(out), info.min, info.max)
    out = out.astype(like.dtype)
    return out if like.ndim == 3 else out[..., 0]


def zoom_image(image: np.ndarray, grid: ArrayLike, out_shape: Sequence[int], align_corners: bool = False) -> np.ndarray:
    """Zoom an image with an LZ grid (LZU §3): ``[H, W, C]`` -> ``[h_out, w_out, C]``, same dtype.

    Same resampling as the pipeline zoom transform (:func:`lzu_mm.ops.zoom`);
    with a uniform grid it is :func:`uniform_resize`.
    """
    out_shape = check_shape_2d(out_shape, 'out_shape')
    return _to_image(zoom(_image_tensor(image), as_grid(grid), out_shape, align_corners=align_corners), image)


def uniform_resize(image: np.ndarray, out_shape: Sequence[int], align_corners: bool = False) -> np.ndarray:
    """The uniform bilinear resize that the zoom replaces, for comparison (``Resize``'s with the default convention)."""
    out_shape = check_shape_2d(out_shape, 'out_shape')
    t = F.interpolate(_image_tensor(image), size=out_shape, mode='bilinear', align_corners=align_corners)
    return _to_image(t, image)


def _pixel_lattice(n: int, align_corners: bool) -> Tensor:
    """Normalised coordinates ``[1, n]`` of the pixel centres of an ``n``-pixel axis."""
    idx = torch.arange(n, dtype=torch.float64)
    return (2 * idx / max(n - 1, 1) - 1 if align_corners else (2 * idx + 1) / n - 1)[None]


def inverse_grid(grid: ArrayLike, image_shape: Sequence[int], separable: bool = True,
                 align_corners: bool = False) -> Tensor:
    """The unzoom grid at the original image's resolution: ``[H, W, 2]`` normalised warped positions.

    The exact inverse of the piecewise-bilinear warp (LZU §4.1, eq. 5-7;
    :func:`lzu_mm.ops.invert_lattice`) at every pixel centre of an
    ``image_shape`` image. Points that no tile of the warp covers lie outside
    ``[-1, 1]``.
    """
    big_h, big_w = check_shape_2d(image_shape, 'image_shape')
    return invert_lattice(as_grid(grid), _pixel_lattice(big_w, align_corners), _pixel_lattice(big_h, align_corners),
                          separable=separable)[0]


def coverage_mask(inverse: Tensor) -> np.ndarray:
    """``[H, W]`` bool: True where the inverse warp covers the original pixel (its preimage is in the zoomed image)."""
    return (inverse.abs() <= 1 + _COVER_TOL).all(-1).numpy()


def unzoom_image(zoomed: np.ndarray,
                 grid: ArrayLike,
                 image_shape: Sequence[int],
                 separable: bool = True,
                 align_corners: bool = False) -> Tuple[np.ndarray, np.ndarray]:
    """Unzoom a zoomed image back to the original geometry (LZU §4.1, the inverse of ``T~``).

    Args:
        zoomed: ``[h, w, C]`` zoomed image.
        grid: the LZ grid that made it.
        image_shape: ``(H, W)`` of the reconstruction (any resolution of the
            original image: the grid is normalised).
        separable: invert separably (exact for separable grids).
        align_corners: pixel convention of the zoom.

    Returns:
        ``([H, W, C]`` reconstruction (zeros where not covered), ``[H, W]``
        bool mask of the pixels the inverse does not cover).
    """
    inv = inverse_grid(grid, image_shape, separable, align_corners)
    covered = coverage_mask(inv)
    rec = F.grid_sample(_image_tensor(zoomed), inv[None], mode='bilinear', padding_mode='border',
                        align_corners=align_corners)
    rec = rec * torch.from_numpy(covered).to(rec.dtype)
    return _to_image(rec, zoomed), ~covered


def magnification_map(grid: ArrayLike, image_shape: Sequence[int], separable: bool = True,
                      align_corners: bool = False) -> np.ndarray:
    """Magnification ratio of the warp over the original image (paper Figure 6, last column).

    The local sampling density of the zoom relative to a uniform resize to the
    same output size: the zoom samples the original image at ``T(u)`` for
    zoomed-image positions ``u``, so the density at original point ``p`` is
    ``|det J_{T^-1}(p)|`` with both coordinate systems normalised to
    ``[-1, 1]`` (a uniform warp gives exactly 1 everywhere; > 1 means the
    region is magnified, i.e. gets more output pixels than under a uniform
    resize). ``T^-1`` is the exact inverse of the piecewise-bilinear warp
    (:func:`lzu_mm.ops.invert_grid`); the Jacobian is taken by central finite
    differences on the pixel lattice. Pixels that the zoom never samples
    (outside every tile, possible without anti-crop) get 0.

    For an anti-crop warp ``T^-1`` maps the image onto the whole zoomed image,
    so the mean magnification over the original image is 1 (up to the
    finite-difference error at the borders).

    Args:
        grid: ``[h, w, 2]`` / ``[1, h, w, 2]`` normalised LZ grid.
        image_shape: ``(H, W)`` pixels of the map (any resolution; >= 2 each).
        separable: invert separably (exact for separable grids).
        align_corners: pixel convention of the zoom.

    Returns:
        ``[H, W]`` float64 array, unit: multiples of the uniform sampling density.

    Raises:
        ValueError: malformed ``grid`` or ``image_shape`` smaller than 2x2.
    """
    big_h, big_w = check_shape_2d(image_shape, 'image_shape')
    if big_h < 2 or big_w < 2:
        raise ValueError(f'image_shape must be at least (2, 2) for finite differences, got {(big_h, big_w)}')
    inv = inverse_grid(grid, (big_h, big_w), separable, align_corners)  # [H, W, 2]
    dx = 2.0 / (big_w - 1) if align_corners else 2.0 / big_w  # normalised spacing of the original image's pixels
    dy = 2.0 / (big_h - 1) if align_corners else 2.0 / big_h
    d_dx = torch.gradient(inv, spacing=dx, dim=1)[0]  # [H, W, 2]: d(inv x, inv y)/dx
    d_dy = torch.gradient(inv, spacing=dy, dim=0)[0]
    det = d_dx[..., 0] * d_dy[..., 1] - d_dx[..., 1] * d_dy[..., 0]
    mag = det.abs()
    mag = torch.where(torch.from_numpy(coverage_mask(inv)), mag, torch.zeros_like(mag))
    return mag.numpy()


def grid_lines_px(grid: ArrayLike, image_shape: Sequence[int],
                  align_corners: bool = False) -> Tuple[np.ndarray, np.ndarray]:
    """The LZ sampling grid in original-image pixels, for drawing over the image.

    Returns:
        ``(rows [h, w, 2], cols [w, h, 2])``: the ``(x, y)`` pixel positions
        sampled by each row and each column of the ``h x w`` grid (row ``i``
        is a polyline of ``w`` points; column ``j`` one of ``h`` points).
        Consecutive points are joined by straight lines, which is exactly the
        piecewise-bilinear warp along grid lines.
    """
    big_h, big_w = check_shape_2d(image_shape, 'image_shape')
    g = as_grid(grid)[0].numpy()
    if align_corners:
        px = np.stack([(g[..., 0] + 1) * 0.5 * (big_w - 1), (g[..., 1] + 1) * 0.5 * (big_h - 1)], -1)
    else:
        px = np.stack([((g[..., 0] + 1) * big_w - 1) * 0.5, ((g[..., 1] + 1) * big_h - 1) * 0.5], -1)
    return px, px.transpose(1, 0, 2)


def upsample_saliency(saliency: ArrayLike, image_shape: Sequence[int]) -> np.ndarray:
    """A ``[h, w]`` (or ``[1, 1, h, w]``) saliency upsampled bilinearly to ``image_shape``, in multiples of its mean.

    Unit: a value of 1 is the saliency of a uniform map (each of the ``h * w``
    grid cells getting ``1 / (h w)`` of the total).
    """
    s = torch.as_tensor(np.asarray(saliency) if not isinstance(saliency, Tensor) else saliency)
    s = s.detach().to('cpu', torch.float64).reshape(1, 1, *s.shape[-2:])
    s = s / s.mean().clamp_min(1e-12)
    up = F.interpolate(s, size=check_shape_2d(image_shape, 'image_shape'), mode='bilinear', align_corners=True)
    return up[0, 0].numpy()


@dataclass
class WarpPanels:
    """Everything the panel figure shows for one image and one warp (see :func:`compute_warp_panels`).

    Attributes:
        image: ``[H, W, 3]`` original image at display resolution.
        zoomed: ``[h_out, w_out, 3]`` zoomed image (from the full-resolution original).
        uniform: ``[h_out, w_out, 3]`` uniform resize to the same size, for comparison.
        unzoomed: ``[H, W, 3]`` ``unzoom(zoom(image))`` at display resolution.
        uncovered: ``[H, W]`` bool, True where the inverse does not cover the pixel.
        magnification: ``[H, W]`` magnification ratio (× uniform sampling density).
        grid: ``[h, w, 2]`` normalised LZ grid.
        saliency: ``[h, w]`` saliency, or None when unknown.
        scale: display pixels per original pixel (``(sx, sy)``).
        ori_shape: ``(H0, W0)`` of the full-resolution original.
        align_corners: pixel convention of the zoom (:mod:`lzu_mm.ops.warp`).
        coefficients: ``[4, h_out, w_out]`` interpolation coefficients ``a1..a4``
            of a learned interpolation (DownsizeNet) at each zoomed pixel, or None.
        bilinear: ``[4, h_out, w_out]`` bilinear weights at the same positions
            (what the coefficients start as), or None.
        saliency_kind: ``'fixed'`` or ``'learned'`` (a per-image saliency
            predicted by the model), for the titles.
    """
    image: np.ndarray
    zoomed: np.ndarray
    uniform: np.ndarray
    unzoomed: np.ndarray
    uncovered: np.ndarray
    magnification: np.ndarray
    grid: np.ndarray
    saliency: Optional[np.ndarray]
    scale: Tuple[float, float]
    ori_shape: Tuple[int, int]
    align_corners: bool = False
    coefficients: Optional[np.ndarray] = None
    bilinear: Optional[np.ndarray] = None
    saliency_kind: str = 'fixed'

    def coefficient_deviation(self) -> Optional[np.ndarray]:
        """``[h_out, w_out]`` total-variation distance ``sum_i |a_i - w_i| / 2`` (in [0, 1]) from bilinear, or None."""
        if self.coefficients is None or self.bilinear is None:
            return None
        return 0.5 * np.abs(self.coefficients - self.bilinear).sum(0)

    def summary(self) -> dict:
        """Scalar facts about the warp (JSON-serialisable)."""
        diff = np.abs(self.zoomed.astype(np.float64) - self.uniform.astype(np.float64)).mean()
        out = dict(ori_shape=list(self.ori_shape), zoomed_shape=list(self.zoomed.shape[:2]),
                   grid_shape=list(self.grid.shape[:2]), mean_magnification=float(self.magnification.mean()),
                   max_magnification=float(self.magnification.max()),
                   min_magnification=float(self.magnification.min()),
                   uncovered_fraction=float(self.uncovered.mean()), zoom_vs_uniform_mean_abs_diff=float(diff))
        deviation = self.coefficient_deviation()
        if deviation is not None:
            out.update(interpolation_vs_bilinear_mean=float(deviation.mean()),
                       interpolation_vs_bilinear_max=float(deviation.max()))
        return out


def display_shape(shape: Sequence[int], max_side: Optional[int]) -> Tuple[int, int]:
    """``(H, W)`` scaled down (keeping the aspect ratio) so that its longer side is at most ``max_side``."""
    h, w = check_shape_2d(shape, 'shape')
    if not max_side or max(h, w) <= max_side:
        return h, w
    s = max_side / max(h, w)
    return max(2, int(round(h * s))), max(2, int(round(w * s)))


def compute_warp_panels(image: np.ndarray,
                        grid: ArrayLike,
                        out_shape: Sequence[int],
                        saliency: Optional[ArrayLike] = None,
                        separable: bool = True,
                        max_side: Optional[int] = 800,
                        align_corners: bool = False,
                        zoomed: Optional[np.ndarray] = None,
                        coefficients: Optional[ArrayLike] = None,
                        bilinear: Optional[ArrayLike] = None,
                        saliency_kind: str = 'fixed') -> WarpPanels:
    """Compute the warp panels for one image (the data behind Figures 2 and 6).

    Args:
        image: ``[H0, W0, 3]`` original image (RGB), any size.
        grid: the LZ grid (``[h, w, 2]`` normalised).
        out_shape: ``(h_out, w_out)`` zoomed size in pixels (the zoom is from
            the full-resolution image, as in the pipeline).
        saliency: optional ``[h, w]`` saliency behind the grid.
        separable: invert separably (exact for separable grids).
        max_side: the original-image panels are computed at a display
            resolution whose longer side is at most this (None: full size).
        align_corners: pixel convention of the zoom (the warp's / record's).
        zoomed: the ``[h_out, w_out, 3]`` zoomed image when the model does not
            interpolate bilinearly (e.g. DownsizeNet); default: the bilinear zoom.
        coefficients, bilinear: ``[4, h_out, w_out]`` coefficient maps of a
            learned interpolation and the bilinear weights at the same positions.
        saliency_kind: ``'fixed'`` or ``'learned'``.

    Raises:
        ValueError: malformed ``image``, ``grid`` or ``out_shape``.
    """
    _image_tensor(image)  # validates
    out_shape = check_shape_2d(out_shape, 'out_shape')
    g = as_grid(grid)
    ori_shape = tuple(image.shape[:2])
    disp = display_shape(ori_shape, max_side)
    shown = image if disp == ori_shape else uniform_resize(image, disp)
    if zoomed is None:
        zoomed = zoom_image(image, g, out_shape, align_corners)
    elif tuple(zoomed.shape[:2]) != out_shape:
        raise ValueError(f'zoomed must be {out_shape} (out_shape), got {tuple(zoomed.shape[:2])}')
    unzoomed, uncovered = unzoom_image(zoomed, g, disp, separable, align_corners)
    sal = None
    if saliency is not None:
        s = torch.as_tensor(np.asarray(saliency) if not isinstance(saliency, Tensor) else saliency)
        sal = s.detach().to('cpu', torch.float64).reshape(s.shape[-2:]).numpy()
    scale = ((disp[1] - 1) / max(ori_shape[1] - 1, 1), (disp[0] - 1) / max(ori_shape[0] - 1, 1))
    return WarpPanels(image=shown, zoomed=zoomed, uniform=uniform_resize(image, out_shape, align_corners),
                      unzoomed=unzoomed, uncovered=uncovered,
                      magnification=magnification_map(g, disp, separable, align_corners), grid=g[0].numpy(),
                      saliency=sal, scale=scale, ori_shape=ori_shape, align_corners=align_corners,
                      coefficients=_maps(coefficients), bilinear=_maps(bilinear), saliency_kind=saliency_kind)


def _maps(maps: Optional[ArrayLike]) -> Optional[np.ndarray]:
    """``[4, h, w]`` float64 array (or None) from a tensor or array, a leading batch axis of 1 dropped."""
    if maps is None:
        return None
    m = maps.detach().cpu().numpy() if isinstance(maps, Tensor) else np.asarray(maps)
    m = m.reshape(m.shape[-3:]).astype(np.float64)
    if m.shape[0] != 4:
        raise ValueError(f'coefficient maps must be [4, h, w], got {m.shape}')
    return m
