"""Benchmark the LZU warp operators (lzu_mm.ops) on CPU and, when present, CUDA.

    python tools/analysis_tools/benchmark_warp.py [--devices cpu cuda] [--threads 1 [2]]
        [--sections ops inversion] [--scales 0.25 0.5 0.75 1] [--min-run-time 0.5]
        [--authors-repo PATH] [--inv-shape 600 960] [--json out.json]

``ops`` section: for Argoverse-HD (1920x1200, grid 31x51) and nuScenes
(1600x900, grid 27x48) at each scale it times, at batch size 1 (LZU paper §5,
separable anti-crop warp with a random peaked saliency):

* ``grid``: :func:`saliency_to_grid` (separable / non-separable);
* ``inv-sep`` / ``inv-2d``: separable and non-separable :func:`invert_grid`
  at the stride-8 FPN level (``@s8``) and at the full zoomed resolution;
* ``zoom``: :func:`zoom` of the full-resolution RGB image to the scale;
* ``unzoom``: resampling 5 FPN levels x 256 channels (strides 8-128, batch
  padded to a multiple of 32) with the cached inverse of a fixed warp, and
  ``unzoom+inv`` including the separable inversion (adaptive saliency).

``inversion`` section: :func:`invert_grid` at ``--inv-shape`` (600x960, the
0.5x Argoverse-HD scale) for the grids of issue 13 -- separable 31x51;
non-separable 31x51; the same perturbed by float noise (uniform, at most
2.3e-6); a dense 600x960 grid (the non-separable grid upsampled to the output
size); non-separable without anti-crop (attraction FWHM 4 and 13, where some
points are covered by no tile) -- side by side with the paper authors'
``invert_grid`` (github:tchittesh/lzu, ``lzu/invert_grid.py``) when
``--authors-repo`` points at a checkout or exported tree of that repository.
Their code is imported from there at run time, never copied. For each inverse
it also reports the fraction of points left uncovered (outside ``[-1, 1]``)
and the largest round-trip error ``|T~(inverse(p)) - p|`` over the others, in
output pixels.

Each table is printed once per ``--threads`` value (default 1: on a shared
machine two OpenMP threads per process oversubscribe the cores as soon as
another process is busy and make small ops 10-40x slower; one thread gives
stable figures). Times: medians and interquartile ranges in milliseconds, of
``torch.utils.benchmark`` blocked runs (which synchronise CUDA), at least
``--min-repeats`` runs per entry.
"""
import argparse
import importlib.util
import json
import math
import os.path as osp
import statistics
import sys

import torch
import torch.nn.functional as F
from torch.utils.benchmark import Timer

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from lzu_mm.ops import LZWarp, invert_grid, saliency_to_grid, unzoom, upsample_grid, zoom  # noqa: E402

DATASETS = {  # name: ((H, W) full resolution, LZ grid shape (h, w))
    'argoverse-hd': ((1200, 1920), (31, 51)),
    'nuscenes': ((900, 1600), (27, 48)),
}
STRIDES = (8, 16, 32, 64, 128)
#: Largest float noise added to the "perturbed" grid (issue 13: a grid re-sampled from its upsampled copy).
PERTURBATION = 2.3e-6


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--devices', nargs='+', default=['cpu', 'cuda'], help='devices to time (cuda when present)')
    parser.add_argument('--sections', nargs='+', default=['ops', 'inversion'], choices=['ops', 'inversion'])
    parser.add_argument('--datasets', nargs='+', default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument('--scales', nargs='+', type=float, default=[0.25, 0.5, 0.75, 1.0])
    parser.add_argument('--min-run-time', type=float, default=0.5, help='seconds of timing per measurement')
    parser.add_argument('--min-repeats', type=int, default=7, help='fewest timed runs per measurement')
    parser.add_argument('--threads', nargs='+', type=int, default=[1],
                        help='torch CPU thread counts, one set of tables each (default 1, see the docstring)')
    parser.add_argument('--skip-full-2d', action='store_true',
                        help='skip the non-separable inversion at full resolution (the slowest row)')
    parser.add_argument('--authors-repo',
                        help='checkout or exported tree of github:tchittesh/lzu: time its lzu/invert_grid.py side by '
                        'side in the inversion section (skipped with a note otherwise)')
    parser.add_argument('--inv-shape', nargs=2, type=int, default=[600, 960], metavar=('H', 'W'),
                        help='output size of the inversion section')
    parser.add_argument('--json', help='also write the results to this JSON file')
    return parser.parse_args(argv)


def measure(fn, min_run_time, min_repeats=1):
    """Median and IQR (ms) of ``fn`` over blocked runs of at least ``min_run_time`` s and ``min_repeats`` runs."""
    # Timer runs single-threaded unless told otherwise: time with the threads torch would use
    timer = Timer(stmt='fn()', globals=dict(fn=fn), num_threads=torch.get_num_threads())
    m = timer.blocked_autorange(min_run_time=min_run_time)
    times = list(m.times)
    while len(times) < min_repeats:
        times.extend(timer.timeit(1).times)
    quartiles = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
    return statistics.median(times) * 1e3, (quartiles[2] - quartiles[0]) * 1e3


def peaked_saliency(grid_shape, device):
    gen = torch.Generator().manual_seed(0)
    return (torch.rand(1, 1, *grid_shape, generator=gen)**4 + 0.05).to(device)


def bench_case(device, full_shape, grid_shape, scale, args):
    h_img, w_img = round(full_shape[0] * scale), round(full_shape[1] * scale)
    pad = (math.ceil(h_img / 32) * 32, math.ceil(w_img / 32) * 32)
    s8 = (math.ceil(pad[0] / 8), math.ceil(pad[1] / 8))
    saliency = peaked_saliency(grid_shape, device)
    grid = saliency_to_grid(saliency)
    grid2d = saliency_to_grid(saliency, separable=False)
    image = torch.rand(1, 3, *full_shape, device=device)
    feats = [torch.randn(1, 256, math.ceil(pad[0] / s), math.ceil(pad[1] / s), device=device) for s in STRIDES]
    warp = LZWarp(saliency.cpu())
    warp.unzoom(feats, img_shapes=[(h_img, w_img)], pad_shape=pad)  # fill the cache
    rows = {
        'grid (sep)': lambda: saliency_to_grid(saliency),
        'grid (2d)': lambda: saliency_to_grid(saliency, separable=False),
        'inv-sep @s8': lambda: invert_grid(grid, s8, align_corners=True),
        'inv-sep': lambda: invert_grid(grid, (h_img, w_img), align_corners=True),
        'inv-2d @s8': lambda: invert_grid(grid2d, s8, separable=False, align_corners=True),
        'inv-2d': lambda: invert_grid(grid2d, (h_img, w_img), separable=False, align_corners=True),
        'zoom': lambda: zoom(image, grid, (h_img, w_img)),
        'unzoom 5x256': lambda: warp.unzoom(feats, img_shapes=[(h_img, w_img)], pad_shape=pad),
        'unzoom+inv 5x256': lambda: unzoom(feats, grid, img_shapes=[(h_img, w_img)], pad_shape=pad),
    }
    if args.skip_full_2d:
        rows.pop('inv-2d')
    with torch.no_grad():
        return {name: measure(fn, args.min_run_time) for name, fn in rows.items()}, (h_img, w_img)


def bench_ops(device, args):
    results, header = [], None
    for dataset in args.datasets:
        full_shape, grid_shape = DATASETS[dataset]
        for scale in args.scales:
            times, size = bench_case(device, full_shape, grid_shape, scale, args)
            if header is None:
                header = list(times)
                print(f'{"case":<30}' + ''.join(f'{h:>19}' for h in header))
            label = f'{dataset} {scale:g}x {size[0]}x{size[1]}'
            print(f'{label:<30}' + ''.join(f'{m:>10.2f} [{q:5.2f}]' for m, q in times.values()), flush=True)
            results.append(dict(section='ops', device=device, threads=torch.get_num_threads(), dataset=dataset,
                                scale=scale, img_shape=size, grid_shape=grid_shape,
                                times_ms={k: dict(median=m, iqr=q) for k, (m, q) in times.items()}))
    return results


def load_authors_invert(path):
    """The authors' ``invert_grid`` from ``path/lzu/invert_grid.py`` (pure torch), or None with a note."""
    if not path:
        print('note: no --authors-repo given; the authors\' columns are skipped')
        return None
    file = osp.join(path, 'lzu', 'invert_grid.py')
    if not osp.isfile(file):
        print(f'note: {file} not found; the authors\' columns are skipped')
        return None
    spec = importlib.util.spec_from_file_location('authors_invert_grid', file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.invert_grid


def inversion_cases(device, out_shape):
    """``{name: (grid [1, h, w, 2], separable)}``: the grids of issue 13's table."""
    saliency = peaked_saliency(DATASETS['argoverse-hd'][1], device)
    grid2d = saliency_to_grid(saliency, separable=False)
    gen = torch.Generator().manual_seed(1)
    noise = (torch.rand(grid2d.shape, generator=gen, dtype=grid2d.dtype) * 2 - 1) * PERTURBATION
    h, w = grid2d.shape[1:3]
    cases = {
        f'separable {h}x{w}': (saliency_to_grid(saliency), True),
        f'non-separable {h}x{w}': (grid2d, False),
        f'non-separable {h}x{w} + noise {PERTURBATION:g}': (grid2d + noise.to(device), False),
        f'non-separable dense {out_shape[0]}x{out_shape[1]}': (upsample_grid(grid2d, out_shape,
                                                                             align_corners=True).contiguous(), False),
    }
    for fwhm in (4., 13.):
        no_anti_crop = saliency_to_grid(saliency, separable=False, attraction_fwhm=fwhm, anti_crop=False)
        cases[f'non-separable, no anti-crop, fwhm {fwhm:g}'] = (no_anti_crop, False)
    return cases


def round_trip(grid, inverse):
    """Fraction of points no tile covers, and the largest ``|T~(inverse(p)) - p|`` over the others, in pixels.

    ``T~`` (the piecewise-bilinear warp) is evaluated in float64 with ``grid_sample``.
    """
    out_h, out_w = inverse.shape[1:3]
    covered = (inverse.abs() <= 1).all(-1)
    warped = F.grid_sample(grid.double().permute(0, 3, 1, 2), inverse.double(), align_corners=True)
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, out_h, dtype=torch.float64, device=grid.device),
                            torch.linspace(-1, 1, out_w, dtype=torch.float64, device=grid.device), indexing='ij')
    px = torch.tensor([(out_w - 1) / 2, (out_h - 1) / 2], dtype=torch.float64, device=grid.device)
    error = ((warped.permute(0, 2, 3, 1) - torch.stack([xs, ys], -1)).abs() * px).amax(-1)
    return 1 - float(covered.double().mean()), float(error[covered].max()) if covered.any() else 0.0


def bench_inversion(device, args, authors):
    out_shape = tuple(args.inv_shape)
    print(f'{"invert_grid to " + "x".join(map(str, out_shape)):<42}{"ours":>19}{"authors":>21}{"ratio":>8}'
          f'{"uncovered ours/authors":>24}{"round trip px ours/authors":>29}')
    results = []
    for name, (grid, separable) in inversion_cases(device, out_shape).items():
        with torch.no_grad():
            ours = invert_grid(grid, out_shape, separable=separable, align_corners=True)
            row = dict(section='inversion', device=device, threads=torch.get_num_threads(), case=name,
                       out_shape=out_shape, grid_shape=tuple(grid.shape[1:3]))
            row['uncovered'], row['round_trip_px'] = round_trip(grid, ours)
            row['ours_ms'] = measure(lambda: invert_grid(grid, out_shape, separable=separable, align_corners=True),
                                     args.min_run_time, args.min_repeats)
            text = f'{name:<42}{row["ours_ms"][0]:>10.2f} [{row["ours_ms"][1]:6.2f}]'
            if authors is not None:
                input_shape = (grid.shape[0], 1, *out_shape)
                row['authors_uncovered'], row['authors_round_trip_px'] = round_trip(
                    grid, authors(grid, input_shape, separable=separable))
                row['authors_ms'] = measure(lambda: authors(grid, input_shape, separable=separable),
                                            args.min_run_time, args.min_repeats)
                row['ratio'] = row['authors_ms'][0] / row['ours_ms'][0]
                text += (f'{row["authors_ms"][0]:>12.2f} [{row["authors_ms"][1]:6.2f}]{row["ratio"]:>7.1f}x'
                         f'{row["uncovered"] * 100:>15.2f}% /{row["authors_uncovered"] * 100:5.2f}%'
                         f'{row["round_trip_px"]:>18.1e} /{row["authors_round_trip_px"]:8.1e}')
            else:
                text += (f'{"-":>21}{"-":>8}{row["uncovered"] * 100:>15.2f}% /{"-":>6}'
                         f'{row["round_trip_px"]:>18.1e} /{"-":>8}')
            print(text, flush=True)
            results.append(row)
    return results


def main(argv=None):
    args = parse_args(argv)
    devices = [d for d in args.devices if d == 'cpu' or (d == 'cuda' and torch.cuda.is_available())]
    authors = load_authors_invert(args.authors_repo) if 'inversion' in args.sections else None
    results = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for device in devices:
            name = torch.cuda.get_device_name() if device == 'cuda' else f'cpu ({torch.get_num_threads()} threads)'
            print(f'\n== {device}: {name}, torch {torch.__version__}; median [IQR] ms, batch 1')
            if 'ops' in args.sections:
                results += bench_ops(device, args)
            if 'inversion' in args.sections:
                print()
                results += bench_inversion(device, args, authors)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=1)
    return results


if __name__ == '__main__':
    main()
