"""The LZ grid exactly as the paper's authors formulated it (issue 2, §4), written with loops.

Used only as a test oracle for :func:`lzu_mm.ops.saliency_to_grid`.
"""
import math

import torch
import torch.nn.functional as F


def reference_grid(saliency, separable, fwhm, anti_crop):
    s = saliency.double()
    b, _, h, w = s.shape
    p = min(h, w) - 1
    mode = 'reflect' if anti_crop else 'replicate'
    k = torch.arange(2 * p + 1, dtype=torch.float64)
    g = torch.exp(-4 * math.log(2) * (k - p)**2 / fwhm**2)
    if separable:

        def axis(marginal, n):
            padded = F.pad(marginal[:, None], (p, p), mode=mode)[:, 0]
            basis = (torch.arange(n + 2 * p, dtype=torch.float64) - p) / (n - 1)
            out = torch.stack([(g * basis[j:j + 2 * p + 1] * padded[:, j:j + 2 * p + 1]).sum(-1) /
                               (g * padded[:, j:j + 2 * p + 1]).sum(-1) for j in range(n)], -1)
            return (2 * out - 1).clamp(-1, 1)

        x = axis(s.sum(2)[:, 0], w)
        y = axis(s.sum(3)[:, 0], h)
        return torch.stack([x[:, None, :].expand(b, h, w), y[:, :, None].expand(b, h, w)], -1)
    padded = F.pad(s, (p, p, p, p), mode=mode)[:, 0]
    g2 = g[:, None] * g[None]
    bx = ((torch.arange(w + 2 * p, dtype=torch.float64) - p) / (w - 1))[None].expand(h + 2 * p, -1)
    by = ((torch.arange(h + 2 * p, dtype=torch.float64) - p) / (h - 1))[:, None].expand(-1, w + 2 * p)
    out = torch.zeros(b, h, w, 2, dtype=torch.float64)
    for i in range(h):
        for j in range(w):
            win = padded[:, i:i + 2 * p + 1, j:j + 2 * p + 1]
            den = (g2 * win).sum((1, 2))
            out[:, i, j, 0] = (g2 * bx[i:i + 2 * p + 1, j:j + 2 * p + 1] * win).sum((1, 2)) / den
            out[:, i, j, 1] = (g2 * by[i:i + 2 * p + 1, j:j + 2 * p + 1] * win).sum((1, 2)) / den
    return (2 * out - 1).clamp(-1, 1)


def forward_map(grid, pos):
    """The piecewise-bilinear warp T~: positions ``[B, N, 2]`` (grid-index units, x first) -> normalised points."""
    b, h, w, _ = grid.shape
    norm = torch.stack([pos[..., 0] / (w - 1) * 2 - 1, pos[..., 1] / (h - 1) * 2 - 1], -1)
    out = F.grid_sample(grid.permute(0, 3, 1, 2), norm[:, None], mode='bilinear', align_corners=True)
    return out[:, :, 0].permute(0, 2, 1)


def tile_cover(grid, points, margin=0.0):
    """Brute force: is each point inside some tile's quadrilateral? Tested against every tile.

    The piecewise-bilinear warp maps tile ``(i, j)`` onto the quadrilateral of
    its 4 corners (straight edges); for a convex corner quadrilateral the map is
    one-to-one onto it. ``grid`` ``[B, h, w, 2]``, ``points`` ``[B, N, 2]``
    (normalised); returns ``[B, N]`` bool: True where the point's signed distance
    to every edge of some tile is at least ``margin`` (normalised units, inside
    positive; a negative margin accepts points that far outside).
    """
    a, b = grid[:, :-1, :-1].flatten(1, 2), grid[:, :-1, 1:].flatten(1, 2)
    c, d = grid[:, 1:, 1:].flatten(1, 2), grid[:, 1:, :-1].flatten(1, 2)
    p = points[:, :, None, :]  # [B, N, 1, 2] against [B, 1, T, 2]
    dist = []
    for start, end in ((a, b), (b, c), (c, d), (d, a)):
        edge = (end - start)[:, None]
        length = edge.norm(dim=-1)
        rel = p - start[:, None]
        cross = edge[..., 0] * rel[..., 1] - edge[..., 1] * rel[..., 0]
        dist.append(torch.where(length > 0, cross / length.clamp_min(1e-300), torch.full_like(cross, float('inf'))))
    return (torch.stack(dist).amin(0) >= margin).any(-1)


def convex_tiles(grid):
    """True if every tile's corner quadrilateral is strictly convex with the grid's orientation."""
    a, b, c, d = grid[:, :-1, :-1], grid[:, :-1, 1:], grid[:, 1:, 1:], grid[:, 1:, :-1]
    corners = [(d, a, b), (a, b, c), (b, c, d), (c, d, a)]
    turns = [(q - p)[..., 0] * (r - q)[..., 1] - (q - p)[..., 1] * (r - q)[..., 0] for p, q, r in corners]
    return bool((torch.stack(turns) > 0).all())
