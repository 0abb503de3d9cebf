"""Position-encoding harness: does every unzoomed cell of every level sit where the head thinks it does?

With a uniform saliency unzoom is the identity under *any* self-consistent
stride / padding / pixel convention, so equivalence with the base model cannot
see a geometry error. This harness can:

* :class:`CoordinateFeatures` is a backbone + neck stand-in built from the
  geometry of the real strided convolutions -- ResNet's 7x7/2 stem (padding 3),
  the 3x3/2 max pool and stage convolutions (padding 1), and the FPN extra
  convolutions P6 (3x3/2 on C5, RetinaNet's ``add_extra_convs='on_input'``) and
  P7 (3x3/2 on P6), all rounding up (``ceil``) -- each with a centre-tap
  kernel, so cell ``i`` of a stride-``s`` level holds the input pixel
  ``i * s`` exactly.
* Content mode: :func:`coordinate_image` is an image whose pixels hold their
  own continuous coordinates ``(x + 0.5, y + 0.5)`` in the un-warped
  (uniformly resized) image. Zooming resamples these values, so after the
  backbone, unzoom and a flip, each feature cell holds the un-warped position
  of what it sees (:func:`level_errors`). This runs the whole chain; its error
  includes the linearisation of the warp between cells (a few hundredths of a
  cell).
* Frame mode (``CoordinateFeatures(frame=True)``): the features are the
  network-input (zoomed) frame's own pixel coordinates, a linear ramp that
  bilinear unzoom reproduces exactly, so each unzoomed cell holds the zoomed
  position it read; it must equal the exact inverse of the recorded warp at
  the cell's position (computed here independently, from the grid, with
  ``np.interp``), clamped to the zoomed cells that exist. Exact to float
  rounding at every cell, border included: any stride, padding, flip or pixel
  convention error shows at full size (the landed ``pad / feat`` stride puts
  RetinaNet's P7 0.2 cell off on a 288-pixel batch).
* :func:`cell_positions` is where a cell of the *base* network sits: pixel
  ``(j s, i s)``, i.e. continuous ``(j s + 0.5, i s + 0.5)`` (mirrored for a
  flipped sample). For RetinaNet this is the anchor centre of
  ``AnchorGenerator`` (``center_offset=0``) plus half a pixel; FCOS3D's points
  are ``j s + s // 2``, a constant offset the base head learns on the same
  conv-aligned cells.

The model tests run the real LZU pipeline (zoom with a strongly non-uniform
saliency, flips, padding to a size not divisible by 128) and the real LZU
model with this stand-in, and require every valid cell of every level to hold
its position (:func:`position_errors`). Where the warp compresses the border,
the zoom keeps nothing of the outermost original pixels (its first sample
lies ``0.5 / m`` un-warped pixels in at magnification ``m``), so content mode
is checked away from the border, frame mode everywhere (it knows where unzoom
must clamp).
"""
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmengine.registry import MODELS
from torch import Tensor

#: (kernel, stride, padding) of the convolutions that make each ResNet / FPN level from the previous one
_STEM = ((7, 2, 3), (3, 2, 1))  # conv1 (7x7/2, padding 3), max pool (3x3/2, padding 1): stride 4 (C2)
_STAGE = (3, 2, 1)  # the 3x3/2 convolution of each ResNet stage (C3, C4, C5) and of FPN's P6 / P7


def _centre_tap(x: Tensor, kernel: int, stride: int, padding: int, dilation: int = 1) -> Tensor:
    """A depthwise ``kernel x kernel`` convolution (``stride``, ``padding``, ``dilation``) whose only weight is its
    centre: output cell ``i`` holds input pixel ``i * stride - padding + dilation * (kernel // 2)``."""
    weight = x.new_zeros(x.shape[1], 1, kernel, kernel)
    weight[:, :, kernel // 2, kernel // 2] = 1
    return F.conv2d(x, weight, stride=stride, padding=padding, dilation=dilation, groups=x.shape[1])


def conv_geometry(modules) -> List[Tuple[int, int, int, int]]:
    """``(kernel, stride, padding, dilation)`` of each ``nn.Conv2d`` / ``nn.MaxPool2d`` / ``nn.AvgPool2d`` given.

    Pass the real backbone's main-path modules in forward order (e.g. MiT's
    patch-embedding projections, a ResNet's stem, max pool and first-block
    convolutions); square kernels and strides only.
    """
    out = []
    for m in modules:
        pair = [getattr(m, a, 1) for a in ('kernel_size', 'stride', 'padding', 'dilation')]
        pair = [v if isinstance(v, (tuple, list)) else (v, v) for v in pair]
        if any(v[0] != v[1] for v in pair):
            raise ValueError(f'{m}: only square kernels, strides, paddings and dilations are supported')
        out.append(tuple(int(v[0]) for v in pair))
    return out


@MODELS.register_module(force=True)
class CoordinateFeatures(BaseModule):
    """Backbone + neck stand-in: levels at ``out_strides`` from the real conv geometry, holding input pixels.

    Args:
        out_strides: strides of the returned levels, a subset of 4, 8, 16, 32
            (C2-C5 / P2-P5), 64 (P6: 3x3/2 on C5) and 128 (P7: 3x3/2 on P6).
        channels: input channels passed through (the coordinate image has
            ``(x, y, x)``: symmetric under BGR/RGB swaps).
        frame: ignore the input's values and pass the input frame's own
            continuous pixel coordinates ``(x + 0.5, y + 0.5)`` instead.
        convs: another backbone's geometry instead of ResNet / FPN's: the
            ``(kernel, stride, padding, dilation)`` of each convolution (or
            pooling) of its main path in order, read from the real modules
            (:func:`conv_geometry`), with ``out_indices``: after which of them
            a level is returned (``out_strides`` is then ignored). Odd kernels
            only (a centre tap must exist).

    Returns (forward):
        tuple of ``[B, channels, ceil(H / s), ceil(W / s)]`` maps.
    """

    def __init__(self, out_strides: Sequence[int] = (8, 16, 32, 64, 128), channels: int = 2, frame: bool = False,
                 convs: Optional[Sequence[Sequence[int]]] = None, out_indices: Sequence[int] = (), **kwargs):
        super().__init__()
        self.out_strides = tuple(out_strides)
        self.channels = channels
        self.frame = frame
        self.convs = None if convs is None else [tuple(int(v) for v in c) for c in convs]
        if self.convs is not None and any(k % 2 == 0 for k, *_ in self.convs):
            raise ValueError(f'convs must have odd kernels (a centre tap), got {self.convs}')
        self.out_indices = tuple(out_indices)

    def forward(self, x: Tensor) -> Tuple[Tensor, ...]:
        if self.frame:
            b, _, h, w = x.shape
            xs = torch.arange(w, dtype=torch.float32, device=x.device) + 0.5
            ys = torch.arange(h, dtype=torch.float32, device=x.device) + 0.5
            x = torch.stack([xs[None].expand(h, w), ys[:, None].expand(h, w)])[None].expand(b, 2, h, w)
        x = x[:, :self.channels].float()
        if self.convs is not None:
            levels = []
            for index, (kernel, stride, padding, dilation) in enumerate(self.convs):
                x = _centre_tap(x, kernel, stride, padding, dilation)
                if index in self.out_indices:
                    levels.append(x)
            return tuple(levels)
        for conv in _STEM:
            x = _centre_tap(x, *conv)
        levels = {4: x}
        for stride in (8, 16, 32, 64, 128):
            x = _centre_tap(x, *_STAGE)
            levels[stride] = x
        return tuple(levels[s] for s in self.out_strides)


def coordinate_image(ori_shape: Sequence[int], img_shape: Sequence[int]) -> np.ndarray:
    """``[H0, W0, 3]`` float32 image of the continuous coordinates ``(x, y, x)`` of its pixel centres.

    In pixels of the uniformly resized ``img_shape`` image (``x = (c + 0.5) *
    w / W0``): what a pixel of the original shows, in the frame of the labels.
    """
    h0, w0 = ori_shape
    h, w = img_shape
    xs = ((np.arange(w0, dtype=np.float64) + 0.5) * w / w0).astype(np.float32)
    ys = ((np.arange(h0, dtype=np.float64) + 0.5) * h / h0).astype(np.float32)
    xx, yy = np.broadcast_to(xs[None], (h0, w0)), np.broadcast_to(ys[:, None], (h0, w0))
    return np.ascontiguousarray(np.stack([xx, yy, xx], -1))


def cell_positions(level_shape: Sequence[int], stride: float, img_shape: Sequence[int],
                   flip_direction: Optional[str] = None) -> Tuple[Tensor, Tensor]:
    """Expected content of each cell: ``([2, h, w]`` continuous ``(x, y)`` un-warped position, ``[h, w]`` valid).

    Cell ``(i, j)`` sits on pixel ``(j s, i s)`` of the (possibly flipped)
    network input; valid cells are those on a pixel of the image (not the
    batch padding). A flip maps continuous ``x`` to ``w_img - x``.
    """
    hf, wf = level_shape
    h, w = img_shape
    px = torch.arange(wf, dtype=torch.float64) * stride
    py = torch.arange(hf, dtype=torch.float64) * stride
    valid = (py <= h - 1)[:, None] & (px <= w - 1)[None]
    x, y = px + 0.5, py + 0.5
    if flip_direction in ('horizontal', 'diagonal'):
        x = w - x
    if flip_direction in ('vertical', 'diagonal'):
        y = h - y
    return torch.stack([x[None].expand(hf, wf), y[:, None].expand(hf, wf)]), valid


def _interior(valid: Tensor, border: int) -> Tensor:
    """``valid`` without its outermost ``border`` rows and columns."""
    if not border or not valid.any():
        return valid
    rows, cols = valid.any(1).nonzero()[:, 0], valid.any(0).nonzero()[:, 0]
    inner = torch.zeros_like(valid)
    inner[rows[0] + border:rows[-1] + 1 - border, cols[0] + border:cols[-1] + 1 - border] = True
    return valid & inner


def _zoomed_position(grid: np.ndarray, target: Tensor, size: int, stride: float, axis: int, flipped: bool) -> Tensor:
    """Where unzoom must read along one axis of a separable warp, in continuous pixels of the network input.

    Computed here from the grid alone (not with ``lzu_mm``): the inverse of the
    piecewise-linear warp along ``axis`` (0: x from the first row of the grid,
    1: y from its first column; the lattice spans ``[-1, 1]`` edge to edge) by
    ``np.interp``, at un-warped continuous pixels ``target`` of the frame the
    grid was made for (half-pixel normalisation ``2 x / size - 1``); mirrored
    if the axis was flipped after the zoom; then clamped to the cells of the
    network input that exist, from the first cell centre (0.5) to the last
    whole valid cell's: beyond them unzoom replicates the border cell (the
    zoom kept nothing nearer the border).
    """
    knots = grid[0, :, 0] if axis == 0 else grid[:, 0, 1]
    lattice = np.linspace(-1, 1, len(knots))
    u = np.interp(2 * target.numpy() / size - 1, knots, lattice)
    z = torch.from_numpy((u + 1) * size / 2)
    if flipped:
        z = size - z
    return z.clamp(0.5, ((size - 1) // stride) * stride + 0.5)


def position_errors(feats: Sequence[Tensor], strides: Sequence[float], metas: Sequence[dict],
                    grids: Optional[Sequence] = None, border: int = 0) -> List[float]:
    """Largest position error per level over the valid cells of every sample, in cells of that level.

    Content mode (``grids=None``): the features hold the un-warped position
    of what each cell sees (:func:`coordinate_image`); compared with
    :func:`cell_positions`. Frame mode: the features hold the zoomed position
    each cell read (``CoordinateFeatures(frame=True)``), compared with the
    exact inverse of the separable warp at :func:`cell_positions`, computed in
    the frame the grid was made for (before a flip after the zoom; a
    model-side zoom's grid is made for the final frame) and mirrored back
    (:func:`_zoomed_position`).

    Args:
        feats: the unzoomed levels ``[B, >=2, h, w]`` (channels 0, 1: x, y).
        strides: stride of each level, pixels.
        metas: per-sample metainfo (``img_shape``, ``flip``, ``flip_direction``).
        grids: frame mode: per-sample separable ``[h, w, 2]`` LZ grid of the
            zoom as made (before any flip): the record's, or the model-side
            warp's.
        border: ignore cells within this many cells of the image border.
    """
    errors = []
    for feat, stride in zip(feats, strides):
        worst = 0.0
        for b, meta in enumerate(metas):
            h, w = meta['img_shape'][:2]
            flip = meta.get('flip_direction') if meta.get('flip', False) else None
            seen = feat[b, :2].double()
            if grids is not None:  # a pipeline zoom's grid is made for the frame before a flip after it; a model-side
                record = meta.get('lzu_zoom')  # zoom (of the batch or of the flipped source) for the final frame
                pipeline_zoom = record is not None and record.get('mode') != 'source'
                flip = flip if pipeline_zoom and not record.get('flip', False) else None
            expected, valid = cell_positions(feat.shape[-2:], stride, (h, w), flip)
            if grids is not None:
                grid = np.asarray(grids[b], dtype=np.float64)
                expected = torch.stack([
                    _zoomed_position(grid, expected[0], w, stride, 0, flip in ('horizontal', 'diagonal')),
                    _zoomed_position(grid, expected[1], h, stride, 1, flip in ('vertical', 'diagonal'))])
            valid = _interior(valid, border)
            if valid.any():
                worst = max(worst, float(((seen - expected).abs().amax(0) / stride)[valid].max()))
        errors.append(worst)
    return errors


def strong_saliency(grid_shape: Sequence[int], centre=(0.35, 0.65), sigma=0.12, floor=0.05) -> Tensor:
    """A strongly non-uniform ``(1, 1, h, w)`` saliency: a Gaussian bump at ``centre`` (y, x in [0, 1]) + a floor."""
    h, w = grid_shape
    y = torch.linspace(0, 1, h)[:, None]
    x = torch.linspace(0, 1, w)[None]
    s = torch.exp(-((y - centre[0])**2 + (x - centre[1])**2) / (2 * sigma**2)) + floor
    return (s / s.sum())[None, None]


def coordinate_samples(pipeline, ori_shape: Sequence[int], img_scale: Sequence[int], flips: Sequence[Optional[str]],
                       extra: Optional[Dict] = None) -> list:
    """Run coordinate images through a test pipeline (no loading steps), one per entry of ``flips``.

    ``pipeline``: a callable taking ``(results, flip_direction)``; ``img_scale``
    ``(w, h)`` is the resize target (keep-ratio) used to lay out the coordinates.
    """
    h0, w0 = ori_shape
    scale = min(img_scale[0] / w0, img_scale[1] / h0)
    img_shape = (int(h0 * scale + 0.5), int(w0 * scale + 0.5))
    out = []
    for flip in flips:
        img = coordinate_image(ori_shape, img_shape)
        results = dict(img=img, img_shape=img.shape[:2], ori_shape=img.shape[:2], img_path=f'coords_{flip}.png',
                       **(extra or {}))
        out.append(pipeline(results, flip))
    return out


def build_pipeline(transforms_registry, test_pipeline: Sequence[dict], saliency: str, flip_cfg: Optional[dict],
                   meta_keys_extra: Sequence[str] = ('flip', 'flip_direction'), flip_before_zoom: bool = False):
    """The config's test pipeline without its loading steps, ``saliency`` in its zoom, and a flip.

    Returns ``run(results, flip_direction)``; ``flip_cfg`` is the framework's
    flip transform (``direction`` is set per call, probability 1), applied
    just before packing, or just before the zoom with ``flip_before_zoom``.
    """
    steps = []
    for t in test_pipeline:
        t = dict(t)
        name = str(t['type']).split('.')[-1]
        if name.startswith('Load') or (name == 'CenterSquareCrop'):
            continue
        if 'saliency' in t:
            t['saliency'] = saliency
        if name.startswith('Pack'):
            t['meta_keys'] = tuple(dict.fromkeys((*t.get('meta_keys', ()), *meta_keys_extra)))
        steps.append((name, t))

    def run(results, flip_direction):
        for name, t in steps:
            here = 'saliency' in t if flip_before_zoom else name.startswith('Pack')
            if here and flip_direction is not None:
                flip = dict(flip_cfg)
                for key in ('direction', 'sync_2d'):
                    if key in flip:
                        flip[key] = flip_direction if key == 'direction' else flip[key]
                results = transforms_registry.build(flip)(results)
            results = transforms_registry.build(t)(results)
        return results

    return run


@torch.no_grad()
def unzoomed_levels(model, samples: list):
    """``(levels, metainfos)``: the LZU model's unzoomed ``extract_feat`` output for packed ``samples``."""
    from mmengine.dataset import pseudo_collate
    data = model.data_preprocessor(pseudo_collate(samples), False)
    with model.lzu_context(data['inputs'], data['data_samples']) as inputs:
        feats = model.extract_feat(inputs)
    return feats, [s.metainfo for s in data['data_samples']]


#: Bounds in cells. Content mode, away from the border: the whole chain, including the zoom's resampling and the
#: linearisation of the warp between cells (measured <= 0.12 at stride 32 with strong_saliency()). Frame mode, at
#: every valid cell: exact up to float rounding (measured < 5e-5).
TOLERANCES = dict(content=0.15, frame=1e-3)


def geometry_report(build_model, samples: list, strides: Sequence[float]) -> Dict[str, List[float]]:
    """Position errors per level (cells) of both modes, away from the border and everywhere.

    Args:
        build_model: ``build_model(frame: bool)`` -> the LZU model with
            ``CoordinateFeatures(frame=frame)`` as backbone and no neck, data
            preprocessor with mean 0 and std 1.
        samples: packed samples of coordinate images (:func:`coordinate_samples`).
        strides: the head's stride of each level.

    Returns:
        ``{'content', 'frame'}`` -> errors per level.
    """
    report = {}
    for frame in (False, True):
        model = build_model(frame)
        feats, metas = unzoomed_levels(model, samples)
        grids = None
        if frame:
            grids = [m['lzu_zoom']['grid'] if 'grid' in m.get('lzu_zoom', {}) else model.lzu_warp.grid()[0]
                     for m in metas]
        report['frame' if frame else 'content'] = position_errors(feats,
                                                                  strides,
                                                                  metas,
                                                                  grids,
                                                                  border=0 if frame else 1)
    return report


def assert_geometry(report: Dict[str, List[float]]) -> None:
    """Every entry of a :func:`geometry_report` within :data:`TOLERANCES`."""
    bad = {k: v for k, v in report.items() if max(v) > TOLERANCES[k]}
    assert not bad, f'position errors (cells, per level) over {TOLERANCES}: {bad}'
