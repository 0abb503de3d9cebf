"""lzu_mm.ops.bbox_kde_saliency: FOVEA's box-to-saliency formula at run time (KDE SI / LKDE), batched and robust."""
import math

import numpy as np
import pytest
import torch

from lzu_mm.ops import bbox_kde_saliency, fovea_uniform_weight, kde_box_saliency, saliency_to_grid

GRID = (31, 51)


def fovea_loop(boxes, img_shape, grid_shape=GRID, bandwidth=64., amplitude=1., align_corners=False):
    """FOVEA's bbox2sal written out point by point (fovea/models/grid_generator.py): a Gaussian per box with
    variances bandwidth * (w, h), divided by (1e-5 + its sum), times amplitude, plus 1 / (2p + 1)^2, summed, normalised;
    grid points linspace(0, W, w) x linspace(0, H, h) (linspace(0, W - 1, w) ... with align_corners)."""
    (h, w), (H, W) = grid_shape, img_shape
    p = min(h, w) - 1
    ext = 1 if align_corners else 0
    out = np.zeros((h, w))
    for x1, y1, x2, y2 in boxes:
        cx, cy, vx, vy = (x1 + x2) / 2, (y1 + y2) / 2, bandwidth * (x2 - x1), bandwidth * (y2 - y1)
        g = np.zeros((h, w))
        for i in range(h):
            for j in range(w):
                gx, gy = j * (W - ext) / (w - 1), i * (H - ext) / (h - 1)
                g[i, j] = math.exp(-0.5 * ((gx - cx)**2 / vx + (gy - cy)**2 / vy))
        out += amplitude * g / (1e-5 + g.sum()) + 1 / (2 * p + 1)**2
    return torch.from_numpy(out / out.sum())


BOXES = [
    torch.tensor([[100., 200., 420., 380.], [1500., 40., 1620., 700.], [900., 600., 930., 640.]]),  # 1200 x 1920
    torch.tensor([[10., 10., 200., 90.]]),  # 900 x 1600
]
SHAPES = [(1200, 1920), (900, 1600)]


@pytest.mark.parametrize('align_corners', [False, True])
def test_matches_a_loop_of_fovea_formula(align_corners):
    """Batched over images of different sizes and box counts; within 1e-6 of FOVEA's formula."""
    out = bbox_kde_saliency(BOXES, SHAPES, GRID, align_corners=align_corners, dtype=torch.float64)
    assert out.shape == (2, 1, *GRID) and out.dtype == torch.float64
    for b in range(2):
        ref = fovea_loop(BOXES[b].tolist(), SHAPES[b], align_corners=align_corners)
        assert float((out[b, 0] - ref).abs().max()) < 1e-6  # measured 5e-10 (FOVEA's 1e-5 in the denominator)
    ref = fovea_loop(BOXES[0].tolist(), SHAPES[0], bandwidth=9., amplitude=3.)
    other = bbox_kde_saliency(BOXES[:1], SHAPES[0], GRID, 9., 3., dtype=torch.float64)
    assert float((other[0, 0] - ref).abs().max()) < 1e-6
    # the grid convention matters (it is not a no-op option): the two differ by far more
    flipped = bbox_kde_saliency(BOXES, SHAPES, GRID, align_corners=not align_corners, dtype=torch.float64)
    assert float((flipped - out).abs().max()) > 1e-6


def test_dataset_kde_is_the_same_formula():
    """kde_box_saliency (fixed KDE SD, FOVEA's uniform term by default) == bbox_kde_saliency of one image."""
    torch.testing.assert_close(kde_box_saliency(BOXES[0], SHAPES[0], GRID).double(),
                               bbox_kde_saliency(BOXES[:1], SHAPES[0], GRID, dtype=torch.float64), atol=1e-8, rtol=0)
    assert fovea_uniform_weight(GRID) == pytest.approx(31 * 51 / 61**2) == pytest.approx(0.4249, abs=1e-4)


def test_fallback_when_no_box_or_no_amplitude():
    uniform = torch.full((1, 1, *GRID), 1 / (31 * 51), dtype=torch.float64)
    box = [torch.tensor([[500., 300., 700., 500.]])]
    zero = bbox_kde_saliency(box, SHAPES[0], GRID, amplitude_scale=0., dtype=torch.float64)
    assert float((zero - uniform).abs().max()) < 1e-15
    near = bbox_kde_saliency(box, SHAPES[0], GRID, amplitude_scale=1e-9, dtype=torch.float64)
    assert 0 < float((near - uniform).abs().max()) < 1e-10  # continuous as amplitude_scale -> 0
    fixed = torch.rand(1, 1, *GRID) + 0.5
    out = bbox_kde_saliency([torch.zeros(0, 4), None, BOXES[1]], SHAPES[1], GRID, fallback=fixed, dtype=torch.float64)
    for b in (0, 1):
        torch.testing.assert_close(out[b:b + 1], (fixed / fixed.sum()).double())
    torch.testing.assert_close(out[2:], bbox_kde_saliency(BOXES[1:], SHAPES[1], GRID, dtype=torch.float64))


def test_bad_boxes_are_clipped_or_dropped_never_nan():
    """Outside the image: clipped; NaN / Inf / zero area (also after clipping): dropped; none left: the fallback."""
    good = torch.tensor([[100., 100., 300., 260.]])
    bad = torch.tensor([[float('nan'), 0., 10., 10.], [0., 0., float('inf'), 10.], [50., 50., 50., 90.],
                        [2000., 10., 2100., 50.], [30., 80., 10., 90.]])
    out = bbox_kde_saliency([torch.cat([good, bad]), bad], SHAPES[0], GRID, dtype=torch.float64)
    torch.testing.assert_close(out[0:1], bbox_kde_saliency([good], SHAPES[0], GRID, dtype=torch.float64))
    assert torch.equal(out[1:], torch.full((1, 1, *GRID), 1 / (31 * 51), dtype=torch.float64))
    partly = bbox_kde_saliency([torch.tensor([[-100., 1100., 200., 1300.]])], SHAPES[0], GRID, dtype=torch.float64)
    torch.testing.assert_close(partly, bbox_kde_saliency([torch.tensor([[0., 1100., 200., 1200.]])], SHAPES[0], GRID,
                                                         dtype=torch.float64))
    tiny = bbox_kde_saliency([torch.tensor([[7.2, 7.2, 7.3, 7.25]])], SHAPES[0], GRID, dtype=torch.float64)
    assert torch.isfinite(tiny).all() and torch.isfinite(saliency_to_grid(tiny)).all()


def test_differentiable_in_its_scales():
    """LKDE: tensor bandwidth / amplitude get exact gradients (gradcheck) through the whole map."""
    def fn(bandwidth, amplitude):
        return bbox_kde_saliency(BOXES, SHAPES, (7, 9), bandwidth, amplitude, dtype=torch.float64)

    bandwidth = torch.tensor([64.], dtype=torch.float64, requires_grad=True)
    amplitude = torch.tensor([1.5], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fn, (bandwidth, amplitude))
    grid = saliency_to_grid(fn(bandwidth, amplitude), attraction_fwhm=4.)
    grid.pow(2).sum().backward()
    assert torch.isfinite(bandwidth.grad).all() and float(bandwidth.grad.abs()) > 0
    assert torch.isfinite(amplitude.grad).all() and float(amplitude.grad.abs()) > 0


@pytest.mark.parametrize('kwargs, match', [
    (dict(boxes=torch.zeros(3, 4)), 'list of B tensors'),
    (dict(boxes=[]), 'one entry per image'),
    (dict(boxes=[torch.zeros(2, 3)]), r'boxes\[0\]'),
    (dict(img_shapes=[(10, 10)] * 3), 'img_shapes'),
    (dict(img_shapes=(0, 10)), 'img_shapes'),
    (dict(grid_shape=(1, 9)), 'grid_shape'),
    (dict(bandwidth_scale=0.), 'bandwidth_scale'),
    (dict(amplitude_scale=-1.), 'amplitude_scale'),
    (dict(bandwidth_scale=torch.ones(2)), 'bandwidth_scale'),
    (dict(fallback=torch.ones(1, 1, 3, 3)), 'fallback'),
])
def test_malformed_arguments(kwargs, match):
    args = dict(boxes=[torch.zeros(0, 4)], img_shapes=(10, 10), grid_shape=(7, 9))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        bbox_kde_saliency(**args)
