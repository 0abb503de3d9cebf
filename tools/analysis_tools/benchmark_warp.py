"""Benchmark the LZU warp operators (lzu_mm.ops) on CPU and, when present, CUDA.

    python tools/analysis_tools/benchmark_warp.py [--devices cpu cuda] [--scales 0.25 0.5 0.75 1]
                                                  [--min-run-time 0.5] [--threads N] [--json out.json]

For Argoverse-HD (1920x1200, grid 31x51) and nuScenes (1600x900, grid 27x48) at
each scale it times, at batch size 1 (LZU paper §5, separable anti-crop warp
with a random peaked saliency):

* ``grid``: :func:`saliency_to_grid` (separable / non-separable);
* ``inv-sep`` / ``inv-2d``: separable and non-separable :func:`invert_grid`
  at the stride-8 FPN level (``@s8``) and at the full zoomed resolution;
* ``zoom``: :func:`zoom` of the full-resolution RGB image to the scale;
* ``unzoom``: resampling 5 FPN levels x 256 channels (strides 8-128, batch
  padded to a multiple of 32) with the cached inverse of a fixed warp, and
  ``unzoom+inv`` including the separable inversion (adaptive saliency).

Times come from ``torch.utils.benchmark.Timer.blocked_autorange`` (which
synchronises CUDA): median and interquartile range, in milliseconds.
"""
import argparse
import json
import math
import os.path as osp
import sys

import torch
from torch.utils.benchmark import Timer

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from lzu_mm.ops import LZWarp, invert_grid, saliency_to_grid, unzoom, zoom  # noqa: E402

DATASETS = {  # name: ((H, W) full resolution, LZ grid shape (h, w))
    'argoverse-hd': ((1200, 1920), (31, 51)),
    'nuscenes': ((900, 1600), (27, 48)),
}
STRIDES = (8, 16, 32, 64, 128)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--devices', nargs='+', default=['cpu', 'cuda'], help='devices to time (cuda when present)')
    parser.add_argument('--datasets', nargs='+', default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument('--scales', nargs='+', type=float, default=[0.25, 0.5, 0.75, 1.0])
    parser.add_argument('--min-run-time', type=float, default=0.5, help='seconds of timing per measurement')
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch default)')
    parser.add_argument('--skip-full-2d', action='store_true',
                        help='skip the non-separable inversion at full resolution (the slowest row)')
    parser.add_argument('--json', help='also write the results to this JSON file')
    return parser.parse_args(argv)


def measure(fn, min_run_time):
    # Timer runs single-threaded unless told otherwise: time with the threads torch would use
    m = Timer(stmt='fn()', globals=dict(fn=fn), num_threads=torch.get_num_threads()).blocked_autorange(
        min_run_time=min_run_time)
    return m.median * 1e3, m.iqr * 1e3


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
        'inv-sep @s8': lambda: invert_grid(grid, s8),
        'inv-sep': lambda: invert_grid(grid, (h_img, w_img)),
        'inv-2d @s8': lambda: invert_grid(grid2d, s8, separable=False),
        'inv-2d': lambda: invert_grid(grid2d, (h_img, w_img), separable=False),
        'zoom': lambda: zoom(image, grid, (h_img, w_img)),
        'unzoom 5x256': lambda: warp.unzoom(feats, img_shapes=[(h_img, w_img)], pad_shape=pad),
        'unzoom+inv 5x256': lambda: unzoom(feats, grid, img_shapes=[(h_img, w_img)], pad_shape=pad),
    }
    if args.skip_full_2d:
        rows.pop('inv-2d')
    with torch.no_grad():
        return {name: measure(fn, args.min_run_time) for name, fn in rows.items()}, (h_img, w_img)


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = [d for d in args.devices if d == 'cpu' or (d == 'cuda' and torch.cuda.is_available())]
    results = []
    for device in devices:
        name = torch.cuda.get_device_name() if device == 'cuda' else f'cpu ({torch.get_num_threads()} threads)'
        print(f'\n== {device}: {name}, torch {torch.__version__}; median [IQR] ms, batch 1')
        header = None
        for dataset in args.datasets:
            full_shape, grid_shape = DATASETS[dataset]
            for scale in args.scales:
                times, size = bench_case(device, full_shape, grid_shape, scale, args)
                if header is None:
                    header = list(times)
                    print(f'{"case":<30}' + ''.join(f'{h:>19}' for h in header))
                label = f'{dataset} {scale:g}x {size[0]}x{size[1]}'
                print(f'{label:<30}' + ''.join(f'{m:>10.2f} [{q:5.2f}]' for m, q in times.values()))
                results.append(dict(device=device, dataset=dataset, scale=scale, img_shape=size,
                                    grid_shape=grid_shape, times_ms={k: dict(median=m, iqr=q)
                                                                     for k, (m, q) in times.items()}))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=1)
    return results


if __name__ == '__main__':
    main()
