"""Panel figures of an LZ warp (matplotlib; paper Figures 2 and 6).

Each ``draw_*`` function draws one panel onto a matplotlib ``Axes`` with its
units (pixel axes on every image panel; a labelled colour bar on every
scalar-field panel). :func:`plot_lzu_panels` composes them into one figure
and :func:`figure_to_array` renders a figure to an RGB array (for mmengine's
``Visualizer.add_image``). Only the object-oriented matplotlib API is used
(``matplotlib.figure.Figure`` with the Agg canvas), so the global ``pyplot``
backend is never touched.

Only the warp-specific panels are drawn here; the predictions panel shows
the original image as the framework's own visualizer painted it
(:func:`lzu_mm.visualization.paint_predictions`).
"""
from typing import Optional

import numpy as np

from .warp_maps import WarpPanels, grid_lines_px, upsample_saliency


def _label_px(ax, what: str = 'original image') -> None:
    ax.set_xlabel(f'x (px, {what})', fontsize=8)
    ax.set_ylabel('y (px)', fontsize=8)
    ax.tick_params(labelsize=7)


def _colorbar(ax, mappable, label: str, log_ticks: bool = False) -> None:
    """A colour bar as tall as the image axes, with its label (unit)."""
    from matplotlib.ticker import FormatStrFormatter, NullFormatter
    from mpl_toolkits.axes_grid1 import make_axes_locatable

    cax = make_axes_locatable(ax).append_axes('right', size='4%', pad=0.06)
    cb = ax.figure.colorbar(mappable, cax=cax)
    cb.set_label(label, fontsize=8)
    cb.ax.tick_params(labelsize=7)
    if log_ticks:  # plain numbers at round magnifications instead of 10^x
        lo, hi = mappable.norm.vmin, mappable.norm.vmax
        cb.set_ticks([v for v in (0.1, 0.2, 0.25, 0.33, 0.5, 0.67, 0.8, 1, 1.25, 1.5, 2, 3, 4, 5, 10) if lo <= v <= hi])
        cb.ax.yaxis.set_major_formatter(FormatStrFormatter('%g'))
        cb.ax.yaxis.set_minor_formatter(NullFormatter())


def _extent(shape, scale=(1.0, 1.0)):
    """``imshow`` extent so that the axes read original-image pixels (pixel centres at integers)."""
    h, w = shape[:2]
    sx, sy = scale
    return (-0.5 / sx, (w - 0.5) / sx, (h - 0.5) / sy, -0.5 / sy)


def draw_saliency(ax, panels: WarpPanels, alpha: float = 0.55) -> None:
    """Saliency over the (greyed) original image; colour bar in multiples of the uniform saliency."""
    ext = _extent(panels.image.shape, panels.scale)
    grey = panels.image.mean(-1) if panels.image.ndim == 3 else panels.image
    ax.imshow(grey, cmap='gray', extent=ext)
    if panels.saliency is None:
        ax.set_title('saliency: not available (grid only)', fontsize=9)
    else:
        sal = upsample_saliency(panels.saliency, panels.image.shape[:2])
        im = ax.imshow(sal, cmap='inferno', alpha=alpha, extent=ext, vmin=0)
        _colorbar(ax, im, 'saliency (× uniform)')
        kind = 'learned saliency of this image' if panels.saliency_kind == 'learned' else 'saliency'
        ax.set_title(f'{kind} ({panels.saliency.shape[0]}×{panels.saliency.shape[1]} grid)', fontsize=9)
    _label_px(ax)


def draw_saliency_map(ax, saliency, title: Optional[str] = None) -> None:
    """A saliency map on its own grid: cells on the axes, colour bar in multiples of a uniform map's value.

    Args:
        ax: matplotlib axes.
        saliency: ``[h, w]`` (or ``(1, 1, h, w)``) non-negative map, any scale.
        title: axes title (default: the grid shape and the min / max).
    """
    sal = np.asarray(saliency, dtype=np.float64).reshape(np.shape(saliency)[-2:])
    rel = sal / max(sal.mean(), 1e-300)  # x uniform: 1 = the value of a uniform map
    h, w = rel.shape
    im = ax.imshow(rel, cmap='inferno', vmin=0, interpolation='nearest', extent=(-0.5, w - 0.5, h - 0.5, -0.5))
    _colorbar(ax, im, 'saliency (× uniform)')
    ax.set_xlabel('x (grid cell)', fontsize=8)
    ax.set_ylabel('y (grid cell)', fontsize=8)
    ax.tick_params(labelsize=7)
    ax.set_title(title or f'saliency, {h}×{w} grid (min {rel.min():.2f}×, max {rel.max():.2f}× uniform)',
                 fontsize=9)


def save_saliency_figure(saliency, path: str, title: Optional[str] = None, width: float = 6.0):
    """Write a PNG of a saliency map with its colour bar and grid axes (the saliency tools' picture).

    Returns:
        The ``matplotlib.figure.Figure`` (Agg canvas).
    """
    import os
    import os.path as osp

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    h, w = np.shape(saliency)[-2:]
    fig = Figure(figsize=(width, width * h / w + 0.9))
    FigureCanvasAgg(fig)
    draw_saliency_map(fig.add_subplot(1, 1, 1), saliency, title)
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    return fig


def draw_zoomed(ax, panels: WarpPanels) -> None:
    """The zoomed image the backbone sees, in its own pixels (RGB: no colour bar; the title gives |zoom − resize|)."""
    ax.imshow(panels.zoomed)
    h, w = panels.zoomed.shape[:2]
    diff = np.abs(panels.zoomed.astype(np.float64) - panels.uniform.astype(np.float64)).mean()
    ax.set_title(f'zoomed image {w}×{h} (|zoom − resize| = {diff:.1f} / 255)', fontsize=9)
    _label_px(ax, 'zoomed image')


def draw_sampling_grid(ax, panels: WarpPanels, max_lines: int = 60) -> None:
    """The LZ grid's rows and columns, drawn where they sample the original image.

    Lines are coloured by the local magnification (the colour bar), so dense
    (magnified) regions stand out.
    """
    from matplotlib.collections import LineCollection
    from matplotlib.colors import LogNorm

    ext = _extent(panels.image.shape, panels.scale)
    ax.imshow(panels.image, extent=ext)
    h0, w0 = panels.ori_shape
    rows, cols = grid_lines_px(panels.grid, (h0, w0), panels.align_corners)
    step_r = max(1, int(np.ceil(rows.shape[0] / max_lines)))
    step_c = max(1, int(np.ceil(cols.shape[0] / max_lines)))
    lines = list(rows[::step_r]) + list(cols[::step_c])
    segs = np.concatenate([np.stack([ln[:-1], ln[1:]], 1) for ln in lines])  # [S, 2, 2]
    mid = segs.mean(1)
    mag = panels.magnification
    iy = np.clip(np.rint(mid[:, 1] * panels.scale[1]).astype(int), 0, mag.shape[0] - 1)
    ix = np.clip(np.rint(mid[:, 0] * panels.scale[0]).astype(int), 0, mag.shape[1] - 1)
    vals = np.clip(mag[iy, ix], 1e-2, None)
    lo, hi = _mag_range(mag)
    lc = LineCollection(segs, cmap='cool', norm=LogNorm(lo, hi), linewidths=0.6)
    lc.set_array(vals)
    ax.add_collection(lc)
    ax.set_xlim(ext[0], ext[1])
    ax.set_ylim(ext[2], ext[3])
    _colorbar(ax, lc, 'local magnification (× uniform)', log_ticks=True)
    gh, gw = panels.grid.shape[:2]
    ax.set_title(f'sampling grid ({gh}×{gw} LZ grid over the original)', fontsize=9)
    _label_px(ax)


def _mag_range(mag: np.ndarray):
    valid = mag[mag > 0]
    if valid.size == 0:
        return 0.5, 2.0
    lo, hi = float(valid.min()), float(valid.max())
    span = max(1.0 / lo, hi, 1.05)
    return 1.0 / span, span


def draw_magnification(ax, panels: WarpPanels) -> None:
    """Magnification ratio heatmap (Figure 6, last column): sampling density relative to a uniform resize."""
    from matplotlib.colors import LogNorm

    ext = _extent(panels.image.shape, panels.scale)
    mag = panels.magnification
    lo, hi = _mag_range(mag)
    ax.imshow(panels.image.mean(-1), cmap='gray', extent=ext)
    im = ax.imshow(np.where(mag > 0, mag, np.nan), cmap='RdBu_r', norm=LogNorm(lo, hi), alpha=0.8, extent=ext)
    _colorbar(ax, im, 'magnification (× uniform sampling density)', log_ticks=True)
    ax.set_title(f'magnification (mean {mag.mean():.3f}, range {mag[mag > 0].min():.2f}–{mag.max():.2f})'
                 if (mag > 0).any() else 'magnification', fontsize=9)
    _label_px(ax)


def draw_unzoomed(ax, panels: WarpPanels) -> None:
    """``unzoom(zoom(image))`` with the pixels the inverse does not cover hatched in red."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    ext = _extent(panels.image.shape, panels.scale)
    ax.imshow(panels.unzoomed, extent=ext)
    if panels.uncovered.any():
        ax.imshow(np.where(panels.uncovered, 1.0, np.nan), cmap=ListedColormap(['red']), alpha=0.5, extent=ext,
                  vmin=0, vmax=1)
        ax.contourf(np.linspace(ext[0], ext[1], panels.uncovered.shape[1]),
                    np.linspace(ext[3], ext[2], panels.uncovered.shape[0]), panels.uncovered.astype(float),
                    levels=[0.5, 1.5], hatches=['////'], colors='none')
    ax.legend(handles=[Patch(facecolor='red', alpha=0.5, hatch='////', label='not covered by the inverse')],
              loc='lower right', fontsize=7, framealpha=0.7)
    ax.set_title(f'unzoom(zoom(image)) ({100 * panels.uncovered.mean():.2f}% not covered)', fontsize=9)
    _label_px(ax)


def draw_coefficients(ax, panels: WarpPanels) -> None:
    """A learned interpolation's (DownsizeNet) coefficient maps ``a1..a4`` as a 2x2 mosaic over the zoomed frame.

    ``a1`` top-left (the neighbour ``P1``), ``a2`` top-right, ``a3``
    bottom-left, ``a4`` bottom-right; colour bar: the coefficient (0..1).
    """
    a = panels.coefficients
    h, w = a.shape[1:]
    gap = max(1, min(h, w) // 40)
    mosaic = np.full((2 * h + gap, 2 * w + gap), np.nan)
    for k, (r, c) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        mosaic[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = a[k]
    im = ax.imshow(mosaic, cmap='viridis', vmin=0, vmax=1)
    for k, (r, c) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        ax.text(c * (w + gap) + 2, r * (h + gap) + 2, f'a{k + 1}', color='white', fontsize=7, va='top')
    _colorbar(ax, im, 'interpolation coefficient')
    ax.set_title('DownsizeNet coefficients a1..a4 (zoomed frame, 2×2 mosaic)', fontsize=9)
    _label_px(ax, 'zoomed image, per coefficient')


def draw_coefficient_deviation(ax, panels: WarpPanels) -> None:
    """Where the learned interpolation departs from bilinear: ``sum_i |a_i - w_i| / 2`` over the zoomed frame."""
    dev = panels.coefficient_deviation()
    im = ax.imshow(dev, cmap='magma', vmin=0, vmax=max(float(dev.max()), 1e-6))
    _colorbar(ax, im, 'Σ|a − w_bilinear| / 2')
    ax.set_title(f'DownsizeNet − bilinear (mean {dev.mean():.3f}, max {dev.max():.3f})', fontsize=9)
    _label_px(ax, 'zoomed image')


def draw_predictions(ax, painted: Optional[np.ndarray], painted_by: Optional[str] = None,
                     note: Optional[str] = None) -> None:
    """The predictions as the framework's visualizer painted them on the original image.

    Args:
        ax: matplotlib axes.
        painted: ``[H0, W0, 3]`` uint8 RGB original image with the predictions
            drawn by ``DetLocalVisualizer`` / ``SegLocalVisualizer`` /
            ``Det3DLocalVisualizer`` (:func:`lzu_mm.visualization.paint_predictions`),
            or None (no checkpoint: an empty panel saying so).
        painted_by: the visualizer's class name, for the title.
        note: what was drawn, for the title (e.g. from
            :func:`lzu_mm.visualization.predictions_note`).
    """
    if painted is None:
        ax.axis('off')
        ax.set_title('predictions: none (no checkpoint)', fontsize=9)
        return
    ax.imshow(painted, extent=_extent(painted.shape))
    _label_px(ax)
    what = ', '.join(x for x in (painted_by or 'framework visualizer', note) if x)
    ax.set_title(f'predictions on the original image ({what})', fontsize=9)


def plot_lzu_panels(panels: WarpPanels,
                    predictions: Optional[np.ndarray] = None,
                    show_predictions: Optional[bool] = None,
                    title: Optional[str] = None,
                    panel_width: float = 5.6,
                    predictions_by: Optional[str] = None,
                    predictions_note: Optional[str] = None):
    """Compose the panel figure.

    Panels: saliency over the image (the fixed one, or the model's learned
    saliency of this image); zoomed image; sampling grid over the original;
    magnification heatmap; ``unzoom(zoom(image))`` with uncovered regions
    marked; with a learned interpolation (``panels.coefficients``), its
    coefficient maps and their departure from bilinear; and, when
    ``predictions`` are given (or ``show_predictions``), the original image
    with the predictions painted by the framework's visualizer.

    Args:
        panels: from :func:`lzu_mm.visualization.compute_warp_panels`.
        predictions: ``[H0, W0, 3]`` uint8 RGB original image painted by the
            framework's visualizer (:func:`lzu_mm.visualization.paint_predictions`).
        show_predictions: force the predictions panel on/off (default: on iff
            ``predictions`` is not None).
        title: figure title.
        panel_width: inches per panel.
        predictions_by: the visualizer's class name, for the panel's title.
        predictions_note: what was drawn (e.g. the number of boxes), for the panel's title.

    Returns:
        A ``matplotlib.figure.Figure`` (Agg canvas attached).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    draws = [lambda ax: draw_saliency(ax, panels), lambda ax: draw_zoomed(ax, panels),
             lambda ax: draw_sampling_grid(ax, panels), lambda ax: draw_magnification(ax, panels),
             lambda ax: draw_unzoomed(ax, panels)]
    if panels.coefficients is not None:
        draws.append(lambda ax: draw_coefficients(ax, panels))
        if panels.bilinear is not None:
            draws.append(lambda ax: draw_coefficient_deviation(ax, panels))
    if show_predictions if show_predictions is not None else predictions is not None:
        draws.append(lambda ax: draw_predictions(ax, predictions, predictions_by, predictions_note))
    ncols = 3
    nrows = int(np.ceil(len(draws) / ncols))
    h, w = panels.image.shape[:2]
    fig = Figure(figsize=(panel_width * ncols, panel_width * h / w * nrows + 0.9 * nrows + 0.4))
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, draw in zip(axes, draws):
        draw(ax)
    for ax in axes[len(draws):]:
        ax.axis('off')
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def figure_to_array(fig) -> np.ndarray:
    """Render a figure to an ``[H, W, 3]`` uint8 RGB array."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def save_panels(panels: WarpPanels,
                out_dir: str,
                predictions: Optional[np.ndarray] = None,
                title: Optional[str] = None,
                prefix: str = '',
                show_predictions: Optional[bool] = None,
                predictions_by: Optional[str] = None,
                predictions_note: Optional[str] = None) -> dict:
    """Write the panel figure and the raw panels of one image into ``out_dir``.

    Files (``prefix`` prepended): ``panels.png`` (the figure), ``zoomed.png``,
    ``unzoomed.png``, ``uncovered.png`` (mask), ``magnification.npy``
    (float32, × uniform) and ``summary.json`` (see
    :meth:`WarpPanels.summary`).

    ``predictions`` (the painted original image), ``show_predictions``,
    ``predictions_by`` and ``predictions_note`` are passed to :func:`plot_lzu_panels`.

    Returns:
        ``{name: path}`` of the files written.
    """
    import json
    import os
    import os.path as osp

    import cv2

    os.makedirs(out_dir, exist_ok=True)
    paths = {k: osp.join(out_dir, prefix + f) for k, f in
             (('figure', 'panels.png'), ('zoomed', 'zoomed.png'), ('unzoomed', 'unzoomed.png'),
              ('uncovered', 'uncovered.png'), ('magnification', 'magnification.npy'), ('summary', 'summary.json'))}
    fig = plot_lzu_panels(panels, predictions, show_predictions, title=title, predictions_by=predictions_by,
                          predictions_note=predictions_note)
    fig.savefig(paths['figure'], dpi=100)
    cv2.imwrite(paths['zoomed'], np.ascontiguousarray(panels.zoomed[..., ::-1]))
    cv2.imwrite(paths['unzoomed'], np.ascontiguousarray(panels.unzoomed[..., ::-1]))
    cv2.imwrite(paths['uncovered'], panels.uncovered.astype(np.uint8) * 255)
    np.save(paths['magnification'], panels.magnification.astype(np.float32))
    with open(paths['summary'], 'w') as f:
        json.dump(panels.summary(), f, indent=2)
    return paths
