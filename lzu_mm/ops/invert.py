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
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
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


def _tile_table(grid: Tensor) -> Tensor:
    """Per-tile coefficients of the bilinear maps, ``[B * (h-1) * (w-1), 10]``.

    Tile ``(i, j)`` maps ``(s, t) -> a + s e + t f + s t g`` with corners
    ``a = grid[i, j]``, ``b = grid[i, j+1]``, ``d = grid[i+1, j]``,
    ``c = grid[i+1, j+1]``, ``e = b - a``, ``f = d - a``, ``g = a - b + c - d``.
    Columns: ``ax, ay, ex, ey, fx, fy, gx, gy, cross(g, f), cross(e, f)``; tiles
    row-major. Gathering whole rows (``index_select(0, ...)``) is the cheapest
    per-point lookup.
    """
    a = grid[:, :-1, :-1]
    b = grid[:, :-1, 1:]
    d = grid[:, 1:, :-1]
    c = grid[:, 1:, 1:]
    e, f, g = b - a, d - a, a - b + c - d
    k2 = g[..., 0] * f[..., 1] - g[..., 1] * f[..., 0]
    kef = e[..., 0] * f[..., 1] - e[..., 1] * f[..., 0]
    cols = [a[..., 0], a[..., 1], e[..., 0], e[..., 1], f[..., 0], f[..., 1], g[..., 0], g[..., 1], k2, kef]
    return torch.stack([c.reshape(-1) for c in cols], -1)


def _solve_bilinear(qx: Tensor, qy: Tensor, coef: Tensor, safe: bool = False) -> Tuple[Tensor, Tensor]:
    """Local coordinates ``(s, t)`` of points in bilinear tiles (Appendix A.2; Wolberg 1990).

    Solves ``k2 t^2 + k1 t + k0 = 0`` (from ``cross(q - a - t f, e + t g) = 0``)
    with the cancellation-free root formula, so near-rectangular tiles (``k2``
    ~ 0) stay exact, picks the root in ``[0, 1]`` when there is one, and gets
    ``s`` from the better-conditioned coordinate.

    Args:
        qx, qy: ``[M]`` normalised point coordinates.
        coef: ``[M, 10]`` rows of :func:`_tile_table` for each point's tile.
        safe: guard every division so that gradients stay finite (for the
            differentiable pass); the fast pass lets inf / NaN through to the
            range test, which rejects them.

    Returns:
        ``(s, t)``, two ``[M]`` tensors; NaN where the point has no real
        preimage under the tile's map.
    """
    ax, ay, ex, ey, fx, fy, gx, gy, k2, kef = coef.unbind(1)
    if safe:
        return _solve_bilinear_safe(qx - ax, qy - ay, ex, ey, fx, fy, gx, gy, k2, kef)
    # the fast pass: fused multiply-adds and in-place updates (fewer large temporaries)
    hx, hy = qx - ax, qy - ay
    k1 = torch.addcmul(kef, hx, gy).addcmul_(hy, gx, value=-1)
    k0 = torch.mul(hx, ey).addcmul_(hy, ex, value=-1)
    disc = torch.mul(k1, k1).addcmul_(k0, k2, value=-4)
    real = disc >= 0
    qq = disc.clamp_min_(0).sqrt_().copysign_(k1).add_(k1).mul_(-0.5)  # |qq| >= |k1|: no cancellation
    t1 = k0.div_(qq)  # the root that stays finite as k2 -> 0 (k0 is not needed any more)
    t2 = qq.div_(k2)
    # the root nearer to [0, 1]: inside the tile, or the right direction to walk from it
    t = torch.where((t2 - t2.clamp(0, 1)).abs_() < (t1 - t1.clamp(0, 1)).abs_(), t2, t1)
    t.masked_fill_(~real, float('nan'))
    den_x, den_y = torch.addcmul(ex, t, gx), torch.addcmul(ey, t, gy)
    use_x = den_x.abs() >= den_y.abs()
    num = torch.where(use_x, torch.addcmul(hx, t, fx, value=-1), torch.addcmul(hy, t, fy, value=-1))
    return num.div_(torch.where(use_x, den_x, den_y)), t


def _solve_bilinear_safe(hx, hy, ex, ey, fx, fy, gx, gy, k2, kef) -> Tuple[Tensor, Tensor]:
    """:func:`_solve_bilinear` with every division and root guarded, so that gradients stay finite."""
    k1 = kef + hx * gy - hy * gx
    k0 = hx * ey - hy * ex
    disc = k1 * k1 - 4 * k0 * k2
    real = disc >= 0
    root = torch.where(real, disc, 1.0).sqrt()
    qq = -0.5 * (k1 + root.copysign(k1))
    t1 = k0 / torch.where(qq != 0, qq, 1.0)
    t2 = qq / torch.where(k2 != 0, k2, 1.0)
    t = torch.where((t2 - t2.clamp(0, 1)).abs() < (t1 - t1.clamp(0, 1)).abs(), t2, t1)
    t = torch.where(real, t, float('nan'))
    den_x, den_y = ex + t * gx, ey + t * gy
    use_x = den_x.abs() >= den_y.abs()
    den = torch.where(use_x, den_x, den_y)
    num = torch.where(use_x, hx - t * fx, hy - t * fy)
    return num / torch.where(den != 0, den, 1.0), t


def _affine_step(qx: Tensor, qy: Tensor, coef: Tensor) -> Tuple[Tensor, Tensor]:
    """``(s, t)`` of points under the tile map's linearisation at the tile centre (used only to walk)."""
    ax, ay, ex, ey, fx, fy, gx, gy = coef[:, :8].unbind(1)
    jsx, jsy, jtx, jty = ex + 0.5 * gx, ey + 0.5 * gy, fx + 0.5 * gx, fy + 0.5 * gy
    rx = qx - (ax + 0.5 * ex + 0.5 * fx + 0.25 * gx)
    ry = qy - (ay + 0.5 * ey + 0.5 * fy + 0.25 * gy)
    det = jsx * jty - jsy * jtx
    det = torch.where(det != 0, det, torch.full_like(det, 1e-12))
    return 0.5 + (rx * jty - ry * jtx) / det, 0.5 + (jsx * ry - jsy * rx) / det


def _inside(s: Tensor, t: Tensor) -> Tensor:
    """True where ``(s, t)`` lies in the unit square (within the edge tolerance); False for NaN."""
    return ((s - 0.5).abs_() <= 0.5 + _EDGE_TOL) & ((t - 0.5).abs_() <= 0.5 + _EDGE_TOL)


def _search_all_tiles(table, qx, qy, idx, base, h, w, tx, ty, s_all, t_all, covered, chunk=1 << 22):
    """Fallback point location for points the walk did not place: test them against every tile.

    ``idx``: 1-D point indices; ``base``: their batch element's first tile
    (``[len(idx)]`` or 0). Updates ``tx, ty, s_all, t_all, covered`` in place at
    ``idx``. Vectorised over (point, tile) pairs in chunks of at most ``chunk`` pairs.
    """
    n_t = (h - 1) * (w - 1)
    tiles = torch.arange(n_t, device=table.device)
    base = torch.as_tensor(base, device=table.device).expand(idx.shape)
    per_chunk = max(1, chunk // n_t)
    for part, part_base in zip(idx.split(per_chunk), base.split(per_chunk)):
        m = part.numel()
        cols = (part_base[:, None] + tiles[None]).reshape(-1)
        s, t = _solve_bilinear(qx[part].repeat_interleave(n_t), qy[part].repeat_interleave(n_t), table.index_select(0, cols))
        inside = _inside(s, t).view(m, n_t)
        found = inside.any(1)
        first = inside.float().argmax(1)
        pick = (torch.arange(m, device=part.device) * n_t + first)[found]
        sel = part[found]
        tx[sel], ty[sel] = first[found] % (w - 1), first[found] // (w - 1)
        s_all[sel], t_all[sel] = s[pick], t[pick]
        covered[sel] = True


def _invert_bilinear(grid: Tensor, qx: Tensor, qy: Tensor,
                     init: Optional[Tuple[Tensor, Tensor]] = None) -> Tuple[Tensor, Tensor]:
    """Exact inverse of the piecewise-bilinear warp at arbitrary points.

    Point location walks over tiles: start from the tile of ``init`` (default:
    the separable, axis-marginal inverse), solve the tile's quadratic, and
    step by ``floor(s), floor(t)`` until the solution lies in the tile. All
    points move together (vectorised); each step only touches the points still
    walking. Points the walk cannot place (strongly distorted tiles) are
    tested against every tile, so every covered point is found.

    Args:
        grid: ``[B, h, w, 2]`` normalised grid.
        qx, qy: ``[B, N]`` normalised x and y of the points of the original image.
        init: optional ``([B, N], [B, N])`` guess of the warped x and y positions
            (grid-index units).

    Returns:
        ``([B, N, 2]`` warped positions in grid-index units ``(x, y)``,
        ``[B, N]`` bool, True where a tile covers the point).
    """
    bsz, h, w, _ = grid.shape
    n = qx.shape[1]
    n_tiles = (h - 1) * (w - 1)

    def marginal_estimate():  # separable (axis-marginal) inverse, grid-index units
        return (invert_1d(grid[..., 0].mean(1).detach(), qx.detach()),
                invert_1d(grid[..., 1].mean(2).detach(), qy.detach()))

    def tile_base(idx):  # first tile of each point's batch element
        return (idx // n) * n_tiles if bsz > 1 else 0

    with torch.no_grad():
        init_x, init_y = marginal_estimate() if init is None else init
        tx = init_x.reshape(-1).floor().clamp_(0, w - 2).long()
        ty = init_y.reshape(-1).floor().clamp_(0, h - 2).long()
        table = _tile_table(grid.detach())
        px_all = qx.detach().reshape(-1).contiguous()
        py_all = qy.detach().reshape(-1).contiguous()
        tile = ty * (w - 1) + tx
        if bsz > 1:
            tile += tile_base(torch.arange(bsz * n, device=grid.device))
        # first step on every point, without index overhead; then only the points still walking
        s_all, t_all = _solve_bilinear(px_all, py_all, table.index_select(0, tile))
        covered = _inside(s_all, t_all)  # False where NaN (no real preimage in this tile's plane)
        active = (~covered).nonzero()[:, 0]
        for _ in range(h + w):  # a walk never needs more steps than tiles along a path
            if active.numel() == 0:
                break
            cx, cy, px, py = tx[active], ty[active], px_all[active], py_all[active]
            s, t = s_all[active], t_all[active]
            lost = torch.isnan(s) | torch.isnan(t)
            if bool(lost.any()):  # walk on with the tile's linearisation
                s_aff, t_aff = _affine_step(px, py, table.index_select(0, tile[active]))
                s, t = torch.where(lost, s_aff, s), torch.where(lost, t_aff, t)
            # far from its tile the extended bilinear map is a poor guide: walk at most 2 tiles a step
            nx = (cx + s.floor().clamp(-2, 2).long()).clamp(0, w - 2)
            ny = (cy + t.floor().clamp(-2, 2).long()).clamp(0, h - 2)
            moved = (nx != cx) | (ny != cy)
            active, nx, ny, px, py = active[moved], nx[moved], ny[moved], px[moved], py[moved]
            tx[active], ty[active] = nx, ny
            tile[active] = tile_base(active) + ny * (w - 1) + nx
            s, t = _solve_bilinear(px, py, table.index_select(0, tile[active]))
            inside = _inside(s, t)
            s_all[active], t_all[active], covered[active] = s, t, inside
            active = active[~inside]
        lost = (~covered).nonzero()[:, 0]
        if lost.numel():
            _search_all_tiles(table, px_all, py_all, lost, tile_base(lost), h, w, tx, ty, s_all, t_all, covered)
    if grid.requires_grad or qx.requires_grad or qy.requires_grad:
        tile = ty * (w - 1) + tx + tile_base(torch.arange(bsz * n, device=grid.device))  # incl. searched points
        coef = _tile_table(grid).index_select(0, tile)
        s_all, t_all = _solve_bilinear(qx.reshape(-1), qy.reshape(-1), coef, safe=True)
    pos = torch.stack([s_all + tx, t_all + ty], -1)  # tile index + fraction
    lost = ~covered
    if bool(lost.any()):
        # Points no tile covers: the axis-marginal estimate, moved just outside the grid when it
        # falls inside, so that they read zeros (or the nearest border with clamping).
        with torch.no_grad():
            est = torch.stack([e.reshape(-1) for e in marginal_estimate()], -1)
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
    init = None
    coarse_h, coarse_w = min(big_h, 4 * h), min(big_w, 4 * w)
    if coarse_h * coarse_w * 4 <= big_h * big_w and coarse_h > 1 and coarse_w > 1:
        # coarse-to-fine: invert a coarse lattice spanning the same queries (affine in the index),
        # and start each point's walk from the upsampled coarse solution
        with torch.no_grad():
            cx = _affine_resample(qx, coarse_w)[:, None, :].expand(bsz, coarse_h, coarse_w).reshape(bsz, -1)
            cy = _affine_resample(qy, coarse_h)[:, :, None].expand(bsz, coarse_h, coarse_w).reshape(bsz, -1)
            pos_c, _ = _invert_bilinear(grid.detach(), cx, cy)
            coarse_pos = pos_c.view(bsz, coarse_h, coarse_w, 2).permute(0, 3, 1, 2).contiguous()  # NCHW: fast path
            up = F.interpolate(coarse_pos, (big_h, big_w), mode='bilinear', align_corners=True)
            init = (up[:, 0].reshape(bsz, -1), up[:, 1].reshape(bsz, -1))
    lattice_x = qx[:, None, :].expand(bsz, big_h, big_w).reshape(bsz, -1)
    lattice_y = qy[:, :, None].expand(bsz, big_h, big_w).reshape(bsz, -1)
    pos, _ = _invert_bilinear(grid, lattice_x, lattice_y, init)
    return _to_normalised(pos.view(bsz, big_h, big_w, 2), h, w, clamp)


def _affine_resample(q: Tensor, n: int) -> Tensor:
    """``n`` evenly spaced values from ``q[:, 0]`` to ``q[:, -1]`` (``q`` is affine in its index)."""
    steps = torch.linspace(0, 1, n, device=q.device, dtype=q.dtype)
    return q[:, :1] + (q[:, -1:] - q[:, :1]) * steps


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
    pos, _ = _invert_bilinear(grid, points[..., 0], points[..., 1])
    return _to_normalised(pos, h, w, clamp)
