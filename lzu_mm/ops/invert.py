"""Inverse of the piecewise-bilinear LZ warp: LZU's unzoom grid (§4.1, eq. 5-7, Figure 5).

Convention (``grid_sample`` with ``align_corners=True``, x before y): the
piecewise-bilinear warp ``T~`` maps warped (zoomed) position ``(index +
fraction)`` along an axis of an ``n``-point grid -- normalised as
``(index + fraction) / (n - 1) * 2 - 1`` -- to the bilinear interpolation of the
grid there, a normalised point of the original image. The inverse holds, for a
normalised point of the original (unwarped) image, the normalised warped
position that ``T~`` maps onto it, so ``grid_sample(warped, inverse,
align_corners=True)`` unzooms.

Points of the original image that no tile covers (without anti-crop, or on
the border within float error) get the separable estimate, moved just outside
``[-1, 1]`` when it falls inside: ``grid_sample``'s zero padding then gives 0
there. ``clamp=True`` clamps them onto the border instead. Covered points
always lie in ``[-1, 1]``.

Non-separable point location (which tile holds each point) costs the same
whatever the grid's size or float noise and however many points lie outside
every tile: on a lattice of points the tile is read off two strip maps
(scatter + cumsum over the grid's rows and columns), elsewhere a walk over
tiles finds it; points outside the warped image's border are recognised by an
even-odd test against that border, and only the (rare) points inside it that
neither finds are tested against every tile.
"""
from typing import Callable, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ._validate import check_grid, check_separable, check_shape_2d

#: Tolerance, in tile fractions, for accepting a point on a tile's edge.
_EDGE_TOL = 1e-5
#: Points per chunk of the lattice's verification pass (temporaries that stay in cache).
_CHUNK = 1 << 16


def _lattice(n: int, like: Tensor, align_corners: bool = True) -> Tensor:
    """Normalised coordinates ``[n]`` of the pixel centres of an ``n``-pixel axis (``align_corners`` convention)."""
    if not align_corners:
        return (2 * torch.arange(n, device=like.device, dtype=like.dtype) + 1) / n - 1
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


def _coefficients(ax, ay, bx, by, cx, cy, dx, dy) -> Tuple[Tensor, ...]:
    """Coefficients of bilinear tiles from their corners (any broadcastable shapes).

    Tile ``(i, j)`` maps ``(s, t) -> a + s e + t f + s t g`` with corners
    ``a = grid[i, j]``, ``b = grid[i, j+1]``, ``d = grid[i+1, j]``,
    ``c = grid[i+1, j+1]``, ``e = b - a``, ``f = d - a``, ``g = a - b + c - d``.
    Returns ``ax, ay, ex, ey, fx, fy, gx, gy, cross(g, f), cross(e, f)``.
    """
    ex, ey, fx, fy = bx - ax, by - ay, dx - ax, dy - ay
    gx, gy = cx - dx - ex, cy - dy - ey
    return ax, ay, ex, ey, fx, fy, gx, gy, gx * fy - gy * fx, ex * fy - ey * fx


def _tile_table(grid: Tensor) -> Tensor:
    """:func:`_coefficients` of every tile, ``[10, B * (h-1) * (w-1)]`` (tiles row-major, batch-major).

    Coefficient-major, so that gathering rows makes contiguous per-point
    tensors (arithmetic on the strided columns of a ``[M, 10]`` table is
    several times slower).
    """
    x, y = grid[..., 0], grid[..., 1]
    corners = [v[:, i:v.shape[1] - 1 + i, j:v.shape[2] - 1 + j] for i, j in ((0, 0), (0, 1), (1, 1), (1, 0))
               for v in (x, y)]
    return torch.stack([c.reshape(-1) for c in _coefficients(*corners)])


def _solve_bilinear(qx: Tensor,
                    qy: Tensor,
                    coef: Sequence[Tensor],
                    safe: bool = False,
                    out: Optional[Tuple[Tensor, Tensor]] = None,
                    small_root: bool = False) -> Tuple[Tensor, Tensor]:
    """Local coordinates ``(s, t)`` of points in bilinear tiles (Appendix A.2; Wolberg 1990).

    Solves ``k2 t^2 + k1 t + k0 = 0`` (from ``cross(q - a - t f, e + t g) = 0``)
    with the cancellation-free root formula, so near-rectangular tiles (``k2``
    ~ 0) stay exact, and picks the root nearer the tile's centre (the one in
    ``[0, 1]`` when there is one, else the direction to walk). ``s`` is the
    projection of ``q - a - t f`` onto ``e + t g`` (the two are parallel at the
    root), which needs no choice of coordinate.

    Args:
        qx, qy: ``[M]`` normalised point coordinates (or any shapes that
            broadcast with ``coef``).
        coef: the 10 ``[M]`` coefficients of each point's tile (:func:`_coefficients`).
        safe: guard every division and root so that values and gradients stay
            finite (the differentiable pass, on tiles already found); the fast
            pass gives NaN where the point has no real preimage under the
            tile's map, which the range test rejects.
        out: optional ``(s, t)`` tensors to write the fast pass into.
        small_root: fast pass with the root of smaller magnitude only: the one
            in ``[0, 1]`` on the right tile but for strongly curved tiles (where
            both roots are within one tile of it); cheaper, for a first pass
            whose misses are solved again.

    Returns:
        ``(s, t)``, two ``[M]`` tensors.
    """
    ax, ay, ex, ey, fx, fy, gx, gy, k2, kef = coef
    if safe:
        return _solve_bilinear_safe(qx - ax, qy - ay, ex, ey, fx, fy, gx, gy, k2, kef)
    # the fast pass: fused multiply-adds and in-place updates (fewer large temporaries)
    hx, hy = qx - ax, qy - ay
    k1 = torch.addcmul(kef, hx, gy).addcmul_(hy, gx, value=-1)
    k0 = torch.mul(hx, ey).addcmul_(hy, ex, value=-1)
    # NaN without a real root; + 1e-30 keeps qq != 0, so that a degenerate tile (k2 = k1 = k0 = 0:
    # every t solves) gives t = 0 and s by projection instead of 0 / 0
    qq = torch.mul(k1, k1).addcmul_(k0, k2, value=-4).sqrt_().add_(1e-30)
    qq.copysign_(k1).add_(k1).mul_(-0.5)  # |qq| >= |k1|: no cancellation
    s_out, t_out = (None, None) if out is None else out
    # the root that stays finite as k2 -> 0, of the smaller magnitude (k0 is not needed any more)
    t1 = torch.div(k0, qq, out=t_out) if small_root else k0.div_(qq)
    t = t1 if small_root else torch.where((qq.div_(k2) - 0.5).abs_() < (t1 - 0.5).abs_(), qq, t1, out=t_out)
    dx, dy = torch.addcmul(ex, t, gx), torch.addcmul(ey, t, gy)
    num = hx.addcmul_(t, fx, value=-1).mul_(dx).addcmul_(hy.addcmul_(t, fy, value=-1), dy)
    return torch.div(num, dx.mul_(dx).addcmul_(dy, dy), out=s_out), t


def _solve_bilinear_safe(hx, hy, ex, ey, fx, fy, gx, gy, k2, kef) -> Tuple[Tensor, Tensor]:
    """:func:`_solve_bilinear` with every division and root guarded, so that gradients stay finite."""
    k1 = kef + hx * gy - hy * gx
    k0 = hx * ey - hy * ex
    disc = k1 * k1 - 4 * k0 * k2
    root = torch.where(disc >= 0, disc, 1.0).sqrt()
    qq = -0.5 * (k1 + root.copysign(k1))
    t1 = k0 / torch.where(qq != 0, qq, 1.0)
    t2 = torch.where(k2 != 0, qq / torch.where(k2 != 0, k2, 1.0), float('inf'))
    t = torch.where((t2 - 0.5).abs() < (t1 - 0.5).abs(), t2, t1)
    dx, dy = ex + t * gx, ey + t * gy
    den = dx * dx + dy * dy
    return ((hx - t * fx) * dx + (hy - t * fy) * dy) / torch.where(den > 0, den, 1.0), t


def _affine_step(qx: Tensor, qy: Tensor, coef: Sequence[Tensor]) -> Tuple[Tensor, Tensor]:
    """``(s, t)`` of points under the tile map's linearisation at the tile centre (used only to walk)."""
    ax, ay, ex, ey, fx, fy, gx, gy = coef[:8]
    jsx, jsy, jtx, jty = ex + 0.5 * gx, ey + 0.5 * gy, fx + 0.5 * gx, fy + 0.5 * gy
    rx = qx - (ax + 0.5 * ex + 0.5 * fx + 0.25 * gx)
    ry = qy - (ay + 0.5 * ey + 0.5 * fy + 0.25 * gy)
    det = jsx * jty - jsy * jtx
    det = torch.where(det != 0, det, torch.full_like(det, 1e-12))
    return 0.5 + (rx * jty - ry * jtx) / det, 0.5 + (jsx * ry - jsy * rx) / det


def _inside(s: Tensor, t: Tensor, out: Optional[Tensor] = None) -> Tensor:
    """True where ``(s, t)`` lies in the unit square (within the edge tolerance); False for NaN."""
    dist = (s - 0.5).abs_()
    return torch.le(torch.maximum(dist, (t - 0.5).abs_(), out=dist), 0.5 + _EDGE_TOL, out=out)


class _Located(NamedTuple):
    """Point location of ``M = B * N`` points (flattened, batch-major, ``N`` per batch element).

    ``tx, ty``: column and row of each point's tile (whole numbers in
    :func:`_count_dtype`); ``s, t``: the
    point's local coordinates there (on a lattice, only where its first pass
    missed: it writes the positions directly); ``covered``: True where that tile covers
    the point (elsewhere no tile does); ``points(idx)``: ``(x, y)`` of the
    points ``idx`` (int64 flat indices).
    """
    tx: Tensor
    ty: Tensor
    s: Tensor
    t: Tensor
    covered: Tensor
    points: Callable[[Tensor], Tuple[Tensor, Tensor]]


class _Tiles:
    """The tiles of a batch of ``[B, h, w, 2]`` grids, to be located by ``N`` points per batch element.

    The tile coefficients come from a table of every tile when it is small
    next to the points (coarse grids), else straight from the tiles' corners
    (dense grids, few points, or differentiably with ``table=False``).
    """

    def __init__(self, grid: Tensor, n_points: int, table: bool = True):
        self.grid = grid
        self.bsz, self.h, self.w = grid.shape[:3]
        self.n_tiles = (self.h - 1) * (self.w - 1)
        self.n_points = n_points
        self.table = _tile_table(grid) if table and 10 * self.n_tiles <= n_points else None
        self.planes = None if self.table is not None else (grid[..., 0].reshape(-1), grid[..., 1].reshape(-1))

    def coef(self, points: Optional[Tensor], tx: Tensor, ty: Tensor) -> Tuple[Tensor, ...]:
        """:func:`_coefficients` of the tiles ``(tx, ty)`` of the points ``points``, contiguous ``[M]`` each.

        ``points``: flat point indices (for their batch element; unused when B = 1).
        """
        batch = points // self.n_points if self.bsz > 1 else None
        if self.table is not None:
            tile = torch.add(tx, ty, alpha=self.w - 1).long()
            tile = tile if batch is None else tile + batch * self.n_tiles
            return tuple(row.index_select(0, tile) for row in self.table)
        a = torch.add(tx, ty, alpha=self.w).long()  # the corner grid[i, j]
        a = a if batch is None else a + batch * (self.h * self.w)
        corners = [a, a + 1, a + (self.w + 1), a + self.w]
        return _coefficients(*(plane.index_select(0, c) for c in corners for plane in self.planes))

    def solve(self, px: Tensor, py: Tensor, points: Tensor, tx: Tensor, ty: Tensor) -> Tuple[Tensor, Tensor]:
        """Fast :func:`_solve_bilinear` of points ``points`` (flat indices) in their tiles ``(tx, ty)``."""
        return _solve_bilinear(px, py, self.coef(points, tx, ty))

    def walk(self, loc: _Located, active: Tensor) -> Tensor:
        """Walk the points ``active`` (flat indices) over tiles from their current tile; updates ``loc``.

        Each step solves the current tile's quadratic and moves by ``floor(s),
        floor(t)``, at most 2 tiles (far from its tile the extended bilinear map
        is a poor guide). A point stops when its tile covers it, or when the
        step would leave the grid. Returns the points that were not placed.
        """
        h, w = self.h, self.w
        px, py = loc.points(active)
        stuck = []
        for _ in range(h + w):  # a walk never needs more steps than tiles along a path
            if active.numel() == 0:
                break
            cx, cy, s, t = loc.tx[active], loc.ty[active], loc.s[active], loc.t[active]
            lost = torch.isnan(s) | torch.isnan(t)
            if bool(lost.any()):  # no real preimage in this tile's plane: walk on with its linearisation
                s_aff, t_aff = _affine_step(px, py, self.coef(active, cx, cy))
                s, t = torch.where(lost, s_aff, s), torch.where(lost, t_aff, t)
            nx = (cx + s.floor().clamp(-2, 2).nan_to_num_(0)).clamp(0, w - 2)
            ny = (cy + t.floor().clamp(-2, 2).nan_to_num_(0)).clamp(0, h - 2)
            moved = (nx != cx) | (ny != cy)
            stuck.append(active[~moved])
            active, nx, ny, px, py = active[moved], nx[moved], ny[moved], px[moved], py[moved]
            loc.tx[active], loc.ty[active] = nx, ny
            s, t = self.solve(px, py, active, nx, ny)
            inside = _inside(s, t)
            loc.s[active], loc.t[active], loc.covered[active] = s, t, inside
            active, px, py = active[~inside], px[~inside], py[~inside]
        return torch.cat(stuck + [active])

    def search(self, loc: _Located, idx: Tensor, chunk: int = 1 << 22) -> None:
        """Place the points ``idx`` by testing them against every tile (the last resort; updates ``loc``).

        Vectorised over (point, tile) pairs in chunks of at most ``chunk`` pairs.
        """
        n_t, w = self.n_tiles, self.w
        tiles = torch.arange(n_t, device=idx.device, dtype=torch.int32)
        for part in idx.split(max(1, chunk // n_t)):
            m = part.numel()
            px, py = loc.points(part)
            tx, ty = (tiles % (w - 1)).repeat(m), (tiles // (w - 1)).repeat(m)
            s, t = _solve_bilinear(px.repeat_interleave(n_t), py.repeat_interleave(n_t),
                                   self.coef(part.repeat_interleave(n_t), tx, ty))
            inside = _inside(s, t).view(m, n_t)
            found = inside.any(1)
            first = inside.float().argmax(1)
            pick = (torch.arange(m, device=part.device) * n_t + first)[found]
            sel, first = part[found], first[found]
            loc.tx[sel], loc.ty[sel] = (first % (w - 1)).to(loc.tx.dtype), (first // (w - 1)).to(loc.ty.dtype)
            loc.s[sel], loc.t[sel] = s[pick], t[pick]
            loc.covered[sel] = True

    def boundary(self) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """Edges ``(x0, y0) -> (x1, y1)`` of the warped image's boundary (the grid's closed border), ``[B, V]`` each."""
        g = self.grid
        ring = torch.cat([g[:, 0, :-1], g[:, :-1, -1], g[:, -1, 1:].flip(1), g[:, 1:, 0].flip(1)], 1)
        nxt = ring.roll(-1, 1)
        return ring[..., 0], ring[..., 1], nxt[..., 0], nxt[..., 1]

    def inside_boundary(self, points: Tensor, px: Tensor, py: Tensor, chunk: int = 1 << 22) -> Tensor:
        """Even-odd test of points against the warped image's boundary (ray to the left, half-open in y).

        The tiles of a grid without fold-overs tile the inside of its border, so
        a point outside it is covered by no tile. ``points``: ``[M]`` flat
        indices (for their batch element); pairwise with the ``V = 2 (h + w -
        2)`` edges, in chunks of at most ``chunk`` pairs.
        """
        edges = self.boundary()
        out = []
        for part, x, y in zip(*(v.split(max(1, chunk // edges[0].shape[1])) for v in (points, px, py))):
            b = part // self.n_points if self.bsz > 1 else torch.zeros_like(part)
            x0, y0, x1, y1 = (e[b] for e in edges)  # [m, V]
            y = y[:, None]
            straddle = (y0 > y) != (y1 > y)
            xc = x0 + (y - y0) * (x1 - x0) / torch.where(straddle, y1 - y0, torch.ones_like(y0))
            out.append(((straddle & (xc < x[:, None])).sum(1) % 2) == 1)
        return torch.cat(out) if out else points.new_zeros(0, dtype=torch.bool)

    def place(self, loc: _Located, failed: Tensor, inside_boundary: Callable[[Tensor], Tensor]) -> None:
        """Place the points ``failed`` (flat indices) that their tile does not cover; updates ``loc``.

        They walk from there (rounding at tile edges, degenerate border tiles);
        those still unplaced are tested against the boundary by
        ``inside_boundary(idx) -> bool``, and those inside it (rare: strongly
        distorted tiles) against every tile. Points outside the boundary stay
        uncovered after a step or two of walk and the even-odd test: no
        exhaustive search for them.
        """
        px, py = loc.points(failed)  # again with both roots (a first pass may take the small root only)
        s, t = self.solve(px, py, failed, loc.tx[failed], loc.ty[failed])
        inside = _inside(s, t)
        loc.s[failed], loc.t[failed], loc.covered[failed] = s, t, inside
        left = self.walk(loc, failed[~inside])
        if left.numel():
            left = left[inside_boundary(left)]
            if left.numel():
                self.search(loc, left)


class _Axis:
    """Increasing, (nearly) affine query coordinates ``q`` ``[B, n]`` of a lattice.

    :meth:`count` counts the queries below values by arithmetic on the affine
    index, optionally corrected to the exact count with two comparisons.
    """

    def __init__(self, q: Tensor):
        self.q = q
        self.bsz, self.n = q.shape
        self.q0 = q[:, :1]
        self.dq = (q[:, -1:] - self.q0) / (self.n - 1) if self.n > 1 else torch.ones_like(self.q0)

    @classmethod
    def of(cls, q: Tensor) -> Optional['_Axis']:
        """The axis of ``q``, or None when ``q`` is not increasing and affine to within a quarter step."""
        axis = cls(q)
        if axis.n > 1:
            ideal = axis.q0 + axis.dq * torch.arange(axis.n, device=q.device, dtype=q.dtype)
            if not bool(((axis.dq > 0) & ((q - ideal).abs() <= 0.25 * axis.dq)).all()):
                return None
        return axis

    def count(self, v: Tensor, b: Optional[Tensor] = None, right: bool = False, exact: bool = False) -> Tensor:
        """``#{k: q[b, k] < v}`` (``<=`` with ``right``): int64 when ``exact``, else whole numbers of ``v``'s dtype.

        Args:
            v: ``[B, m]`` values (``b`` None), or ``[m]`` values of batch elements ``b``.
            exact: correct the affine estimate (off by at most one) with the
                queries themselves; without it, a value within rounding of a
                query may be counted on either side of it.
        """
        q0, dq = (self.q0, self.dq) if b is None else (self.q0[b, 0], self.dq[b, 0])
        r = (v - q0).div_(dq).clamp_(-1, self.n + 1)
        est = (r.floor_().add_(1) if right else r.ceil_()).clamp_(0, self.n)
        if not exact:
            return est
        est = est.long()
        flat = self.q.reshape(-1)
        first = b * self.n if b is not None else torch.arange(self.bsz, device=v.device)[:, None] * self.n
        below = flat[first + (est - 1).clamp(min=0)]
        above = flat[first + est.clamp(max=self.n - 1)]
        too_high, too_low = (below > v, above <= v) if right else (below >= v, above < v)
        return est - ((est > 0) & too_high).long() + ((est < self.n) & too_low).long()


def _count_dtype(like: Tensor) -> torch.dtype:
    """Floating dtype for counts and tile indices (whole numbers, exact to 2**24 in float32).

    torch's floating-point cumsum and arithmetic are several times faster than
    its integer ones, and float tile indices enter the position arithmetic
    without mixed-dtype slow paths.
    """
    return torch.float64 if like.dtype == torch.float64 else torch.float32


def _step_counts(pos: Tensor, n: int, dim: int, out: Tensor) -> Tensor:
    """Counts ``#{i: pos[..., i, ...] <= k}`` along ``dim`` of ``out`` (scatter + cumsum); returns ``out``.

    ``pos`` (whole numbers in ``[0, n]``, floating point: torch's int64
    arithmetic is slow) has the shape of ``out`` but along ``dim``; ``n``
    means never counted. ``out``: zeros, of size ``n`` along ``dim``.
    """
    weight = (pos < n).to(out.dtype)  # n: beyond the last query
    out.scatter_add_(dim, pos.clamp(max=n - 1).long(), weight)
    return out.cumsum_(dim)


def _strip_counts(along: Tensor, across: Tensor, q_along: _Axis, q_across: _Axis, across_first: bool) -> Tensor:
    """How many of ``R`` monotone polylines lie at or before each lattice point (float counts).

    Polyline ``r`` has vertices ``(along[:, r, i], across[:, r, i])``, ``along``
    non-decreasing in ``i`` (the grid's interior rows: along = x, across = y;
    or its interior columns, roles swapped). The lattice line ``along =
    q_along[m]`` crosses polyline ``r`` once, at ``across = Y_r(q_along[m])``
    (end segments extended); the count at lattice point ``(m, l)`` is ``#{r:
    Y_r(q_along[m]) <= q_across[l]}``, the index of the strip between
    consecutive polylines that holds the point. Scatter + cumsum, ``O(R (n + M)
    + M L)``. Returns ``[B, L, M]`` with ``across_first``, else ``[B, M, L]``.
    """
    bsz, n_lines, n = along.shape
    m, n_across = q_along.n, q_across.n
    dtype = _count_dtype(along)
    out = torch.zeros((bsz, n_across, m) if across_first else (bsz, m, n_across), dtype=dtype, device=along.device)
    if n_lines == 0:
        return out
    along, across = along.reshape(bsz * n_lines, n), across.reshape(bsz * n_lines, n)
    seg = torch.zeros(bsz * n_lines, m, dtype=dtype, device=along.device)
    if n > 2:  # segment of each polyline at each query: its interior vertices at or before the query
        vertex = q_along.count(along[:, 1:-1].reshape(bsz, -1)).view(bsz * n_lines, n - 2)
        _step_counts(vertex, m, 1, seg)
    seg = seg.long()
    a0, a1 = along.gather(1, seg), along[:, 1:].gather(1, seg)
    c0, c1 = across.gather(1, seg), across[:, 1:].gather(1, seg)
    # y of the segment at the query (a zero-length segment is only picked at its own x: frac 0)
    frac = (q_along.q[:, None, :] - a0.view(bsz, n_lines, m)).view_as(a0).div_(a1.sub_(a0).clamp_min_(1e-30))
    pos = q_across.count(c0.addcmul_(frac, c1.sub_(c0)).view(bsz, -1)).view(bsz, n_lines, m)
    return _step_counts(pos, n_across, 1, out) if across_first else _step_counts(pos.transpose(1, 2), n_across, 2, out)


def _inside_boundary_lattice(tiles: _Tiles, qx: _Axis, qy: _Axis, points: Tensor) -> Tensor:
    """:meth:`_Tiles.inside_boundary` at the points ``points`` (flat indices) of the lattice ``qy x qx``, bool.

    Each boundary edge crosses the lattice rows with ``y0 <= qy < y1``; each
    crossing flips the parity of the points to its right in that row (scatter
    + cumsum), so the cost is ``O(crossings + H W)`` however many points lie
    outside.
    """
    x0, y0, x1, y1 = (e.reshape(-1) for e in tiles.boundary())  # [B * V]
    b_edge = torch.arange(tiles.bsz, device=x0.device).repeat_interleave(x0.numel() // tiles.bsz)
    k0 = qy.count(torch.minimum(y0, y1), b_edge, exact=True)
    n_cross = qy.count(torch.maximum(y0, y1), b_edge, exact=True) - k0
    edge = torch.arange(x0.numel(), device=x0.device).repeat_interleave(n_cross)
    row = k0[edge] + torch.arange(edge.numel(), device=edge.device) - (n_cross.cumsum(0) - n_cross)[edge]
    b, x0, y0 = b_edge[edge], x0[edge], y0[edge]
    y = qy.q.reshape(-1)[b * qy.n + row]
    xc = x0 + (y - y0) * (x1[edge] - x0) / (y1[edge] - y0)  # where the edge crosses the row
    col = qx.count(xc, b, right=True, exact=True)  # the first point right of the crossing
    flips = torch.zeros(tiles.bsz * qy.n, qx.n + 1, dtype=_count_dtype(x0), device=x0.device)
    flips.view(-1).index_add_(0, (b * qy.n + row) * (qx.n + 1) + col, torch.ones_like(col, dtype=flips.dtype))
    crossings = flips.cumsum_(1).view(-1)[points // qx.n * (qx.n + 1) + points % qx.n]  # left of each point
    return crossings % 2 == 1


def _locate_lattice(tiles: _Tiles, qx: Tensor, qy: Tensor, pos: Optional[Tensor] = None) -> Optional[_Located]:
    """Point location on the lattice of columns ``qx`` ``[B, W]`` and rows ``qy`` ``[B, H]`` (row-major).

    The tile of each point is read off two strip maps (the interior grid rows
    above it and the interior columns left of it, :func:`_strip_counts`) and
    verified by solving its quadratic, in cache-sized chunks of rows: ``O(H W
    + h W + w H)`` for any grid size, however the grid is perturbed. The few
    points whose tile does not cover them go to :meth:`_Tiles.place`, with the
    even-odd test point by point (few points) or over the whole lattice
    (:func:`_inside_boundary_lattice`), whichever is cheaper. ``pos``: optional
    ``[B * H * W, 2]`` buffer that receives the points' normalised warped
    positions (those of points no tile covers excepted), chunk by chunk.
    Returns None when ``qx`` or ``qy`` is not increasing and evenly spaced.
    """
    ax, ay = _Axis.of(qx), _Axis.of(qy)
    if ax is None or ay is None:
        return None
    grid, bsz = tiles.grid, tiles.bsz
    big_h, big_w = ay.n, ax.n
    gx, gy = grid[..., 0], grid[..., 1]
    ty = _strip_counts(gx[:, 1:-1], gy[:, 1:-1], ax, ay, across_first=True).view(-1)  # [B * H * W]
    tx = _strip_counts(gy.transpose(1, 2)[:, 1:-1], gx.transpose(1, 2)[:, 1:-1], ay, ax, across_first=False).view(-1)
    covered = torch.empty(bsz * big_h, big_w, dtype=torch.bool, device=grid.device)  # lattice rows, batch-major
    qy_rows = qy.reshape(-1)
    step = max(1, _CHUNK // big_w)
    for r0 in range(0, bsz * big_h, step):
        r1 = min(bsz * big_h, r0 + step)
        part = slice(r0 * big_w, r1 * big_w)
        points = torch.arange(part.start, part.stop, device=grid.device) if bsz > 1 else None
        coef = [c.view(r1 - r0, big_w) for c in tiles.coef(points, tx[part], ty[part])]
        px = qx.index_select(0, torch.arange(r0, r1, device=grid.device) // big_h) if bsz > 1 else qx.expand(
            r1 - r0, big_w)
        # broadcast over the rows; the misses are solved again with both roots
        s, t = _solve_bilinear(px, qy_rows[r0:r1, None], coef, small_root=True)
        _inside(s, t, out=covered[r0:r1])
        if pos is not None:
            _normalised(s.view(-1), t.view(-1), tx[part], ty[part], tiles, out=pos[part])
    covered = covered.view(-1)
    s, t = grid.new_empty(covered.shape), grid.new_empty(covered.shape)  # written where a miss is placed

    def points(idx: Tensor) -> Tuple[Tensor, Tensor]:
        b = idx // (big_h * big_w)
        return qx.reshape(-1)[b * big_w + idx % big_w], qy_rows[idx // big_w]

    def inside_boundary(idx: Tensor) -> Tensor:  # pairwise for a few points, else over the whole lattice
        if idx.numel() * 2 * (tiles.h + tiles.w - 2) <= covered.numel():
            return tiles.inside_boundary(idx, *points(idx))
        return _inside_boundary_lattice(tiles, ax, ay, idx)

    loc = _Located(tx, ty, s, t, covered, points)
    failed = (~covered).nonzero()[:, 0]
    if failed.numel():
        tiles.place(loc, failed, inside_boundary)
        if pos is not None:
            pos[failed] = _normalised(s[failed], t[failed], tx[failed], ty[failed], tiles)
    return loc


def _locate_points(tiles: _Tiles, qx: Tensor, qy: Tensor) -> _Located:
    """Point location of scattered points ``[B, N]``: walk from the separable (axis-marginal) estimate.

    Points the walk cannot place are tested against the boundary; those
    inside it (rare: strongly distorted tiles) are tested against every tile.
    """
    grid, h, w = tiles.grid, tiles.h, tiles.w
    dtype = _count_dtype(grid)
    tx = invert_1d(grid[..., 0].mean(1), qx).reshape(-1).floor().clamp_(0, w - 2).to(dtype)
    ty = invert_1d(grid[..., 1].mean(2), qy).reshape(-1).floor().clamp_(0, h - 2).to(dtype)
    px, py = qx.reshape(-1), qy.reshape(-1)
    s, t = tiles.solve(px, py, torch.arange(px.numel(), device=px.device), tx, ty)
    loc = _Located(tx, ty, s, t, _inside(s, t), lambda idx: (px[idx], py[idx]))
    tiles.place(loc, (~loc.covered).nonzero()[:, 0], lambda idx: tiles.inside_boundary(idx, px[idx], py[idx]))
    return loc


def _unit(h: int, w: int, like: Tensor) -> Tensor:
    """``[2]``: normalised length of one grid cell along x and y (grid-index units -> normalised)."""
    return like.new_tensor([2.0 / (w - 1), 2.0 / (h - 1)])


def _normalised(s: Tensor, t: Tensor, tx: Tensor, ty: Tensor, tiles: _Tiles, out: Optional[Tensor] = None) -> Tensor:
    """Normalised warped positions ``[M, 2]`` of points at ``(s, t)`` in tiles ``(tx, ty)``, clamped to ``[-1, 1]``.

    The clamp only removes the edge tolerance and rounding of border tiles.
    """
    out = s.new_empty(s.shape[0], 2) if out is None else out
    torch.add(s, tx, out=out[:, 0])
    torch.add(t, ty, out=out[:, 1])
    return out.mul_(_unit(tiles.h, tiles.w, out)).sub_(1).clamp_(-1, 1)


def _push_outside(est: Tensor, h: int, w: int) -> Tensor:
    """Estimated positions ``[M, 2]`` (index units) of uncovered points, moved just outside the grid if inside."""
    hi = est.new_tensor([w - 1., h - 1.])
    dist = torch.cat([est, hi - est], -1)  # distances to the 4 borders, index units
    inside = (dist > -1e-3).all(-1, keepdim=True)  # inside, or too close to tell apart
    edge = dist.argmin(-1, keepdim=True)
    onehot = torch.zeros_like(dist).scatter_(-1, edge, 1.)
    pushed = torch.where(onehot[:, :2] > 0, est.new_tensor(-1e-3).expand_as(est), est)
    pushed = torch.where(onehot[:, 2:] > 0, hi + 1e-3, pushed)
    return torch.where(inside, pushed, est)


def _invert_bilinear(grid: Tensor, qx: Tensor, qy: Tensor, lattice: bool = False) -> Tuple[Tensor, Tensor]:
    """Exact inverse of the piecewise-bilinear warp at points or on a lattice.

    Locates each point's tile (:func:`_locate_lattice` or
    :func:`_locate_points`, without gradient), then solves that tile's
    quadratic (again, differentiably, when an input requires grad). Points no
    tile covers get the separable (axis-marginal) estimate, moved just outside
    the grid when it falls inside, so that they read zeros (or the nearest
    border with clamping).

    Args:
        grid: ``[B, h, w, 2]`` normalised grid.
        qx, qy: ``[B, N]`` normalised x and y of the points of the original
            image; with ``lattice``, the ``[B, W]`` columns and ``[B, H]`` rows
            of a product lattice (``N = H W``, row-major).

    Returns:
        ``([B, N, 2]`` normalised warped positions ``(x, y)`` (see
        :func:`invert_grid`), ``[B, N]`` bool, True where a tile covers the
        point).
    """
    bsz, h, w, _ = grid.shape
    big_h, big_w = qy.shape[1], qx.shape[1]
    n = big_h * big_w if lattice else big_w
    differentiable = grid.requires_grad or qx.requires_grad or qy.requires_grad
    with torch.no_grad():
        tiles = _Tiles(grid.detach(), n)
        pos = None if differentiable or not lattice else grid.new_empty(bsz * n, 2)
        loc = _locate_lattice(tiles, qx.detach(), qy.detach(), pos) if lattice else None
        if lattice and loc is None:  # not an increasing affine lattice: locate its points one by one
            qx, qy = (qx[:, None, :].expand(bsz, big_h, big_w).reshape(bsz, n),
                      qy[:, :, None].expand(bsz, big_h, big_w).reshape(bsz, n))
            lattice, pos = False, None
        if loc is None:
            loc = _locate_points(tiles, qx.detach(), qy.detach())
    if differentiable:
        px = (qx[:, None, :].expand(bsz, big_h, big_w) if lattice else qx).reshape(-1)
        py = (qy[:, :, None].expand(bsz, big_h, big_w) if lattice else qy).reshape(-1)
        coef = _Tiles(grid, n, table=False).coef(torch.arange(bsz * n, device=grid.device), loc.tx, loc.ty)
        s, t = _solve_bilinear(px, py, coef, safe=True)
        pos = (torch.stack([s + loc.tx, t + loc.ty], -1) * _unit(h, w, s) - 1).clamp(-1, 1)
    elif pos is None:
        pos = _normalised(loc.s, loc.t, loc.tx, loc.ty, tiles)
    lost = (~loc.covered).nonzero()[:, 0]
    if lost.numel():
        with torch.no_grad():
            # separable estimate, per lattice column / row or per point
            est_x = invert_1d(grid[..., 0].mean(1).detach(), qx.detach()).reshape(-1)
            est_y = invert_1d(grid[..., 1].mean(2).detach(), qy.detach()).reshape(-1)
            if lattice:
                b = lost // n
                est_x, est_y = est_x[b * big_w + lost % big_w], est_y[lost // big_w]
            else:
                est_x, est_y = est_x[lost], est_y[lost]
            est = _push_outside(torch.stack([est_x, est_y], -1), h, w).to(pos.dtype) * _unit(h, w, pos) - 1
        pos = pos.index_put((lost, ), est)
    return pos.view(bsz, n, 2), loc.covered.view(bsz, n)


def _to_normalised(pos: Tensor, h: int, w: int, clamp: bool) -> Tensor:
    out = pos * _unit(h, w, pos) - 1
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
    pos = _invert_bilinear(grid, qx, qy, lattice=True)[0].view(bsz, big_h, big_w, 2)
    return pos.clamp(-1, 1) if clamp else pos


def _check_monotone(grid: Tensor, separable: bool) -> None:
    """A grid inverted separably must be separable (:func:`check_separable`) and monotone along each axis."""
    if separable:
        check_separable(grid)
        bad = bool((grid[..., 0].mean(1).diff(dim=-1) < 0).any()) or bool((grid[..., 1].mean(2).diff(dim=-1) < 0).any())
        if bad:
            raise ValueError('grid must be monotone along each axis (x non-decreasing along columns, '
                             'y along rows) to be inverted separably, got a folded grid')


def invert_grid(grid: Tensor,
                out_shape: Sequence[int],
                separable: bool = True,
                clamp: bool = False,
                align_corners: bool = False) -> Tensor:
    """Inverse of the piecewise-bilinear approximation of the LZ warp (unzoom grid).

    LZU §4.1 (eq. 5-7, Figure 5): ``T~`` is the bilinear interpolation of the
    low-resolution ``grid``; its inverse is computed exactly, per output pixel,
    either separably -- two 1-D piecewise-linear inversions combined by a
    Cartesian product -- or for a general grid by solving, in the tile that
    contains the point, the quadratic of the bilinear map (Appendix A.2,
    after Wolberg). Vectorised: no Python loops over batch, tiles or pixels
    (the non-separable point location reads each point's tile off strip maps
    of the grid's rows and columns and solves in cache-sized chunks of output
    rows; its cost does not depend on how many points no tile covers).

    Args:
        grid: ``[B, h, w, 2]`` normalised ``(x, y)`` grid from
            :func:`saliency_to_grid` (``h, w >= 2``).
        out_shape: ``(H, W)`` size of the unwarped map. Its pixel ``(i, j)`` is
            the normalised point ``((2j + 1)/W - 1, (2i + 1)/H - 1)``
            (half-pixel centres, ``align_corners=False``, the default of every
            pixel-facing op of :mod:`lzu_mm.ops`), or ``(2j/(W-1) - 1,
            2i/(H-1) - 1)`` with ``align_corners=True`` (the LZU authors').
        separable: True inverts the axis marginals of ``grid`` (its mean x per
            column and mean y per row; exact for separable grids); False
            inverts the full piecewise-bilinear map.
        clamp: False (default) leaves points no tile covers outside
            ``[-1, 1]`` (zero padding in ``grid_sample``); True clamps them
            onto the border (border padding).
        align_corners: pixel convention of the output lattice (and of the
            ``grid_sample`` call that uses the result).

    Returns:
        ``[B, H, W, 2]`` normalised ``(x, y)`` positions in the warped map:
        warped position ``index + fraction`` along an axis of ``n`` grid points
        is ``(index + fraction) / (n - 1) * 2 - 1``.
        ``grid_sample(warped, inverse, align_corners=align_corners)`` unzooms.

    Raises:
        ValueError: ``grid`` not ``[B, h, w, 2]`` with ``h, w >= 2``, not
            finite, or (separable) not separable or not monotone; ``out_shape``
            not positive.
    """
    check_grid(grid)
    big_h, big_w = check_shape_2d(out_shape, 'out_shape')
    _check_monotone(grid, separable)
    bsz = grid.shape[0]
    qx = _lattice(big_w, grid, align_corners).expand(bsz, big_w)
    qy = _lattice(big_h, grid, align_corners).expand(bsz, big_h)
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
    pos = _invert_bilinear(grid, points[..., 0], points[..., 1])[0]
    return pos.clamp(-1, 1) if clamp else pos
