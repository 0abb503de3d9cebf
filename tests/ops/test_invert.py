"""Inverse of the piecewise-bilinear warp (§4.1, eq. 5-7, Figure 5; Appendix A.2)."""
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from lzu_mm.ops import invert_grid, invert_points, saliency_to_grid, uniform_saliency

from .reference import forward_map


def lattice(h, w, dtype=torch.float64):
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h, dtype=dtype), torch.linspace(-1, 1, w, dtype=dtype),
                            indexing='ij')
    return torch.stack([xs, ys], -1)[None]


def peaked_saliency(b, h, w, seed, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(b, 1, h, w, generator=gen)**4 + 0.05).to(dtype)


def test_uniform_inverse_is_identity():
    for separable in (True, False):
        inv = invert_grid(saliency_to_grid(uniform_saliency((27, 48))), (90, 160), separable=separable)
        assert (inv - lattice(90, 160, torch.float32)).abs().max() < 1e-5


def inverse_of_forward_error_px(grid, separable, n=2000, seed=0):
    """Max |T~^-1(T~(p)) - p| over random warped positions p, in pixels of a 600x960 map."""
    b, h, w, _ = grid.shape
    gen = torch.Generator().manual_seed(seed)
    pos = torch.rand(b, n, 2, generator=gen, dtype=torch.float64) * torch.tensor([w - 1., h - 1.],
                                                                                  dtype=torch.float64)
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
        inv = invert_grid(grid, (120, 192), separable=separable)
        pos = (inv.reshape(1, -1, 2).double() + 1) / 2 * torch.tensor([50., 30.], dtype=torch.float64)
        fwd = forward_map(grid.double(), pos).view(1, 120, 192, 2)
        err_px = (fwd - lattice(120, 192)).abs() * torch.tensor([191 / 2, 119 / 2], dtype=torch.float64)
        assert err_px.max() < 1e-3


def test_separable_and_bilinear_inversion_agree_on_separable_grid():
    grid = saliency_to_grid(peaked_saliency(2, 27, 48, seed=1), separable=True)
    sep = invert_grid(grid, (113, 201), separable=True)
    full = invert_grid(grid, (113, 201), separable=False)
    assert (sep - full).abs().max() < 1e-5


def test_batched_equals_per_sample():
    sal = peaked_saliency(3, 12, 17, seed=2)
    for separable in (True, False):
        grid = saliency_to_grid(sal, separable=separable)
        batched = invert_grid(grid, (40, 50), separable=separable)
        single = torch.cat([invert_grid(g[None], (40, 50), separable=separable) for g in grid])
        assert torch.allclose(batched, single, atol=1e-6)


def test_uncovered_points_are_outside_or_clamped():
    """Without anti-crop the warp does not reach the border; those points read zeros (or the border)."""
    sal = torch.full((1, 1, 16, 16), 1e-3)
    sal[..., 5:11, 5:11] = 1
    for separable in (True, False):
        grid = saliency_to_grid(sal, separable=separable, attraction_fwhm=6., anti_crop=False)
        inv = invert_grid(grid, (64, 64), separable=separable)
        assert inv[0, 0, 0].abs().max() > 1  # corner of the image: no tile covers it
        assert inv[0, 32, 32].abs().max() <= 1  # centre: covered
        clamped = invert_grid(grid, (64, 64), separable=separable, clamp=True)
        assert clamped.abs().max() <= 1
        covered = (inv.abs() <= 1).all(-1)
        assert torch.equal(clamped[covered], inv[covered])


def test_gradcheck_through_generation_and_inversion():
    for separable in (True, False):
        sal = peaked_saliency(1, 4, 5, seed=4, dtype=torch.float64).requires_grad_()

        def fn(s):
            grid = saliency_to_grid(s, separable=separable, attraction_fwhm=3.)
            return invert_grid(grid, (7, 9), separable=separable)

        assert torch.autograd.gradcheck(fn, (sal, ), eps=1e-6, atol=1e-5)


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
    inv = invert_grid(grid, (11, 13), separable=separable)
    h, w = grid.shape[1:3]
    covered = (inv.abs() <= 1 + 1e-9).all(-1)
    if anti_crop:
        assert covered.all()
    pos = (inv.reshape(1, -1, 2) + 1) / 2 * torch.tensor([w - 1., h - 1.], dtype=torch.float64)
    fwd = forward_map(grid, pos).view(1, 11, 13, 2)
    if covered.any():  # within 1e-3 px of the 11x13 output
        err_px = (fwd - lattice(11, 13)).abs() * torch.tensor([6., 5.], dtype=torch.float64)
        assert err_px[covered].max() < 1e-3
