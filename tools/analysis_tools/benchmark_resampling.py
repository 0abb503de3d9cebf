"""Cost of resampling the full-resolution image in the model: DownsizeNet, the learned saliency, the batch memory.

    python tools/analysis_tools/benchmark_resampling.py [--config CONFIG] [--ori-shape H W] [--threads 1]
        [--warmup 2] [--repeat 7] [--op-repeat 21] [--device cpu] [--memory [--nuscenes-image JPG]] [--json out.json]

Speed (batch 1, random weights): the forward pass of the uniform detector of ``--config`` (default: RetinaNet
R50-FPN at 0.5x, Argoverse-HD 1920x1200 -> 960x600) and, timed on their own as LZU §5 times its added operations,
the model-side resampling of the full-resolution source into the network input:

* ``bilinear``: ``grid_sample`` at the uniform positions (cached sampling grid) -- the model-side equivalent of
  the pipeline's Resize, the reference;
* ``downsizenet-2``, ``downsizenet-3``: DownsizeNet (16 channels, softmax) at the same positions;
* ``saliency-net``: SaliencyNet's forward (31x51 grid from a 248x408 view);
* ``learned-lz``: everything a learned saliency adds per image: the net, the LZ grid, the (uncached) sampling grid,
  the bilinear resampling and the unzoom of the FPN levels with the per-image inversion.

``added`` is each case minus ``bilinear``, also as % of the forward pass; medians over the repeats with the
interquartile range, at ``--threads`` torch threads (default 1: the machine is shared). On CUDA (``--device
cuda``) each run is synchronised.

Memory (``--memory``): the bytes of one training batch (2 images, the configs' batch per GPU) of the
Argoverse-HD (1920x1200) and nuScenes (1600x900) images at 1x through ``LoadImageFromFile -> ResizeWithSource ->
PackDetInputs`` (the packed uint8 inputs plus the uint8 full-resolution sources in the records) next to the plain
``Resize`` batch, and the tensors the model-side resampling makes on the device (float32 source batch, sampling
grid, output; DownsizeNet's texture features), from their shapes.
"""
import argparse
import json
import os.path as osp
import sys
import tempfile

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # benchmark_lzu (same folder)
sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))  # run from a checkout

import numpy as np  # noqa: E402
import torch  # noqa: E402
from benchmark_lzu import build_model, time_ms  # noqa: E402
from mmengine.config import Config  # noqa: E402

import lzu_mm  # noqa: E402

lzu_mm.register_all_modules()
from lzu_mm.common import DownsizeNet, SaliencyNet  # noqa: E402
from lzu_mm.common.model import LZUState  # noqa: E402
from lzu_mm.ops import (LZWarp, bilinear_resample, saliency_to_grid, uniform_saliency, unzoom_positions,  # noqa: E402
                        apply_unzoom, sampling_grid, zoom_sampling_grid)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEFAULT_CONFIG = osp.join(REPO, 'configs', 'lzu_retinanet', 'retinanet_r50_fpn_3e_argoverse-hd-0.5x.py')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='model-side resampling: DownsizeNet / learned saliency cost, memory')
    parser.add_argument('--config', default=DEFAULT_CONFIG, help='uniform detector config (forward pass reference)')
    parser.add_argument('--ori-shape', type=int, nargs=2, default=(1200, 1920), metavar=('H', 'W'))
    parser.add_argument('--out-shape', type=int, nargs=2, default=(600, 960), metavar=('H', 'W'))
    parser.add_argument('--grid-shape', type=int, nargs=2, default=(31, 51), metavar=('H', 'W'))
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--repeat', type=int, default=7, help='timed forward passes')
    parser.add_argument('--op-repeat', type=int, default=21, help='timed runs of each resampling case')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--memory', action='store_true', help='also measure the batch memory')
    parser.add_argument('--nuscenes-image', help='a 1600x900 nuScenes image (default: ../shared/data)')
    parser.add_argument('--skip-speed', action='store_true')
    parser.add_argument('--json', help='write the results here')
    return parser.parse_args(argv)


def _fpn_shapes(pad_shape, strides=(8, 16, 32, 64, 128)):
    return [(-(-pad_shape[0] // s), -(-pad_shape[1] // s)) for s in strides]


def speed(args, device):
    torch.manual_seed(0)
    cfg = Config.fromfile(args.config)
    model = build_model(cfg, device)
    h0, w0 = args.ori_shape
    h, w = args.out_shape
    pad = (-(-h // 32) * 32, -(-w // 32) * 32)
    source = torch.randint(0, 256, (1, 3, h0, w0), device=device).float()
    inputs = torch.randn(1, 3, *pad, device=device)
    from mmdet.structures import DetDataSample
    sample = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h0, w0), scale_factor=(w / w0, h / h0),
                                         pad_shape=pad, batch_input_shape=pad))
    results = dict(forward=time_ms(lambda: model.predict(inputs, [sample]), device, args.warmup, args.repeat))
    uniform = LZWarp(uniform_saliency((2, 2)))
    sampling = uniform.zoom_sampling_grid(source.shape[-2:], pad, 1, [(h0, w0)], [(h, w)], device)
    cases = dict(bilinear=lambda: bilinear_resample(source, sampling))
    for depth in (2, 3):
        net = DownsizeNet(num_convs=depth).to(device).eval()
        cases[f'downsizenet-{depth}'] = (lambda n: lambda: n(source, sampling))(net)
    snet = SaliencyNet(tuple(args.grid_shape), input_size=(8 * args.grid_shape[0], 8 * args.grid_shape[1]),
                       uniform_mix=0.2).to(device).eval()
    with torch.no_grad():
        snet.head.weight.normal_()  # a non-uniform saliency (the cost does not depend on it)
    cases['saliency-net'] = lambda: snet(source, [(h0, w0)])
    feats = [torch.randn(1, 256, *s, device=device) for s in _fpn_shapes(pad)]

    def learned():
        grid = saliency_to_grid(snet(source, [(h0, w0)]).double(), True, 4., True)
        out = bilinear_resample(source, zoom_sampling_grid(grid, source.shape[-2:], pad, 1, [(h0, w0)], [(h, w)]))
        state = LZUState(None, grid, [(h, w)], pad)
        positions = unzoom_positions(state.grid, [f.shape[-2:] for f in feats], state.img_shapes, state.pad_shape)
        return out, apply_unzoom(feats, [sampling_grid(p, f.shape[-2:]) for p, f in zip(positions, feats)])

    cases['learned-lz'] = learned
    for name, fn in cases.items():
        results[name] = time_ms(fn, device, args.warmup, args.op_repeat)
    fwd, base = results['forward']['median'], results['bilinear']['median']
    for name in cases:
        if name != 'bilinear':
            added = results[name]['median'] - base
            results[name].update(added=added, added_pct=100 * added / fwd)
    return results


def _nbytes(obj) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if isinstance(obj, dict):
        return sum(_nbytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_nbytes(v) for v in obj)
    if hasattr(obj, 'metainfo') and hasattr(obj, 'all_values'):
        return _nbytes(dict(obj.metainfo)) + sum(_nbytes(v) for v in obj.values())
    return 0


def batch_bytes(image_path: str, resize_type: str, scale, batch: int = 2) -> int:
    """Host bytes (arrays and tensors) of a collated batch of ``image_path`` through the pipeline."""
    from mmengine.dataset import Compose, pseudo_collate
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    pipeline = Compose([dict(type='LoadImageFromFile'), dict(type=resize_type, scale=scale, keep_ratio=True),
                        dict(type='PackDetInputs', meta_keys=('img_shape', 'scale_factor', 'lzu_zoom'))])
    return _nbytes(pseudo_collate([pipeline(dict(img_path=image_path, img_id=i)) for i in range(batch)]))


def memory(args):
    import cv2
    nuscenes = args.nuscenes_image
    if nuscenes is None:
        import glob
        found = sorted(glob.glob(osp.join(REPO, '..', 'shared', 'data', 'nuscenes', 'samples', 'CAM_FRONT', '*.jpg')))
        nuscenes = found[0] if found else None
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        argoverse = osp.join(tmp, 'argoverse_1920x1200.jpg')
        cv2.imwrite(argoverse, np.random.default_rng(0).integers(0, 256, (1200, 1920, 3), dtype=np.uint8))
        datasets = [('argoverse-hd', argoverse, (1200, 1920))]
        if nuscenes:
            datasets.append(('nuscenes', nuscenes, (900, 1600)))
        for name, path, (h0, w0) in datasets:
            for scale_name, s in (('1x', 1.0), ('0.5x', 0.5)):
                scale = (int(w0 * s), int(h0 * s))
                plain = batch_bytes(path, 'Resize', scale)
                source = batch_bytes(path, 'ResizeWithSource', scale)
                h, w = scale[1], scale[0]
                device = dict(
                    source_float32=2 * 3 * h0 * w0 * 4,
                    sampling_grid_float32=h * w * 2 * 4,  # cached for fixed warps; per batch for learned ones
                    output_float32=2 * 3 * h * w * 4,
                    downsizenet_texture_float32_per_layer=2 * 16 * h0 * w0 * 4,
                    downsizenet_neighbours_float32=2 * 4 * 3 * h * w * 4)
                out[f'{name}-{scale_name}'] = dict(batch=2, resize_batch_bytes=plain, source_batch_bytes=source,
                                                   added_bytes=source - plain, device_bytes=device)
    return out


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    results = dict(threads=args.threads, device=args.device)
    if not args.skip_speed:
        results['speed'] = speed(args, device)
        print(f"forward {results['speed']['forward']['median']:.1f} ms [IQR {results['speed']['forward']['iqr']:.1f}]")
        for name, r in results['speed'].items():
            if name != 'forward':
                extra = f", added {r['added']:.1f} ms = {r['added_pct']:.2f} % of forward" if 'added' in r else ''
                print(f"{name:14s} {r['median']:8.2f} ms [IQR {r['iqr']:.2f}]{extra}")
    if args.memory:
        results['memory'] = memory(args)
        for name, m in results['memory'].items():
            mb = {k: v / 2**20 for k, v in m['device_bytes'].items()}
            print(f"{name}: batch of 2: Resize {m['resize_batch_bytes'] / 2**20:.1f} MiB, ResizeWithSource "
                  f"{m['source_batch_bytes'] / 2**20:.1f} MiB (+{m['added_bytes'] / 2**20:.1f}); device: "
                  + ', '.join(f'{k} {v:.1f} MiB' for k, v in mb.items()))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == '__main__':
    main()
