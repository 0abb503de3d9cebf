"""Saliency maps: loading fixed ones from files, and saliency from boxes (FOVEA's KDE), pure torch + numpy."""
import os
import os.path as osp
import pickle
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import Tensor

from ._validate import check_saliency, check_shape_2d, shape_pairs

SALIENCY_SUFFIXES = ('.pkl', '.npy', '.pth', '.pt')
#: Called as ``fn(path)`` by :func:`load_saliency` for a file that does not exist; each returns the map (anything
#: ``load_saliency`` accepts) or ``None``. :mod:`lzu_mm.common.checkpoint_warp` adds the saliency maps stored in
#: loaded LZU checkpoints here (process-wide), so configs naming a dataset-derived file work without it.
MISSING_SALIENCY_RESOLVERS = []


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
        FileNotFoundError: the file does not exist (and none of
            :data:`MISSING_SALIENCY_RESOLVERS` knows it, e.g. no loaded LZU
            checkpoint stores a saliency under that path).
        ValueError: unknown suffix, unreadable content, wrong shape or dtype,
            NaN/Inf, negative values, all zeros, or a shape different from
            ``grid_shape``. The message names the file and the expected shape.
    """
    name = 'saliency'
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        name = f'saliency file {path!r}'
        if not osp.isfile(path):
            for resolve in MISSING_SALIENCY_RESOLVERS:
                found = resolve(path)
                if found is not None:
                    return load_saliency(found, grid_shape)
            carried = ' and no loaded LZU checkpoint carries it' if MISSING_SALIENCY_RESOLVERS else ''
            raise FileNotFoundError(f'{name} does not exist{carried}')
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


def fovea_uniform_weight(grid_shape: Sequence[int]) -> float:
    """FOVEA's per-box uniform term relative to a box's unit mass: ``h * w / (2 p + 1)^2``, ``p = min(h, w) - 1``.

    FOVEA's box-to-saliency code adds ``1 / (2p + 1)^2`` to every grid point
    for every box (``p`` is the LZ grid's padding), i.e. a uniform mass of
    ``h w / (2p + 1)^2`` per box next to the box's normalised Gaussian:
    0.4249 on the 31x51 Argoverse-HD grid (30 % of the saliency's mass).
    """
    h, w = check_shape_2d(grid_shape, 'grid_shape')
    return h * w / (2 * (min(h, w) - 1) + 1)**2


def _grid_points(n: int, size: Tensor, align_corners: bool) -> Tensor:
    """``[N, n]`` pixel positions of the ``n`` grid points along an axis of images ``size`` ``[N]`` pixels long.

    ``align_corners=False`` (FOVEA, and this project's half-pixel convention):
    the grid spans the image edge to edge, ``linspace(0, size, n)`` in
    continuous pixel coordinates (pixel ``i`` covers ``[i, i + 1)``, as box
    coordinates do). ``align_corners=True``: first to last pixel centre,
    ``linspace(0, size - 1, n)``.
    """
    t = torch.linspace(0, 1, n, dtype=size.dtype, device=size.device)
    return t[None] * (size[:, None] - (1 if align_corners else 0))


def _box_axis_weights(boxes: Tensor, sizes: Tensor, grid_shape: Sequence[int], bandwidth_scale,
                      align_corners: bool) -> Tuple[Tensor, Tensor]:
    """The separable, per-box normalised Gaussians of FOVEA's box KDE, one factor per axis.

    Box ``b`` (centre ``(cx, cy)``, size ``bw x bh`` pixels) gives
    ``G_b(x, y) = exp(-(x - cx)^2 / (2 s bw) - (y - cy)^2 / (2 s bh))`` at the
    grid points (``s = bandwidth_scale``: variances ``s bw`` and ``s bh``,
    pixels squared), normalised to sum 1 over the grid. It factors into a
    softmax along x times a softmax along y (no underflow for small boxes).

    Args:
        boxes: ``[N, 4]`` ``(x1, y1, x2, y2)`` pixels, positive sizes.
        sizes: ``[N, 2]`` ``(H, W)`` of each box's image.
        grid_shape: ``(h, w)``.
        bandwidth_scale: a number or a 0-d / 1-element tensor (differentiable).
        align_corners: grid point convention (:func:`_grid_points`).

    Returns:
        ``(wx [N, w], wy [N, h])``, each row summing to 1; ``G_b = wy_b^T wx_b``.
    """
    h, w = grid_shape
    if isinstance(bandwidth_scale, Tensor):
        bandwidth_scale = bandwidth_scale.to(boxes).reshape(())
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    var_x = bandwidth_scale * (boxes[:, 2] - boxes[:, 0])
    var_y = bandwidth_scale * (boxes[:, 3] - boxes[:, 1])
    px = _grid_points(w, sizes[:, 1], align_corners)
    py = _grid_points(h, sizes[:, 0], align_corners)
    wx = torch.softmax(-0.5 * (px - cx[:, None]).square() / var_x[:, None], dim=1)
    wy = torch.softmax(-0.5 * (py - cy[:, None]).square() / var_y[:, None], dim=1)
    return wx, wy


def kde_box_saliency(boxes,
                     image_shapes,
                     grid_shape: Sequence[int],
                     bandwidth_scale: float = 64.,
                     uniform_floor: Optional[float] = None,
                     align_corners: bool = False,
                     chunk_size: int = 65536) -> Tensor:
    """Fixed, dataset-wide saliency from bounding boxes by kernel density estimation.

    FOVEA's "KDE SD" saliency (Thavamani et al., ICCV 2021, §3.2; used by
    LZU, CVPR 2023, §5.1 as the fixed saliency for Argoverse-HD), as FOVEA's
    released ``tools/compute_dataset_saliency.py`` makes it (its box-to-saliency
    code over all training boxes at once). Every box ``b`` of width ``w_b``
    and height ``h_b`` pixels, centred at ``(cx_b, cy_b)``, contributes an
    axis-aligned Gaussian with variances ``bandwidth_scale * w_b`` and
    ``bandwidth_scale * h_b`` (pixels squared), evaluated at the grid points
    and normalised to sum 1 over the grid; the box maps are averaged, a
    uniform density of relative weight ``uniform_floor`` is added, and the
    result is normalised to sum 1::

        S = normalise( mean_b G_b / sum(G_b)  +  uniform_floor / (h * w) )

    With the default ``uniform_floor`` (FOVEA's per-box uniform term,
    :func:`fovea_uniform_weight`: 0.4249 at 31x51) and ``align_corners=False``
    this is :func:`bbox_kde_saliency` of all boxes as one image (same
    formula, same grid points; tested to 1e-6).

    Grid point ``(i, j)`` of an ``h x w`` grid sits at continuous pixel
    ``(i H / (h - 1), j W / (w - 1))`` of the box's image (FOVEA's
    ``linspace(0, W, w)``: the grid spans the image edge to edge, the
    half-pixel convention of the LZ warp), or at ``(i (H - 1) / (h - 1), j (W -
    1) / (w - 1))`` with ``align_corners=True``; images of different sizes
    share the grid in normalised coordinates. The Gaussian is separable, so
    each box costs ``O(h + w)``; per-axis normalisation is a softmax (no
    underflow for tiny boxes). Boxes are taken as annotated (not clipped to
    the image, as FOVEA's tool); a box narrower or lower than one pixel counts
    as one pixel.

    Args:
        boxes: ``[N, 4]`` boxes ``(x1, y1, x2, y2)`` in pixels of their image
            (tensor or array); ``N = 0`` gives the uniform map.
        image_shapes: ``(H, W)`` pixels shared by all boxes, or ``[N, 2]``.
        grid_shape: ``(h, w)`` of the saliency (the LZ grid shape), ``>= 2``.
        bandwidth_scale: variance per pixel of box size (> 0); FOVEA's KDE
            default is 64.
        uniform_floor: relative weight (>= 0) of the uniform density added
            to the box density; ``None`` (default): FOVEA's,
            :func:`fovea_uniform_weight` ``(grid_shape)``.
        align_corners: grid point convention (see above).
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
    if uniform_floor is None:
        uniform_floor = fovea_uniform_weight((h, w))
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
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]).clamp_min(1.0) / 2  # a box is at least one pixel
    boxes = torch.cat([centres - half, centres + half], 1)
    density = torch.zeros(h, w, dtype=torch.float64)
    step = max(int(chunk_size), 1)
    for start in range(0, n, step):
        wx, wy = _box_axis_weights(boxes[start:start + step], shapes[start:start + step], (h, w), bandwidth_scale,
                                   align_corners)
        density += wy.t() @ wx  # sum_b of the separable, per-box normalised Gaussians
    if n:
        density /= n
    density += (uniform_floor if n else 1.0) / (h * w)
    density /= density.sum()
    return density.to(torch.float32)[None, None]


def bbox_kde_saliency(boxes: Sequence,
                      img_shapes,
                      grid_shape: Sequence[int],
                      bandwidth_scale: Union[float, Tensor] = 64.,
                      amplitude_scale: Union[float, Tensor] = 1.,
                      fallback: Optional[Tensor] = None,
                      align_corners: bool = False,
                      dtype: torch.dtype = torch.float32) -> Tensor:
    """Per-image saliency from boxes at run time (FOVEA's "KDE SI", and LKDE with tensor scales).

    The box-to-saliency formula of FOVEA's released code (Thavamani et al.,
    ICCV 2021, §3.2; ``fovea/models/grid_generator.py``, ``bbox2sal``), used
    by LZU (CVPR 2023, §5.1, Table 1 "LZU, adaptive") on the previous frame's
    detections. For each image, every box ``b`` gives a Gaussian at its centre
    with variances ``bandwidth_scale * w_b`` and ``bandwidth_scale * h_b``
    (pixels squared, not standard deviations), normalised to sum 1 over the
    grid and multiplied by ``amplitude_scale``; FOVEA's uniform term ``1 / (2p
    + 1)^2`` (``p = min(h, w) - 1``, the LZ grid's padding) is added per box;
    the sum is normalised to 1::

        S = normalise( sum_b [ amplitude_scale * G_b / sum(G_b) + 1 / (2p + 1)^2 ] )

    Grid point ``(i, j)`` sits at continuous pixel ``(i H / (h - 1), j W / (w
    - 1))`` of the image (FOVEA's ``linspace(0, W, w)``: edge to edge, the LZ
    warp's half-pixel convention), or ``(i (H - 1) / (h - 1), j (W - 1) / (w -
    1))`` with ``align_corners=True``. FOVEA divides each box's map by ``sum +
    1e-5`` and evaluates the exponential directly; here each box is a softmax
    per axis (exact normalisation, no underflow for small boxes), which
    agrees with FOVEA's formula to < 1e-6 wherever FOVEA's does not underflow.

    Bad input never raises mid-sequence: boxes are clipped to the image
    ``[0, W] x [0, H]``; boxes with a NaN / Inf coordinate or a zero (or
    negative) width or height after clipping are dropped; an image left with
    no box gets the fallback saliency. Computed in float64 on the device of
    the boxes (or of a tensor ``bandwidth_scale``), batched over images with
    any numbers of boxes, differentiable with respect to tensor
    ``bandwidth_scale`` / ``amplitude_scale`` (learned KDE, "LKDE").

    Args:
        boxes: ``B`` entries, each ``[N_i, 4]`` ``(x1, y1, x2, y2)`` pixels of
            the un-warped image (tensor, array, or None for no boxes).
        img_shapes: ``(H, W)`` pixels of every image, or ``B`` pairs.
        grid_shape: ``(h, w)`` of the saliency (the LZ grid), ``>= 2``.
        bandwidth_scale: variance per pixel of box size, a positive number or
            a 1-element tensor (FOVEA: 64).
        amplitude_scale: weight of each box's normalised Gaussian against the
            uniform term, a non-negative number or a 1-element tensor
            (FOVEA: 1). 0 gives the uniform map for any box.
        fallback: ``[1, 1, h, w]`` or ``[B, 1, h, w]`` non-negative saliency
            for images without boxes (normalised to sum 1 here); default
            uniform.
        align_corners: grid point convention (see above).
        dtype: dtype of the result (computed in float64).

    Returns:
        ``[B, 1, h, w]`` saliency in ``dtype``, summing to 1 per image.

    Raises:
        ValueError: ``boxes`` not a sequence of ``[N, 4]``, ``img_shapes``
            not one or ``B`` positive pairs, bad ``grid_shape``, a
            non-positive number ``bandwidth_scale`` / negative
            ``amplitude_scale``, a tensor scale that is not one element, or a
            bad ``fallback``.
    """
    h, w = check_shape_2d(grid_shape, 'grid_shape')
    if h < 2 or w < 2:
        raise ValueError(f'grid_shape must be at least (2, 2), got {(h, w)}')
    if isinstance(boxes, Tensor) and boxes.dim() == 2:
        raise ValueError('boxes must be a list of B tensors [N_i, 4] (one per image), got one [N, 4] tensor; '
                         'wrap it in a list')
    boxes = list(boxes)
    bsz = len(boxes)
    if bsz == 0:
        raise ValueError('boxes must hold one entry per image, got an empty list')
    for name, value, low in (('bandwidth_scale', bandwidth_scale, 'positive'),
                             ('amplitude_scale', amplitude_scale, 'non-negative')):
        if isinstance(value, Tensor):
            if value.numel() != 1:
                raise ValueError(f'{name} must be a number or a 1-element tensor, got shape {tuple(value.shape)}')
        elif not (isinstance(value, (int, float)) and np.isfinite(value)
                  and (value > 0 if low == 'positive' else value >= 0)):
            raise ValueError(f'{name} must be a {low} number, got {value!r}')
    device = next((b.device for b in boxes if isinstance(b, Tensor)),
                  bandwidth_scale.device if isinstance(bandwidth_scale, Tensor) else torch.device('cpu'))
    pairs = shape_pairs(img_shapes)
    if len(pairs) == 1:
        pairs = pairs * bsz
    if len(pairs) != bsz:
        raise ValueError(f'img_shapes must be one (H, W) or one per image ({bsz}), got {len(pairs)}')
    sizes = torch.tensor([[float(s[0]), float(s[1])] for s in pairs], dtype=torch.float64, device=device)
    if not bool((torch.isfinite(sizes) & (sizes >= 1)).all()):
        raise ValueError(f'img_shapes must hold finite sizes >= 1 pixel, got {sizes.tolist()}')
    flat, counts = [], []
    for k, b in enumerate(boxes):
        b = torch.zeros(0, 4) if b is None else torch.as_tensor(b)
        if b.numel() == 0:
            b = b.reshape(0, 4)
        if b.dim() != 2 or b.shape[1] != 4:
            raise ValueError(f'boxes[{k}] must have shape [N, 4] (x1, y1, x2, y2), got {tuple(b.shape)}')
        flat.append(b.to(device, torch.float64))
        counts.append(b.shape[0])
    flat = torch.cat(flat)
    image = torch.repeat_interleave(torch.arange(bsz, device=device), torch.tensor(counts, device=device))
    size = sizes[image]  # [N, 2] (H, W) of each box's image
    finite = torch.isfinite(flat).all(1)
    flat = torch.where(finite[:, None], flat, torch.zeros_like(flat))
    limit = size[:, [1, 0, 1, 0]]
    flat = torch.minimum(flat.clamp_min(0), limit)  # clipped to [0, W] x [0, H]
    keep = finite & (flat[:, 2] > flat[:, 0]) & (flat[:, 3] > flat[:, 1])
    flat, image, size = flat[keep], image[keep], size[keep]

    if fallback is None:
        fallback_map = torch.full((1, 1, h, w), 1.0 / (h * w), dtype=torch.float64, device=device)
    else:
        check_saliency(fallback, 'fallback')
        if tuple(fallback.shape[-2:]) != (h, w) or fallback.shape[0] not in (1, bsz):
            raise ValueError(f'fallback must be [1, 1, {h}, {w}] or [{bsz}, 1, {h}, {w}], got '
                             f'{tuple(fallback.shape)}')
        fallback_map = fallback.to(device, torch.float64)
        fallback_map = fallback_map / fallback_map.sum((2, 3), keepdim=True)

    wx, wy = _box_axis_weights(flat, size, (h, w), bandwidth_scale, align_corners)
    # sum over the boxes of each image of wy_b^T wx_b, as one matmul: [B * h, N] @ [N, w]
    onehot = torch.nn.functional.one_hot(image, bsz).to(wy)  # [N, B]
    gauss = (onehot[:, :, None] * wy[:, None, :]).reshape(-1, bsz * h).t() @ wx  # [B * h, w]
    if isinstance(amplitude_scale, Tensor):
        amplitude_scale = amplitude_scale.to(gauss).reshape(())
    n = onehot.sum(0)  # [B] boxes per image
    p = min(h, w) - 1
    density = amplitude_scale * gauss.reshape(bsz, 1, h, w) + (n / (2 * p + 1)**2)[:, None, None, None]
    total = density.sum((2, 3), keepdim=True)
    has_boxes = (n > 0)[:, None, None, None]
    saliency = torch.where(has_boxes, density / torch.where(has_boxes, total, torch.ones_like(total)),
                           fallback_map.expand(bsz, 1, h, w))
    return saliency.to(dtype)


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
