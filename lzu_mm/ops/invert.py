"""Inverse of the piecewise-bilinear LZ warp: LZU's unzoom grid (§4.1, eq. 5-7, Figure 5).

Convention (``grid_sample`` with ``align_corners=True``, x before y): the
piecewise-bilinear warp ``T~`` maps warped (zoomed) position ``(index +
fraction)`` along an axis of an ``n``-point grid -- normalised as
``(index + fraction) / (n - 1) * 2 - 1`` -- to the bilinear interpolation of the
grid there, a normalised point of the original image. The inverse holds, for a
normalised point of the original (unwarped) image, the normalised warped
position that ``T~`` maps onto it, so ``grid_sample(warped, inverse,
align_corners=True)`` unzooms.

Points of the original image that no tile covers (possible without anti-crop)
get the extrapolation of the nearest border tile's map, which lies outside
``[-1, 1]``: ``grid_sample``'s zero padding then gives 0 there. ``clamp=True``
clamps them onto the border instead.
"""
from typing import Sequence, Tuple

import torch
from torch import Tensor

from ._validate import check_grid, check_shape_2d

#: Tolerance, in tile fractions, for accepting a point on a tile's edge.
_EDGE_TOL = 1e-5


def _lattice(n: int, like: Tensor) -> Tensor:
    return torch.linspace(-1, 1, n, device=like.device, dtype=like.dtype) if n > 1 else like.new_full((1, ), -1.)


def invert_1d(knots: Tensor, queries: Tensor) -> Tensor:
    """Invert a monotone piecewise-linear 1-D map (one axis of a separable warp).

    Args:
        knots: ``[B, n]`` non-decreasing values in ``[-1, 1]``: the map sends
            position ``k`` (grid index) to ``knots[:, k]``.
        queries: ``[B, M]`` normalised values to invert.

    Returns:
        ``[B, M]`` positions in grid-index units (``0 .. n-1`` where covered;
        linear extrapolation of the end segments outside). Differentiable with
        respect to ``knots`` and ``queries``.
    """
    n = knots.shape[-1]
    idx = torch.searchsorted(knots.detach().contiguous(), queries.detach().contiguous(), right=True) - 1
    idx = idx.clamp(0, n - 2)
    lo = knots.gather(1, idx)
    span = knots.gather(1, idx + 1) - lo
    safe = torch.where(span > 0, span, torch.ones_like(span))
    frac = torch.where(span > 0, (queries - lo) / safe, torch.zeros_like(span))
    return idx.to(knots.dtype) + frac


def _cross(u: Tensor, v: Tensor) -> Tensor:
    return u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]


def _solve_bilinear(q: Tensor, a: Tensor, b: Tensor, c: Tensor, d: Tensor) -> Tuple[Tensor, Tensor]:
    """Local coordinates ``(s, t)`` of points ``q`` in bilinear quads (Appendix A.2; Wolberg 1990).

    The quad maps ``(s, t) -> a + s (b - a) + t (d - a) + s t (a - b + c - d)``
    with corners ``a = (0, 0)``, ``b = (1, 0)``, ``c = (1, 1)``, ``d = (0, 1)``.
    Solves the quadratic in ``t`` with the cancellation-free root formula, so
    near-rectangular tiles (quadratic term ~0) stay exact, and picks the root in
    ``[0, 1]`` when there is one. All inputs ``[M, 2]``; returns two ``[M]``
    tensors, NaN where the point has no real preimage in the quad's plane.
    """
    e, f, g, h = b - a, d - a, a - b + c - d, q - a
    k2 = _cross(g, f)
    k1 = _cross(e, f) + _cross(h, g)
    k0 = _cross(h, e)
    disc = k1 * k1 - 4 * k0 * k2
    real = disc >= 0
    root = torch.sqrt(torch.where(real, disc, torch.ones_like(disc)))
    sign = torch.where(k1 >= 0, torch.ones_like(k1), -torch.ones_like(k1))
    qq = -0.5 * (k1 + sign * root)
    ok_q = qq != 0
    t1 = k0 / torch.where(ok_q, qq, torch.ones_like(qq))  # root that stays finite as k2 -> 0
    ok_k2 = k2 != 0
    t2 = qq / torch.where(ok_k2, k2, torch.ones_like(k2))
    in1 = ok_q & (t1 >= -_EDGE_TOL) & (t1 <= 1 + _EDGE_TOL)
    in2 = ok_k2 & (t2 >= -_EDGE_TOL) & (t2 <= 1 + _EDGE_TOL)
    t = torch.where(in1 | ~in2, t1, t2)
    t = torch.where(real & (ok_q | ok_k2), t, torch.full_like(t, float('nan')))
    # s from whichever coordinate is better conditioned.
    den = e + t[:, None] * g
    use_x = den[:, 0].abs() >= den[:, 1].abs()
    num = h - t[:, None] * f
    den_sel = torch.where(use_x, den[:, 0], den[:, 1])
    num_sel = torch.where(use_x, num[:, 0], num[:, 1])
    s = num_sel / torch.where(den_sel != 0, den_sel, torch.ones_like(den_sel))
    s = torch.where(den_sel != 0, s, torch.full_like(s, float('nan')))
    return s, t


def _affine_step(q: Tensor, a: Tensor, b: Tensor, c: Tensor, d: Tensor) -> Tuple[Tensor, Tensor]:
    """``(s, t)`` of ``q`` under the quad's linearisation at its centre (used only to walk)."""
    e, f, g = b - a, d - a, a - b + c - d
    js, jt = e + 0.5 * g, f + 0.5 * g
    r = q - (a + 0.5 * e + 0.5 * f + 0.25 * g)
    det = _cross(js, jt)
    det = torch.where(det != 0, det, torch.full_like(det, 1e-12))
    return 0.5 + _cross(r, jt) / det, 0.5 + _cross(js, r) / det


def _corners(flat_grid: Tensor, base: Tensor, w: int):
    return flat_grid[base], flat_grid[base + 1], flat_grid[base + w + 1], flat_grid[base + w]


def _search_all_tiles(flat_grid, flat_q, idx, batch_base, h, w, tx, ty, s_all, t_all, covered, chunk=1 << 22):
    """Fallback point location for points the walk did not place: test them against every tile.

    Updates ``tx, ty, s_all, t_all, covered`` in place at ``idx`` (1-D point indices).
    Vectorised over (point, tile) pairs in chunks of at most ``chunk`` pairs.
    """
    tiles = torch.arange((h - 1) * (w - 1), device=flat_grid.device)
    tile_y, tile_x = tiles // (w - 1), tiles % (w - 1)
    per_chunk = max(1, chunk // tiles.numel())
    for part in idx.split(per_chunk):
        m, n_t = part.numel(), tiles.numel()
        base = (batch_base[part][:, None] + tile_y[None] * w + tile_x[None]).reshape(-1)
        q = flat_q[part][:, None].expand(m, n_t, 2).reshape(-1, 2)
        s, t = _solve_bilinear(q, *_corners(flat_grid, base, w))
        inside = ((s >= -_EDGE_TOL) & (s <= 1 + _EDGE_TOL) & (t >= -_EDGE_TOL) & (t <= 1 + _EDGE_TOL)).view(m, n_t)
        found = inside.any(1)
        first = inside.float().argmax(1)
        pick = torch.arange(m, device=part.device) * n_t + first
        sel = part[found]
        tx[sel], ty[sel] = tile_x[first[found]], tile_y[first[found]]
        s_all[sel], t_all[sel] = s[pick[found]], t[pick[found]]
        covered[sel] = True


def _invert_bilinear(grid: Tensor, points: Tensor) -> Tuple[Tensor, Tensor]:
    """Exact inverse of the piecewise-bilinear warp at arbitrary points.

    Point location walks over tiles: start from the tile that the separable
    (axis-marginal) inverse predicts, solve the tile's quadratic, and step by
    ``floor(s), floor(t)`` until the solution lies in the tile. All points move
    together (vectorised); each step only touches the points still walking.
    Points the walk cannot place (strongly distorted tiles) are tested against
    every tile, so every covered point is found.

    Args:
        grid: ``[B, h, w, 2]`` normalised grid.
        points: ``[B, N, 2]`` normalised ``(x, y)`` points of the original image.

    Returns:
        ``([B, N, 2]`` warped positions in grid-index units ``(x, y)``,
        ``[B, N]`` bool, True where a tile covers the point).
    """
    bsz, h, w, _ = grid.shape
    n = points.shape[1]
    with torch.no_grad():
        gx = invert_1d(grid[..., 0].mean(1), points[..., 0])
        gy = invert_1d(grid[..., 1].mean(2), points[..., 1])
        tx = gx.floor().clamp(0, w - 2).long().reshape(-1)
        ty = gy.floor().clamp(0, h - 2).long().reshape(-1)
        flat_grid = grid.detach().reshape(-1, 2)
        flat_q = points.detach().reshape(-1, 2)
        batch_base = (torch.arange(bsz, device=grid.device) * (h * w)).repeat_interleave(n)
        covered = torch.zeros(bsz * n, dtype=torch.bool, device=grid.device)
        s_all = torch.empty(bsz * n, dtype=grid.dtype, device=grid.device)
        t_all = torch.empty_like(s_all)
        active = torch.arange(bsz * n, device=grid.device)
        for _ in range(h + w):  # a walk never needs more steps than tiles along a path
            cx, cy = tx[active], ty[active]
            corners = _corners(flat_grid, batch_base[active] + cy * w + cx, w)
            s, t = _solve_bilinear(flat_q[active], *corners)
            inside = (s >= -_EDGE_TOL) & (s <= 1 + _EDGE_TOL) & (t >= -_EDGE_TOL) & (t <= 1 + _EDGE_TOL)
            lost = torch.isnan(s) | torch.isnan(t)
            if bool(lost.any()):
                s_aff, t_aff = _affine_step(flat_q[active], *corners)
                s, t = torch.where(lost, s_aff, s), torch.where(lost, t_aff, t)
            s_all[active], t_all[active] = s, t
            covered[active] = inside
            step_x = s.floor().clamp(-(w - 2), w - 2).long()
            step_y = t.floor().clamp(-(h - 2), h - 2).long()
            nx = torch.where(inside, cx, (cx + step_x).clamp(0, w - 2))
            ny = torch.where(inside, cy, (cy + step_y).clamp(0, h - 2))
            moved = ~inside & ((nx != cx) | (ny != cy))
            tx[active], ty[active] = nx, ny
            active = active[moved]
            if active.numel() == 0:
                break
        lost = (~covered).nonzero()[:, 0]
        if lost.numel():
            _search_all_tiles(flat_grid, flat_q, lost, batch_base, h, w, tx, ty, s_all, t_all, covered)
    pos = torch.stack([tx.to(grid.dtype), ty.to(grid.dtype)], -1) + torch.stack([s_all, t_all], -1)
    if grid.requires_grad or points.requires_grad:
        corners = _corners(grid.reshape(-1, 2), batch_base + ty * w + tx, w)
        s_d, t_d = _solve_bilinear(points.reshape(-1, 2), *corners)
        pos = torch.stack([tx.to(grid.dtype) + s_d, ty.to(grid.dtype) + t_d], dim=-1)
    lost = ~covered
    if bool(lost.any()):
        # Points no tile covers: the axis-marginal estimate, moved just outside the grid when it
        # falls inside, so that they read zeros (or the nearest border with clamping).
        with torch.no_grad():
            est = torch.stack([gx.reshape(-1), gy.reshape(-1)], -1)
            hi = est.new_tensor([w - 1., h - 1.])
            dist = torch.cat([est, hi - est], -1)  # distances to the 4 borders, index units
            inside = (dist > -1e-3).all(-1, keepdim=True)  # inside, or too close to tell apart
            edge = dist.argmin(-1, keepdim=True)
            onehot = torch.zeros_like(dist).scatter_(-1, edge, 1.)
            pushed = torch.where(onehot[:, :2] > 0, est.new_tensor(-1e-3).expand_as(est), est)
            pushed = torch.where(onehot[:, 2:] > 0, hi + 1e-3, pushed)
            est = torch.where(inside, pushed, est)
        pos = torch.where(lost[:, None], est.to(pos.dtype), pos)
    return pos.view(bsz, n, 2), covered.view(bsz, n)


def _to_normalised(pos: Tensor, h: int, w: int, clamp: bool) -> Tensor:
    scale = pos.new_tensor([2.0 / (w - 1), 2.0 / (h - 1)])
    out = pos * scale - 1
    return out.clamp(-1, 1) if clamp else out


def invert_lattice(grid: Tensor, qx: Tensor, qy: Tensor, separable: bool = True, clamp: bool = False) -> Tensor:
    """Inverse of the warp evaluated on a product lattice of query coordinates.

    Args:
        grid: ``[B, h, w, 2]`` normalised LZ grid (validated by the caller).
        qx: ``[B, W]`` normalised x of the output columns.
        qy: ``[B, H]`` normalised y of the output rows.
        separable: invert the axis marginals (exact for separable grids) or the
            full piecewise-bilinear map.
        clamp: clamp uncovered points to the border instead of leaving them
            outside ``[-1, 1]``.

    Returns:
        ``[B, H, W, 2]`` normalised warped ``(x, y)`` positions.
    """
    bsz, h, w, _ = grid.shape
    big_h, big_w = qy.shape[1], qx.shape[1]
    if separable:
        px = invert_1d(grid[..., 0].mean(1), qx)  # [B, W]
        py = invert_1d(grid[..., 1].mean(2), qy)  # [B, H]
        pos = torch.stack([px[:, None, :].expand(bsz, big_h, big_w), py[:, :, None].expand(bsz, big_h, big_w)], -1)
        return _to_normalised(pos, h, w, clamp)
    points = torch.stack([qx[:, None, :].expand(bsz, big_h, big_w), qy[:, :, None].expand(bsz, big_h, big_w)], -1)
    pos, _ = _invert_bilinear(grid, points.reshape(bsz, -1, 2))
    return _to_normalised(pos.view(bsz, big_h, big_w, 2), h, w, clamp)


def _check_monotone(grid: Tensor, separable: bool) -> None:
    if separable:
        bad = bool((grid[..., 0].mean(1).diff(dim=-1) < 0).any()) or bool((grid[..., 1].mean(2).diff(dim=-1) < 0).any())
        if bad:
            raise ValueError('grid must be monotone along each axis (x non-decreasing along columns, '
                             'y along rows) to be inverted separably, got a folded grid')


def invert_grid(grid: Tensor, out_shape: Sequence[int], separable: bool = True, clamp: bool = False) -> Tensor:
    """Inverse of the piecewise-bilinear approximation of the LZ warp (unzoom grid).

    LZU §4.1 (eq. 5-7, Figure 5): ``T~`` is the bilinear interpolation of the
    low-resolution ``grid``; its inverse is computed exactly, per output pixel,
    either separably -- two 1-D piecewise-linear inversions combined by a
    Cartesian product -- or for a general grid by solving, in the tile that
    contains the point, the quadratic of the bilinear map (Appendix A.2,
    after Wolberg). Vectorised: no Python loops over batch, tiles or pixels
    (the non-separable point location takes a few vectorised walking steps).

    Args:
        grid: ``[B, h, w, 2]`` normalised ``(x, y)`` grid from
            :func:`saliency_to_grid` (``h, w >= 2``).
        out_shape: ``(H, W)`` size of the unwarped map. Its pixel ``(i, j)`` is
            the normalised point ``(2j/(W-1) - 1, 2i/(H-1) - 1)``.
        separable: True inverts the axis marginals of ``grid`` (its mean x per
            column and mean y per row; exact for separable grids); False
            inverts the full piecewise-bilinear map.
        clamp: False (default) leaves points no tile covers outside
            ``[-1, 1]`` (zero padding in ``grid_sample``); True clamps them
            onto the border (border padding).

    Returns:
        ``[B, H, W, 2]`` normalised ``(x, y)`` positions in the warped map:
        warped position ``index + fraction`` along an axis of ``n`` grid points
        is ``(index + fraction) / (n - 1) * 2 - 1``.
        ``grid_sample(warped, inverse, align_corners=True)`` unzooms.

    Raises:
        ValueError: ``grid`` not ``[B, h, w, 2]`` with ``h, w >= 2``, not
            finite, or (separable) not monotone; ``out_shape`` not positive.
    """
    check_grid(grid)
    big_h, big_w = check_shape_2d(out_shape, 'out_shape')
    _check_monotone(grid, separable)
    bsz = grid.shape[0]
    qx = _lattice(big_w, grid).expand(bsz, big_w)
    qy = _lattice(big_h, grid).expand(bsz, big_h)
    return invert_lattice(grid, qx, qy, separable=separable, clamp=clamp)


def invert_points(grid: Tensor, points: Tensor, separable: bool = True, clamp: bool = False) -> Tensor:
    """Inverse of the piecewise-bilinear LZ warp at arbitrary points.

    Same maths and conventions as :func:`invert_grid`, for scattered points.

    Args:
        grid: ``[B, h, w, 2]`` normalised grid.
        points: ``[B, N, 2]`` normalised ``(x, y)`` points of the original image.
        separable: see :func:`invert_grid`.
        clamp: see :func:`invert_grid`.

    Returns:
        ``[B, N, 2]`` normalised warped ``(x, y)`` positions.

    Raises:
        ValueError: malformed ``grid`` or ``points``, or mismatched batch sizes.
    """
    check_grid(grid)
    if not isinstance(points, Tensor) or points.dim() != 3 or points.shape[-1] != 2:
        shape = tuple(points.shape) if isinstance(points, Tensor) else type(points).__name__
        raise ValueError(f'points must have shape [B, N, 2], got {shape}')
    if points.shape[0] != grid.shape[0]:
        raise ValueError(f'points has batch size {points.shape[0]} but grid has {grid.shape[0]}; expected equal')
    _check_monotone(grid, separable)
    _, h, w, _ = grid.shape
    if separable:
        px = invert_1d(grid[..., 0].mean(1), points[..., 0])
        py = invert_1d(grid[..., 1].mean(2), points[..., 1])
        return _to_normalised(torch.stack([px, py], -1), h, w, clamp)
    pos, _ = _invert_bilinear(grid, points)
    return _to_normalised(pos, h, w, clamp)
