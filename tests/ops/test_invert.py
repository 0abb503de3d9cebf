"""Inverse of the piecewise-bilinear warp (§4.1, eq. 5-7, Figure 5; Appendix A.2)."""
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from lzu_mm.ops import invert_grid, invert_points, saliency_to_grid, uniform_saliency, upsample_grid
from lzu_mm.ops.invert import _EDGE_TOL, _Axis, _inside_boundary_lattice, _locate_points, _Tiles, invert_lattice

from .reference import convex_tiles, forward_map, tile_cover


def lattice(h, w, dtype=torch.float64):
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h, dtype=dtype), torch.linspace(-1, 1, w, dtype=dtype),
                            indexing='ij')
    return torch.stack([xs, ys], -1)[None]


def peaked_saliency(b, h, w, seed, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(b, 1, h, w, generator=gen)**4 + 0.05).to(dtype)


def test_uniform_inverse_is_identity():
    for separable in (True, False):
        inv = invert_grid(saliency_to_grid(uniform_saliency((27, 48))), (90, 160),
                          separable=separable,
                          align_corners=True)
        assert (inv - lattice(90, 160, torch.float32)).abs().max() < 1e-5


def inverse_of_forward_error_px(grid, separable, n=2000, seed=0):
    """Max |T~^-1(T~(p)) - p| over random warped positions p, in pixels of a 600x960 map."""
    b, h, w, _ = grid.shape
    gen = torch.Generator().manual_seed(seed)
    pos = torch.rand(b, n, 2, generator=gen, dtype=torch.float64) * torch.tensor([w - 1., h - 1.], dtype=torch.float64)
    points = forward_map(grid, pos)  # normalised points of the original image
    back = invert_points(grid, points, separable=separable)
    back_pos = (back + 1) / 2 * torch.tensor([w - 1., h - 1.], dtype=torch.float64)
    px = torch.tensor([959. / (w - 1), 599. / (h - 1)], dtype=torch.float64)  # grid cell -> 600x960 pixels
    return ((back_pos - pos).abs() * px).max().item()


def test_inverse_of_forward_is_identity_within_1e3_px():
    sal = peaked_saliency(2, 31, 51, seed=0, dtype=torch.float64)
    assert inverse_of_forward_error_px(saliency_to_grid(sal, separable=True), separable=True) < 1e-3
    assert inverse_of_forward_error_px(saliency_to_grid(sal, separable=True), separable=False) < 1e-3
    assert inverse_of_forward_error_px(saliency_to_grid(sal, separable=False), separable=False) < 1e-3


def test_float32_lattice_inverse_lands_on_the_lattice():
    """forward(inverse(q)) = q for every output pixel of a full-resolution inverse (float32)."""
    for separable in (True, False):
        grid = saliency_to_grid(peaked_saliency(1, 31, 51, seed=3), separable=separable)
        inv = invert_grid(grid, (120, 192), separable=separable, align_corners=True)
        pos = (inv.reshape(1, -1, 2).double() + 1) / 2 * torch.tensor([50., 30.], dtype=torch.float64)
        fwd = forward_map(grid.double(), pos).view(1, 120, 192, 2)
        err_px = (fwd - lattice(120, 192)).abs() * torch.tensor([191 / 2, 119 / 2], dtype=torch.float64)
        assert err_px.max() < 1e-3


def test_separable_and_bilinear_inversion_agree_on_separable_grid():
    grid = saliency_to_grid(peaked_saliency(2, 27, 48, seed=1), separable=True)
    sep = invert_grid(grid, (113, 201), separable=True, align_corners=True)
    full = invert_grid(grid, (113, 201), separable=False, align_corners=True)
    assert (sep - full).abs().max() < 1e-5


def test_batched_equals_per_sample():
    sal = peaked_saliency(3, 12, 17, seed=2)
    for separable in (True, False):
        grid = saliency_to_grid(sal, separable=separable)
        batched = invert_grid(grid, (40, 50), separable=separable, align_corners=True)
        single = torch.cat([invert_grid(g[None], (40, 50), separable=separable, align_corners=True) for g in grid])
        assert torch.allclose(batched, single, atol=1e-6)


def test_uncovered_points_are_outside_or_clamped():
    """Without anti-crop the warp does not reach the border; those points read zeros (or the border)."""
    sal = torch.full((1, 1, 16, 16), 1e-3)
    sal[..., 5:11, 5:11] = 1
    for separable in (True, False):
        grid = saliency_to_grid(sal, separable=separable, attraction_fwhm=6., anti_crop=False)
        inv = invert_grid(grid, (64, 64), separable=separable, align_corners=True)
        assert inv[0, 0, 0].abs().max() > 1  # corner of the image: no tile covers it
        assert inv[0, 32, 32].abs().max() <= 1  # centre: covered
        clamped = invert_grid(grid, (64, 64), separable=separable, clamp=True, align_corners=True)
        assert clamped.abs().max() <= 1
        covered = (inv.abs() <= 1).all(-1)
        assert torch.equal(clamped[covered], inv[covered])


def no_anti_crop_grid(b=1, seed=5):
    """Non-separable, no anti-crop: a band along the image border is covered by no tile."""
    grid = saliency_to_grid(peaked_saliency(b, 12, 17, seed, torch.float64), separable=False, attraction_fwhm=4.,
                            anti_crop=False)
    assert convex_tiles(grid)  # so that the brute-force reference (corner quadrilaterals) is exact
    return grid


def noisy_grid(b=1, seed=6, noise=2.3e-6, shape=(12, 17)):
    """An anti-crop grid perturbed by float noise: border points fall just inside or just outside."""
    grid = saliency_to_grid(peaked_saliency(b, *shape, seed, torch.float64), separable=False)
    gen = torch.Generator().manual_seed(seed)
    return grid + (torch.rand(grid.shape, generator=gen, dtype=torch.float64) * 2 - 1) * noise


def edge_band(grid):
    """Distance outside a tile within which a point may still count as on its edge (2x the edge tolerance)."""
    return 2 * _EDGE_TOL * float((grid[:, 1:] - grid[:, :-1]).norm(dim=-1).max().clamp_min(
        (grid[:, :, 1:] - grid[:, :, :-1]).norm(dim=-1).max()))


def assert_matches_brute_force(grid, points, inverse, clamped):
    """Covered where some tile covers the point, exact there, outside (or clamped to the border) elsewhere.

    Points within the edge tolerance outside the tiles may go either way.
    """
    h, w = grid.shape[1:3]
    covered = (inverse.abs() <= 1).all(-1)
    inside = tile_cover(grid, points, 1e-9)
    assert covered[inside].all()  # inside a tile: found
    assert not covered[~tile_cover(grid, points, -edge_band(grid))].any()  # outside every tile: not covered
    pos = (inverse + 1) / 2 * torch.tensor([w - 1., h - 1.], dtype=grid.dtype)
    error = (forward_map(grid, pos) - points).abs().amax(-1)
    assert error[inside].max() < 1e-9  # an exact preimage
    assert error[covered].max() <= edge_band(grid)  # on the border, within the edge tolerance
    assert (clamped.abs() <= 1).all() and torch.equal(clamped[covered], inverse[covered])
    assert (clamped[~covered].abs() == 1).any(-1).all()  # uncovered points: clamped onto the border
    return covered


def test_lattice_without_anti_crop_matches_brute_force():
    grid = no_anti_crop_grid()
    points = lattice(64, 96).reshape(1, -1, 2)
    inverse = invert_grid(grid, (64, 96), separable=False, align_corners=True).reshape(1, -1, 2)
    clamped = invert_grid(grid, (64, 96), separable=False, clamp=True, align_corners=True).reshape(1, -1, 2)
    covered = assert_matches_brute_force(grid, points, inverse, clamped)
    assert 0.01 < 1 - covered.double().mean() < 0.2  # the band covered by no tile


def test_points_without_anti_crop_match_brute_force():
    grid = no_anti_crop_grid()
    gen = torch.Generator().manual_seed(7)
    points = torch.rand(1, 3000, 2, generator=gen, dtype=torch.float64) * 2.2 - 1.1
    covered = assert_matches_brute_force(grid, points, invert_points(grid, points, separable=False),
                                         invert_points(grid, points, separable=False, clamp=True))
    assert 0.05 < 1 - covered.double().mean() < 0.5


def test_float_noise_and_dense_grids_match_brute_force():
    """Border points of a noisy grid, and a grid as dense as the output, are located exactly."""
    grid = noisy_grid(shape=(31, 51))  # issue 13: a 31x51 grid and float noise of 2.3e-6
    border = torch.ones(40, 64, dtype=torch.bool)
    border[1:-1, 1:-1] = False
    points = lattice(40, 64)[:, border]
    covered = assert_matches_brute_force(
        grid, points,
        invert_grid(grid, (40, 64), separable=False, align_corners=True)[:, border],
        invert_grid(grid, (40, 64), separable=False, clamp=True, align_corners=True)[:, border])
    assert 0.1 < 1 - covered.double().mean() < 0.9  # border points fall either side
    dense = upsample_grid(saliency_to_grid(peaked_saliency(1, 7, 9, 8, torch.float64), separable=False), (24, 40),
                          align_corners=True)  # the corner-aligned dense grid: it spans [-1, 1] edge to edge
    points = lattice(24, 40).reshape(1, -1, 2)
    covered = assert_matches_brute_force(
        dense, points,
        invert_grid(dense, (24, 40), separable=False, align_corners=True).view(1, -1, 2),
        invert_grid(dense, (24, 40), separable=False, clamp=True, align_corners=True).view(1, -1, 2))
    assert covered.all()


def test_border_collapsed_by_the_clamp_is_covered():
    """Without anti-crop, the clamp to [-1, 1] collapses tiles onto the image border (zero area).

    Points on that stretch of border are covered (as by the separable inversion), with an exact preimage.
    """
    grid = saliency_to_grid(peaked_saliency(1, 31, 51, seed=0, dtype=torch.float64), separable=False,
                            attraction_fwhm=13., anti_crop=False)
    bottom = grid[0, -1]
    assert (grid[0, -2:, :3, 1] == 1).all()  # collapsed tiles in the bottom-left corner
    collapsed_to = bottom[bottom[:, 1] == 1, 0].max()  # the bottom border runs along y = 1 from x = -1 to here
    inverse = invert_grid(grid, (60, 96), separable=False, align_corners=True)
    covered = (inverse[0, -1].abs() <= 1).all(-1)
    assert torch.equal(covered, torch.linspace(-1, 1, 96, dtype=torch.float64) <= collapsed_to)
    pos = (inverse[:, -1] + 1) / 2 * torch.tensor([50., 30.], dtype=torch.float64)
    assert (forward_map(grid, pos) - lattice(60, 96)[:, -1]).abs()[:, covered].max() < 1e-9


def test_boundary_tests_agree_with_brute_force():
    """Inside the warped image's border = covered by some tile (no fold-overs), for both even-odd tests."""
    grid = no_anti_crop_grid()
    points = lattice(64, 96).reshape(1, -1, 2)
    tiles = _Tiles(grid, points.shape[1])
    on_lattice = _inside_boundary_lattice(tiles, _Axis.of(points[:, :96, 0]), _Axis.of(points[:, ::96, 1]),
                                          torch.arange(points.shape[1]))
    pairwise = tiles.inside_boundary(torch.arange(points.shape[1]), points[0, :, 0], points[0, :, 1])
    surely_in, surely_out = tile_cover(grid, points, edge_band(grid))[0], ~tile_cover(grid, points, -edge_band(grid))[0]
    assert surely_out.sum() > 100
    for inside in (on_lattice, pairwise):
        assert inside[surely_in].all() and not inside[surely_out].any()


def test_search_places_points_as_the_walk_does():
    """The last-resort search over every tile finds the same preimages."""
    grid = no_anti_crop_grid(b=2)
    points = torch.rand(2, 300, 2, generator=torch.Generator().manual_seed(13), dtype=torch.float64) * 2.2 - 1.1
    tiles = _Tiles(grid, 300)
    loc = _locate_points(tiles, points[..., 0], points[..., 1])
    found = loc.covered.nonzero()[:, 0]
    expected = torch.stack([loc.s + loc.tx, loc.t + loc.ty], -1)[found]
    loc.covered[found], loc.tx[found], loc.ty[found] = False, 0, 0
    tiles.search(loc, found)
    assert loc.covered[found].all()
    assert (torch.stack([loc.s + loc.tx, loc.t + loc.ty], -1)[found] - expected).abs().max() < 1e-9


def test_batched_equals_per_sample_with_uncovered_points():
    grid = torch.cat([no_anti_crop_grid(), noisy_grid(), no_anti_crop_grid(seed=9)])
    gen = torch.Generator().manual_seed(10)
    points = torch.rand(3, 500, 2, generator=gen, dtype=torch.float64) * 2.2 - 1.1
    batched = invert_grid(grid, (40, 50), separable=False, align_corners=True)
    single = torch.cat([invert_grid(g[None], (40, 50), separable=False, align_corners=True) for g in grid])
    assert (batched - single).abs().max() < 1e-12
    batched = invert_points(grid, points, separable=False)
    single = torch.cat([invert_points(g[None], p[None], separable=False) for g, p in zip(grid, points)])
    assert (batched - single).abs().max() < 1e-12


def test_uneven_lattice_equals_points():
    """A lattice whose queries are not evenly spaced is inverted point by point, with the same result."""
    grid = no_anti_crop_grid()
    gen = torch.Generator().manual_seed(11)
    qx = torch.rand(1, 30, generator=gen, dtype=torch.float64).sort(-1)[0] * 2.2 - 1.1
    qy = torch.linspace(-1, 1, 20, dtype=torch.float64)[None]
    points = torch.stack([qx[:, None, :].expand(1, 20, 30), qy[:, :, None].expand(1, 20, 30)], -1).reshape(1, -1, 2)
    expected = invert_points(grid, points, separable=False).view(1, 20, 30, 2)
    assert torch.equal(invert_lattice(grid, qx, qy, separable=False), expected)


def test_gradcheck_through_generation_and_inversion():
    for separable in (True, False):
        sal = peaked_saliency(1, 4, 5, seed=4, dtype=torch.float64).requires_grad_()

        def fn(s):
            grid = saliency_to_grid(s, separable=separable, attraction_fwhm=3.)
            return invert_grid(grid, (7, 9), separable=separable, align_corners=True)

        assert torch.autograd.gradcheck(fn, (sal, ), eps=1e-6, atol=1e-5)


def test_gradcheck_points():
    grid = saliency_to_grid(peaked_saliency(1, 4, 5, seed=4, dtype=torch.float64), separable=False,
                            attraction_fwhm=3.).requires_grad_()
    points = (torch.rand(1, 6, 2, generator=torch.Generator().manual_seed(12), dtype=torch.float64) * 1.8 -
              0.9).requires_grad_()
    assert torch.autograd.gradcheck(lambda g, p: invert_points(g, p, separable=False), (grid, points), eps=1e-6,
                                    atol=1e-5)


saliency_maps = st.tuples(st.integers(2, 9), st.integers(2, 9)).flatmap(lambda hw: arrays(
    'float64', (1, 1, *hw), elements=st.floats(0, 1, allow_nan=False, allow_infinity=False)))


@settings(max_examples=int(__import__("os").environ.get("LZU_HYPOTHESIS_EXAMPLES", 40)), deadline=None)
@given(saliency=saliency_maps, fwhm=st.floats(1.0, 20.0), separable=st.booleans(), anti_crop=st.booleans())
def test_property_grids_are_monotone_and_invert(saliency, fwhm, separable, anti_crop):
    sal = torch.from_numpy(saliency) + 1e-3  # keep every map positive-sum
    grid = saliency_to_grid(sal, separable=separable, attraction_fwhm=fwhm, anti_crop=anti_crop)
    # monotone: x never decreases along rows, y never along columns
    assert (grid[..., 0].diff(dim=2) >= 0).all() and (grid[..., 1].diff(dim=1) >= 0).all()
    e = grid[:, :-1, 1:] - grid[:, :-1, :-1]
    f = grid[:, 1:, :-1] - grid[:, :-1, :-1]
    unfolded = bool((e[..., 0] * f[..., 1] - e[..., 1] * f[..., 0] >= -1e-12).all())
    if separable or anti_crop:
        # no fold-overs: every tile keeps its orientation. (Without anti-crop, the clamp to
        # [-1, 1] of the authors' formulation can fold border tiles of extreme 2-D maps;
        # a folded map has no inverse, so those are not inverted below.)
        assert unfolded
    assume(unfolded)
    # always inverts: T~(T~^-1(q)) = q on covered points
    inv = invert_grid(grid, (11, 13), separable=separable, align_corners=True)
    h, w = grid.shape[1:3]
    covered = (inv.abs() <= 1 + 1e-9).all(-1)
    if anti_crop:
        assert covered.all()
    pos = (inv.reshape(1, -1, 2) + 1) / 2 * torch.tensor([w - 1., h - 1.], dtype=torch.float64)
    fwd = forward_map(grid, pos).view(1, 11, 13, 2)
    if covered.any():  # within 1e-3 px of the 11x13 output
        err_px = (fwd - lattice(11, 13)).abs() * torch.tensor([6., 5.], dtype=torch.float64)
        assert err_px[covered].max() < 1e-3
    if convex_tiles(grid):  # covered exactly where the brute-force reference says so
        points = lattice(11, 13).reshape(1, -1, 2)
        assert covered.view(1, -1)[tile_cover(grid, points, 1e-9)].all()
        assert not covered.view(1, -1)[~tile_cover(grid, points, -edge_band(grid))].any()


def test_half_pixel_lattice_and_non_separable_refusal():
    """invert_grid's default lattice is the half-pixel one of every pixel-facing op (a uniform warp gives pixel
    centres (2j + 1) / W - 1); a 2-D grid inverted separably is refused, not misplaced."""
    grid = saliency_to_grid(uniform_saliency((27, 48)).double())
    inv = invert_grid(grid, (9, 16))
    xs = (2 * torch.arange(16, dtype=torch.float64) + 1) / 16 - 1
    ys = (2 * torch.arange(9, dtype=torch.float64) + 1) / 9 - 1
    assert torch.allclose(inv[0, ..., 0], xs[None].expand(9, 16), atol=1e-9)
    assert torch.allclose(inv[0, ..., 1], ys[:, None].expand(9, 16), atol=1e-9)
    gen = torch.Generator().manual_seed(3)
    grid2d = saliency_to_grid(torch.rand(1, 1, 8, 12, generator=gen)**4 + 0.05, separable=False)
    for call in (lambda: invert_grid(grid2d, (20, 30)), lambda: invert_points(grid2d, torch.zeros(1, 4, 2))):
        with pytest.raises(ValueError, match='not separable'):
            call()
