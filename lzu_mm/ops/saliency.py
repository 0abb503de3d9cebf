"""Loading fixed saliency maps from files (pure torch + numpy)."""
import os
import os.path as osp
import pickle
from typing import Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from ._validate import check_saliency, check_shape_2d

SALIENCY_SUFFIXES = ('.pkl', '.npy', '.pth', '.pt')


def uniform_saliency(grid_shape: Sequence[int]) -> Tensor:
    """A uniform ``[1, 1, h, w]`` saliency summing to 1 (its LZ grid is the identity)."""
    h, w = check_shape_2d(grid_shape, 'grid_shape')
    return torch.full((1, 1, h, w), 1.0 / (h * w))


def load_saliency(source: Union[str, os.PathLike, Tensor, np.ndarray],
                  grid_shape: Optional[Sequence[int]] = None) -> Tensor:
    """Load a fixed saliency map and check it.

    Accepted files: the paper authors' format -- a pickled ``torch.Tensor`` of
    shape ``(1, 1, h, w)`` (``.pkl``, e.g. their released
    ``nuscenes_fixed_saliency.pkl``) -- a NumPy ``.npy`` array, or a
    ``torch.save`` file (``.pth`` / ``.pt``) holding a tensor. Shapes
    ``(h, w)``, ``(1, h, w)`` and ``(1, 1, h, w)`` are accepted.

    Args:
        source: path to the file, or the map itself (tensor / array).
        grid_shape: expected ``(h, w)``; checked when given.

    Returns:
        ``[1, 1, h, w]`` float32 CPU tensor.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: unknown suffix, unreadable content, wrong shape or dtype,
            NaN/Inf, negative values, all zeros, or a shape different from
            ``grid_shape``. The message names the file and the expected shape.
    """
    name = 'saliency'
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        name = f'saliency file {path!r}'
        if not osp.isfile(path):
            raise FileNotFoundError(f'{name} does not exist')
        suffix = osp.splitext(path)[1].lower()
        if suffix not in SALIENCY_SUFFIXES:
            raise ValueError(f'{name}: unknown suffix {suffix!r}, expected one of {SALIENCY_SUFFIXES}')
        try:
            if suffix == '.npy':
                data = np.load(path, allow_pickle=False)
            elif suffix == '.pkl':
                with open(path, 'rb') as f:
                    data = pickle.load(f)
            else:
                data = torch.load(path, map_location='cpu', weights_only=True)
        except Exception as exc:  # noqa: BLE001 - re-raised with the file name
            raise ValueError(f'{name} could not be read: {exc}') from exc
    else:
        data = source
    if isinstance(data, np.ndarray):
        if data.dtype.kind != 'f':
            raise ValueError(f'{name} must hold floating-point values, got dtype {data.dtype}')
        data = torch.from_numpy(np.ascontiguousarray(data))
    if not isinstance(data, Tensor):
        raise ValueError(f'{name} must hold a tensor or array of shape (1, 1, h, w), got {type(data).__name__}')
    if not data.is_floating_point():
        raise ValueError(f'{name} must hold floating-point values, got dtype {data.dtype}')
    if data.dim() in (2, 3) and all(s == 1 for s in data.shape[:-2]):
        data = data.reshape(1, 1, *data.shape[-2:])
    if data.dim() != 4 or data.shape[:2] != (1, 1):
        raise ValueError(f'{name} must have shape (1, 1, h, w), got {tuple(data.shape)}')
    if grid_shape is not None:
        expected = check_shape_2d(grid_shape, 'grid_shape')
        if tuple(data.shape[-2:]) != expected:
            raise ValueError(f'{name} has grid shape {tuple(data.shape[-2:])} but the config expects grid_shape '
                             f'{expected}, i.e. a saliency of shape (1, 1, {expected[0]}, {expected[1]})')
    data = data.detach().to('cpu', torch.float32)
    try:
        check_saliency(data, name)
    except ValueError as exc:
        raise ValueError(str(exc)) from None
    return data


def kde_box_saliency(boxes,
                     image_shapes,
                     grid_shape: Sequence[int],
                     bandwidth_scale: float = 64.,
                     uniform_floor: float = 0.25,
                     chunk_size: int = 65536) -> Tensor:
    """Fixed, dataset-wide saliency from bounding boxes by kernel density estimation.

    FOVEA's "KDE SD" saliency (Thavamani et al., ICCV 2021, §3.2; used by
    LZU, CVPR 2023, §5.1 as the fixed saliency for Argoverse-HD). Every box
    ``b`` of width ``w_b`` and height ``h_b`` pixels, centred at
    ``(cx_b, cy_b)``, contributes an axis-aligned Gaussian with variances
    ``bandwidth_scale * w_b`` and ``bandwidth_scale * h_b`` (pixels squared;
    the form of FOVEA's released box-to-saliency code, to the best of our
    knowledge), evaluated at the grid points and normalised to sum 1 over the
    grid; the box maps are averaged, a uniform floor of relative weight
    ``uniform_floor`` is added, and the result is normalised to sum 1::

        S = normalise( mean_b G_b / sum(G_b)  +  uniform_floor / (h * w) )

    Grid point ``(i, j)`` of an ``h x w`` grid sits at pixel
    ``(i (H - 1) / (h - 1), j (W - 1) / (w - 1))`` of the box's image
    (``align_corners=True``, as the LZ grid), so images of different sizes
    share the grid in normalised coordinates. The Gaussian is separable, so
    each box costs ``O(h + w)``; per-axis normalisation is a softmax (no
    underflow for tiny boxes).

    Args:
        boxes: ``[N, 4]`` boxes ``(x1, y1, x2, y2)`` in pixels of their image
            (tensor or array); ``N = 0`` gives the uniform map.
        image_shapes: ``(H, W)`` pixels shared by all boxes, or ``[N, 2]``.
        grid_shape: ``(h, w)`` of the saliency (the LZ grid shape), ``>= 2``.
        bandwidth_scale: variance per pixel of box size (> 0); FOVEA's KDE
            default is 64.
        uniform_floor: relative weight (>= 0) of the uniform density added
            to the box density (our default, not from the papers).
        chunk_size: boxes processed at once (memory bound only).

    Returns:
        ``[1, 1, h, w]`` float32 CPU tensor, non-negative, summing to 1 (the
        authors' saliency file format).

    Raises:
        ValueError: malformed ``boxes`` / ``image_shapes`` (shape, NaN/Inf,
            non-positive sizes), bad ``grid_shape``, ``bandwidth_scale <= 0``
            or ``uniform_floor < 0``.
    """
    h, w = check_shape_2d(grid_shape, 'grid_shape')
    if h < 2 or w < 2:
        raise ValueError(f'grid_shape must be at least (2, 2), got {(h, w)}')
    if not (isinstance(bandwidth_scale, (int, float)) and np.isfinite(bandwidth_scale) and bandwidth_scale > 0):
        raise ValueError(f'bandwidth_scale must be a positive number, got {bandwidth_scale!r}')
    if not (isinstance(uniform_floor, (int, float)) and np.isfinite(uniform_floor) and uniform_floor >= 0):
        raise ValueError(f'uniform_floor must be a non-negative number, got {uniform_floor!r}')
    boxes = torch.as_tensor(np.asarray(boxes, dtype=np.float64) if not isinstance(boxes, Tensor) else boxes)
    boxes = boxes.detach().to('cpu', torch.float64)
    if boxes.numel() == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f'boxes must have shape [N, 4] (x1, y1, x2, y2), got {tuple(boxes.shape)}')
    if not bool(torch.isfinite(boxes).all()):
        raise ValueError('boxes must be finite, got NaN or Inf values')
    n = boxes.shape[0]
    shapes = torch.as_tensor(np.asarray(image_shapes, dtype=np.float64) if not isinstance(image_shapes, Tensor)
                             else image_shapes).detach().to('cpu', torch.float64)
    if shapes.shape == (2, ):
        shapes = shapes.expand(n, 2)
    if shapes.dim() != 2 or shapes.shape != (n, 2):
        raise ValueError(f'image_shapes must be one (H, W) or [N, 2] with N = {n} boxes, got {tuple(shapes.shape)}')
    if n and not bool((torch.isfinite(shapes) & (shapes >= 1)).all()):
        raise ValueError('image_shapes must hold finite sizes >= 1 pixel')
    density = torch.zeros(h, w, dtype=torch.float64)
    gy0 = torch.linspace(0, 1, h, dtype=torch.float64)
    gx0 = torch.linspace(0, 1, w, dtype=torch.float64)
    for start in range(0, n, max(int(chunk_size), 1)):
        b = boxes[start:start + chunk_size]
        s = shapes[start:start + chunk_size]
        cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
        var_x = bandwidth_scale * (b[:, 2] - b[:, 0]).clamp_min(1.0)  # a box is at least one pixel
        var_y = bandwidth_scale * (b[:, 3] - b[:, 1]).clamp_min(1.0)
        px = gx0[None] * (s[:, 1:2] - 1)  # [n, w] grid points in pixels of each box's image
        py = gy0[None] * (s[:, 0:1] - 1)  # [n, h]
        wx = torch.softmax(-0.5 * (px - cx[:, None]).square() / var_x[:, None], dim=1)
        wy = torch.softmax(-0.5 * (py - cy[:, None]).square() / var_y[:, None], dim=1)
        density += wy.t() @ wx  # sum_b of the separable, per-box normalised Gaussians
    if n:
        density /= n
    density += (uniform_floor if n else 1.0) / (h * w)
    density /= density.sum()
    return density.to(torch.float32)[None, None]


def save_saliency(saliency: Tensor, path: str, png: Optional[str] = None, cell: int = 16) -> None:
    """Write a ``(1, 1, h, w)`` saliency map by suffix, the counterpart of :func:`load_saliency`.

    ``.pkl``: a pickled ``torch.Tensor`` (the paper authors' format); ``.npy``:
    a NumPy array; ``.pth`` / ``.pt``: ``torch.save``. With ``png``, also a
    colour-mapped picture of the map, each grid cell ``cell`` pixels wide
    (OpenCV, imported only then).

    Raises:
        ValueError: unknown suffix or a map that :func:`load_saliency` would reject.
        OSError: the PNG could not be written.
    """
    saliency = load_saliency(saliency)  # same checks as on reading
    suffix = osp.splitext(path)[1].lower()
    if suffix not in SALIENCY_SUFFIXES:
        raise ValueError(f'saliency file {path!r}: unknown suffix {suffix!r}, expected one of {SALIENCY_SUFFIXES}')
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    if suffix == '.pkl':
        with open(path, 'wb') as f:
            pickle.dump(saliency, f)
    elif suffix == '.npy':
        np.save(path, saliency.numpy())
    else:
        torch.save(saliency, path)
    if png is not None:
        import cv2
        sal = saliency[0, 0].numpy().astype(np.float64)
        img = np.uint8(np.rint(255 * (sal - sal.min()) / max(sal.max() - sal.min(), 1e-12)))
        img = cv2.resize(img, (img.shape[1] * cell, img.shape[0] * cell), interpolation=cv2.INTER_NEAREST)
        os.makedirs(osp.dirname(osp.abspath(png)), exist_ok=True)
        if not cv2.imwrite(png, cv2.applyColorMap(img, cv2.COLORMAP_INFERNO)):
            raise OSError(f'could not write {png!r}')
