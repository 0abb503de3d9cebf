"""Interpolation at sampling positions (ops.resample) and boxes through a warp (ops.boxes)."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lzu_mm.ops import (LZWarp, bilinear_neighbours, bilinear_resample, identity_grid, interpolate, saliency_to_grid,
                        uniform_saliency, unzoom_boxes, warp_points, zoom_boxes, zoom_sampling_grid)


def _grid(seed, separable=True, bsz=2, shape=(7, 11)):
    gen = torch.Generator().manual_seed(seed)
    return saliency_to_grid(torch.rand(bsz, 1, *shape, generator=gen, dtype=torch.float64)**3 + 0.05,
                            separable=separable, attraction_fwhm=3.)


def test_neighbours_are_grid_samples_bilinear_exactly():
    """Four neighbours x bilinear weights == grid_sample (zero padding included), values and gradients."""
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 37, 53, generator=gen) * 255
    grid = _grid(0)
    sampling = zoom_sampling_grid(grid, (37, 53), (24, 30), 2, [(37, 53), (30, 41)], [(24, 30), (17, 22)])
    assert bool((sampling.abs() > 1).any())  # the padding of the smaller output reads zeros
    neighbours = bilinear_neighbours(images, sampling)
    assert torch.allclose(neighbours.weights.sum(1), torch.ones(()), atol=1e-6)
    assert (interpolate(neighbours, neighbours.weights) - bilinear_resample(images, sampling)).abs().max() < 1e-4
    # gradients w.r.t. the positions match grid_sample's
    pos = sampling.clone().requires_grad_(True)
    interpolate(bilinear_neighbours(images, pos), bilinear_neighbours(images, pos).weights).sum().backward()
    ours = pos.grad.clone()
    pos.grad = None
    F.grid_sample(images, pos, align_corners=True).sum().backward()
    inside = (sampling.abs() < 0.99).all(-1)  # away from the kinks at pixel centres of the border
    assert torch.allclose(ours[inside], pos.grad[inside], rtol=1e-3, atol=1e-2)


def test_top_left_neighbour_index():
    images = torch.arange(12.).view(1, 1, 3, 4)
    sampling = torch.tensor([[[[-1., -1.], [1., 1.], [-0.3, 0.2]]]])  # pixels (0, 0), (3, 2), (1.05, 1.2)
    n = bilinear_neighbours(images, sampling)
    assert n.top_left.tolist() == [[0, 11, 5]]
    assert torch.allclose(interpolate(n, n.weights)[0, 0, 0], torch.tensor([0., 11., 1.05 + 1.2 * 4]))


def test_uniform_positions_are_resize():
    """An identity grid's sampling positions (half-pixel) resample like a bilinear Resize (F.interpolate)."""
    images = torch.rand(1, 3, 60, 90, dtype=torch.float64)
    for out in ((30, 45), (17, 23), (120, 200)):
        sampling = zoom_sampling_grid(identity_grid(), (60, 90), out, dtype=torch.float64)
        expected = F.interpolate(images, size=out, mode='bilinear', align_corners=False)  # also when upsampling
        assert (bilinear_resample(images, sampling) - expected).abs().max() < 1e-12
    cached = LZWarp(uniform_saliency((2, 2))).zoom_sampling_grid((60, 90), (30, 45))
    assert torch.allclose(cached.double(), zoom_sampling_grid(identity_grid(), (60, 90), (30, 45),
                                                              dtype=torch.float64), atol=1e-7)


def _np_inverse(knots, q):
    """Independent 1-D inverse of a piecewise-linear map (knots on the [-1, 1] lattice)."""
    return np.interp(q, knots, np.linspace(-1, 1, len(knots)))


@pytest.mark.parametrize('align_corners', [False, True])
def test_boxes_round_trip_and_independent_inverse(align_corners):
    grid = _grid(1)
    img_shapes = [(90, 160), (70, 120)]
    gen = torch.Generator().manual_seed(2)
    xy = torch.rand(2, 5, 2, generator=gen, dtype=torch.float64) * 0.6
    boxes = torch.cat([xy, xy + 0.3], -1) * torch.tensor([160., 90., 160., 90.], dtype=torch.float64)
    boxes[1] *= 0.75
    zoomed = zoom_boxes(boxes, grid, img_shapes, align_corners=align_corners)
    back = unzoom_boxes(zoomed, grid, img_shapes, align_corners=align_corners)
    assert (back - boxes).abs().max() < 1e-6
    if not align_corners:  # the zoomed x1 of sample 0 computed here from the grid alone
        x1 = boxes[0, :, 0].numpy()
        expected = (_np_inverse(grid[0, 0, :, 0].numpy(), 2 * x1 / 160 - 1) + 1) / 2 * 160
        np.testing.assert_allclose(zoomed[0, :, 0].numpy(), expected, atol=1e-6)
    # the identity grid moves nothing
    assert (zoom_boxes(boxes, identity_grid(), img_shapes, align_corners=align_corners) - boxes).abs().max() < 1e-9


def test_non_separable_boxes_enclose_the_mapped_outline():
    grid = _grid(3, separable=False, bsz=1)
    box = torch.tensor([[[40., 20., 100., 70.]]], dtype=torch.float64)
    out = unzoom_boxes(box, grid, (90, 160), separable=False, edge_points=33)
    t = torch.linspace(0, 1, 200, dtype=torch.float64)
    edge = torch.cat([torch.stack([40 + 60 * t, 20 + 0 * t], -1), torch.stack([40 + 60 * t, 70 + 0 * t], -1),
                      torch.stack([40 + 0 * t, 20 + 50 * t], -1), torch.stack([100 + 0 * t, 20 + 50 * t], -1)])
    u = edge / torch.tensor([160., 90.], dtype=torch.float64) * 2 - 1
    mapped = (warp_points(grid, u[None])[0] + 1) / 2 * torch.tensor([160., 90.], dtype=torch.float64)
    dense = torch.cat([mapped.amin(0), mapped.amax(0)])
    assert (out[0, 0] - dense).abs().max() < 0.05  # 33 points per edge vs 200
    with pytest.raises(ValueError, match='not separable'):
        unzoom_boxes(box, grid, (90, 160), separable=True)


def test_boxes_bad_input():
    grid = _grid(1, bsz=1)
    with pytest.raises(ValueError, match=r'boxes must have shape \[B, N, 4\]'):
        zoom_boxes(torch.zeros(3, 4), grid, (90, 160))
    with pytest.raises(ValueError, match='img_shapes must give one'):
        zoom_boxes(torch.zeros(3, 2, 4), grid, [(90, 160), (80, 100)])
    assert zoom_boxes(torch.zeros(1, 0, 4), grid, (90, 160)).shape == (1, 0, 4)
    with pytest.raises(ValueError, match='sampling_grid must have shape'):
        bilinear_neighbours(torch.zeros(1, 3, 4, 4), torch.zeros(1, 4, 4))
