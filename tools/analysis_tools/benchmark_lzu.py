"""Model-level latency of LZU: the forward pass, and separately the added zoom and unzoom time.

    python tools/analysis_tools/benchmark_lzu.py CONFIG [CONFIG ...]
        [--ori-shape H W] [--warmup 3] [--repeat 10] [--device cpu cuda]
        [--img IMAGE] [--flops] [--work-dir DIR | --work-dirs DIR ...] [--json out.json]
        [--cfg-options k=v ...]

For each config, at batch size 1: builds the model (random weights: latency
does not depend on them; ``init_weights`` gives the heads their usual prior),
packs one input exactly as the config's test pipeline does (its zoom / resize
transform's output size for an original of ``--ori-shape``, its packing
transform and data preprocessor), and times

* ``forward``: ``model(**data, mode='predict')`` on the preprocessed batch
  (the whole inference incl. post-processing; for an LZU model it includes
  the unzoom, and the zoom when the model zooms itself);
* ``zoom``: the LZ zoom with the fixed, cached warp -- of the full-resolution
  original to the zoomed size when the pipeline zooms (as the paper does on
  the device), of the batch in place when the model zooms;
* ``unzoom``: ``model.lzu_unzoom`` of feature maps of exactly the shapes the
  model unzooms, with its cached unzoom grids.

The paper times only the added operations and adds them to the baseline's
latency, to avoid backbone variance (LZU §5); the ``added`` column is
``zoom + unzoom`` and ``added/forward`` its fraction of the forward pass.
``latency`` is what one image costs end to end on the device: ``forward``
plus the pipeline zoom. Each time is the median over ``--repeat`` runs after
``--warmup`` runs, with its interquartile range; CUDA timings synchronise
before and after each run (``torch.cuda.synchronize``).

``--work-dir`` (one config) / ``--work-dirs`` (one per config) write
``lzu_benchmark.json`` there, which ``tools/analysis_tools/plot_pareto.py``
reads together with the metrics of that work dir.
"""
import argparse
import json
import logging
import os
import os.path as osp
import sys
import time
from typing import Callable, List, Optional

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))  # run from a checkout

import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmengine.config import Config, ConfigDict, DictAction  # noqa: E402
from mmengine.logging import MMLogger  # noqa: E402

import lzu_mm  # noqa: E402

lzu_mm.register_all_modules()  # the plugin's modules and the checkpoint allow-list
from lzu_mm.common.config import add_lzu_arguments, merge_cfg_options, without_pretrained  # noqa: E402
from lzu_mm.visualization.config_warp import config_test_pipeline, image_before_zoom, warp_from_config  # noqa: E402
from lzu_mm.visualization.warp_maps import uniform_resize, zoom_image  # noqa: E402

#: File written into a work dir (read by plot_pareto.py).
BENCHMARK_JSON = 'lzu_benchmark.json'

#: Original image size ``(H, W)`` of each benchmark's dataset (paper §5), matched on the dataset type.
DATASET_SHAPES = (('argoverse', (1200, 1920)), ('cityscapes', (1024, 2048)), ('nuscenes', (900, 1600)))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='LZU model-level latency: forward, added zoom and unzoom time')
    parser.add_argument('configs', nargs='+', help='config files')
    parser.add_argument('--ori-shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='original image size (default: from the dataset type: Argoverse-HD 1200x1920, '
                        'Cityscapes 1024x2048, nuScenes 900x1600)')
    parser.add_argument('--warmup', type=int, default=3, help='untimed runs before timing')
    parser.add_argument('--repeat', type=int, default=10, help='timed runs (median and IQR over them)')
    parser.add_argument('--device', nargs='+', default=None,
                        help='devices to time on (default: cpu, and cuda when available)')
    parser.add_argument('--img', help='an image to feed (default: random pixels; latency does not depend on it)')
    add_lzu_arguments(parser, data=False)
    parser.add_argument('--flops', action='store_true', help='also count GFLOPs (mmengine.analysis, tensor mode)')
    parser.add_argument('--work-dir', help='write lzu_benchmark.json here (single config)')
    parser.add_argument('--work-dirs', nargs='+', help='one work dir per config for lzu_benchmark.json')
    parser.add_argument('--json', help='write all results to this JSON file')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config settings, key=value')
    args = parser.parse_args(argv)
    if args.warmup < 0 or args.repeat < 1:
        parser.error(f'--warmup must be >= 0 and --repeat >= 1, got {args.warmup} and {args.repeat}')
    if args.work_dir and len(args.configs) != 1:
        parser.error('--work-dir takes a single config; use --work-dirs with one dir per config')
    if args.work_dirs and len(args.work_dirs) != len(args.configs):
        parser.error(f'--work-dirs needs one dir per config ({len(args.configs)}), got {len(args.work_dirs)}')
    return args


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def time_ms(fn: Callable, device: torch.device, warmup: int, repeat: int) -> dict:
    """Median and quartiles (ms) of ``fn()`` over ``repeat`` runs after ``warmup`` runs (device-synchronised)."""
    with torch.no_grad():
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(repeat):
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            times.append((time.perf_counter() - start) * 1e3)
    q1, med, q3 = np.percentile(times, [25, 50, 75])
    return dict(median=float(med), q1=float(q1), q3=float(q3), iqr=float(q3 - q1), n=len(times))


def _find_dataset_type(cfg) -> str:
    loader = cfg.get('test_dataloader', None) or {}
    ds = loader.get('dataset', {}) if loader else {}
    names = []
    while isinstance(ds, dict) and ds:
        names.append(str(ds.get('type', '')))
        ds = ds.get('dataset', {})
    return ' '.join(names + [str(cfg.get('dataset_type', ''))]).lower()


def default_ori_shape(cfg, config_path: str):
    """Original image size of the config's dataset (paper §5), or raise asking for ``--ori-shape``."""
    kind = _find_dataset_type(cfg) + ' ' + osp.basename(config_path).lower()
    for key, shape in DATASET_SHAPES:
        if key in kind:
            return shape
    raise SystemExit(f'{config_path}: cannot tell the original image size from the dataset type; pass --ori-shape H W')


def build_model(cfg, device: torch.device):
    """The config's model with random weights (no checkpoint, no pretrained init), in eval mode."""
    from mmengine.registry import MODELS

    model = MODELS.build(ConfigDict(without_pretrained(cfg.model.to_dict())))
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel(logging.WARNING)  # init_weights logs every parameter
    try:
        model.init_weights()
    finally:
        logger.setLevel(level)
    return model.to(device).eval()


def _packer(cfg):
    from mmengine.registry import TRANSFORMS

    packs = [t for t in config_test_pipeline(cfg) if 'pack' in str(t.get('type', '')).lower()]
    if not packs:
        raise SystemExit('the test pipeline has no packing transform (Pack*Inputs)')
    return TRANSFORMS.build(packs[-1])


def make_batch(cfg, model, found, ori_shape, image: Optional[np.ndarray], seed: int = 0):
    """One preprocessed batch (``data_preprocessor`` output) and the full-resolution original tensor."""
    from mmengine.dataset import pseudo_collate

    h0, w0 = ori_shape
    if image is None:
        image = np.random.default_rng(seed).integers(0, 256, (h0, w0, 3), dtype=np.uint8)
    elif image.shape[:2] != (h0, w0):
        image = uniform_resize(image, (h0, w0))
    image = image_before_zoom(cfg, image, 'benchmark.jpg')  # e.g. a centre crop before the zoom
    h0, w0 = image.shape[:2]
    out_shape = found.out_shape((h0, w0))
    sx, sy = out_shape[1] / w0, out_shape[0] / h0
    results = dict(img_path='benchmark.jpg', img_id=0, sample_idx=0, ori_shape=(h0, w0), img_shape=out_shape,
                   scale_factor=(sx, sy), keep_ratio=True, flip=False, flip_direction=None,
                   pad_shape=out_shape, batch_input_shape=out_shape,
                   homography_matrix=np.diag([sx, sy, 1.0]).astype(np.float32))
    if found.where == 'pipeline':
        rec = found.warp
        results['img'] = zoom_image(image, rec.grid()[0].double(), out_shape)
        results['lzu_zoom'] = dict(grid=rec.grid()[0].numpy().astype(np.float32), separable=bool(rec.separable),
                                   attraction_fwhm=float(rec.attraction_fwhm), anti_crop=bool(rec.anti_crop),
                                   saliency=found.saliency_path)
    else:
        results['img'] = uniform_resize(image, out_shape)
    if cfg.get('default_scope', None) == 'mmdet3d':  # mono-3D heads decode with the intrinsics and box type
        from mmdet3d.structures import get_box_type
        box_type = str(cfg.get('test_dataloader', {}).get('dataset', {}).get('box_type_3d', 'Camera'))
        focal = 0.8 * w0  # a plausible pinhole camera; the values do not change the cost
        k = np.array([[focal * sx, 0, w0 / 2 * sx, 0], [0, focal * sy, h0 / 2 * sy, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
        results.update(cam2img=k.tolist(), box_type_3d=get_box_type(box_type)[0], box_mode_3d=get_box_type(box_type)[1],
                       cam2lidar=np.eye(4).tolist(), lidar2cam=np.eye(4).tolist(), depth2img=k.tolist())
    packed = _packer(cfg)(results)
    data = model.data_preprocessor(pseudo_collate([packed]), False)
    full = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
    return data, full, out_shape


class _TensorForward(torch.nn.Module):
    """``model._forward`` (tensor mode) as a function of the image batch only, for jit tracing."""

    def __init__(self, model, data):
        super().__init__()
        self.model = model
        self.samples = data['data_samples']
        inputs = data['inputs']
        self.key = None if torch.is_tensor(inputs) else next(k for k, v in inputs.items() if torch.is_tensor(v))

    def forward(self, img):
        return self.model._forward(img if self.key is None else {self.key: img}, self.samples)


def count_gflops(model, data) -> Optional[float]:
    """GFLOPs (1 FLOP = 1 multiply-add) of the tensor-mode forward, or None if the model cannot be traced.

    Counted with ``mmengine.analysis.FlopAnalyzer`` after a warm-up (the fixed
    warp's grids are cached, not per-image costs); the unzoom's bilinear
    gathers (:func:`lzu_mm.ops.sample_bilinear`) count 1 FLOP per gathered
    element, i.e. 4 per output element like ``grid_sample``. The zoom / resize
    of the pipeline (about 4 FLOPs per zoomed pixel and channel) is not included.
    """
    try:
        from mmengine.analysis import FlopAnalyzer
        from mmengine.analysis.jit_handles import elementwise_flop_counter

        wrapper = _TensorForward(model, data).eval()
        inputs = data['inputs'] if wrapper.key is None else data['inputs'][wrapper.key]
        with torch.no_grad():
            wrapper(inputs)
            analyzer = FlopAnalyzer(wrapper, (inputs, ))
            analyzer.set_op_handle('aten::gather', elementwise_flop_counter(0, 1))
            analyzer.unsupported_ops_warnings(False)
            analyzer.uncalled_modules_warnings(False)
            return float(analyzer.total()) / 1e9
    except Exception as exc:  # noqa: BLE001 - tracing is best effort; report and continue
        print(f'  (GFLOPs not counted: {type(exc).__name__}: {exc})')
        return None


def benchmark_config(config: str, args, device: torch.device) -> dict:
    from mmengine.registry import init_default_scope

    cfg = Config.fromfile(config)
    # lzu_zoom / --saliency into every zoom transform and model.lzu (uniform configs in the list keep theirs)
    merge_cfg_options(cfg, args.cfg_options, args.saliency, saliency_required=False)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    found = warp_from_config(cfg)
    ori_shape = tuple(args.ori_shape) if args.ori_shape else default_ori_shape(cfg, config)
    image = None
    if args.img:
        from lzu_mm.visualization.hook import read_rgb
        image = read_rgb(args.img)
    model = build_model(cfg, device)
    data, full, out_shape = make_batch(cfg, model, found, ori_shape, image)
    ori_shape = tuple(full.shape[-2:])
    full = full.to(device)

    # one forward to see what the model unzooms (shapes, cached warp, valid/pad shapes)
    captured = []
    if hasattr(model, 'lzu_unzoom'):
        unzoom = model.lzu_unzoom

        def spy(feats, state=None):
            flat = [feats] if torch.is_tensor(feats) else list(feats)
            captured.append(([tuple(f.shape) for f in flat], state or model._lzu_state))
            return unzoom(feats, state)

        model.lzu_unzoom = spy
    with torch.no_grad():
        model(**data, mode='predict')
    if hasattr(model, 'lzu_unzoom'):
        del model.lzu_unzoom  # back to the class method

    forward = time_ms(lambda: model(**data, mode='predict'), device, args.warmup, args.repeat)
    zoom_t = unzoom_t = None
    if captured:
        shapes, state = captured[0]
        feats = [torch.randn(s, device=device) for s in shapes]
        unzoom_t = time_ms(lambda: model.lzu_unzoom(feats, state), device, args.warmup, args.repeat)
        warp = state.warp if state.warp is not None else found.warp
        if found.where == 'model':
            batch = data['inputs'] if torch.is_tensor(data['inputs']) else model._lzu_images(data['inputs'])
            zoom_t = time_ms(lambda: warp.zoom(batch, state.pad_shape, img_shapes=state.img_shapes,
                                               out_img_shapes=state.img_shapes), device, args.warmup, args.repeat)
        else:
            zoom_t = time_ms(lambda: warp.zoom(full, out_shape), device, args.warmup, args.repeat)
    added = (zoom_t['median'] + unzoom_t['median']) if captured else 0.0
    latency = forward['median'] + (zoom_t['median'] if captured and found.where == 'pipeline' else 0.0)
    result = dict(config=osp.abspath(config), name=osp.splitext(osp.basename(config))[0],
                  task=cfg.get('default_scope', None), device=str(device), lzu=bool(captured),
                  warp_from=found.where if captured else 'none', ori_shape=list(ori_shape), input_shape=list(out_shape),
                  feature_shapes=[list(s) for s in captured[0][0]] if captured else [], forward_ms=forward,
                  zoom_ms=zoom_t, unzoom_ms=unzoom_t, added_ms=added, added_fraction=added / forward['median'],
                  latency_ms=latency, warmup=args.warmup, repeat=args.repeat, torch=torch.__version__,
                  threads=torch.get_num_threads())
    if args.flops:
        result['gflops'] = count_gflops(model, data)
    return result


def _fmt(t: Optional[dict]) -> str:
    return '-' if t is None else f"{t['median']:.2f} ±{t['iqr'] / 2:.2f}"


def print_table(results: List[dict]) -> None:
    """Table 1 / 3 / 5-style latency columns (ms, median ± half the IQR)."""
    head = ['config', 'device', 'input HxW', 'forward ms', 'zoom ms', 'unzoom ms', 'added ms', 'added/forward',
            'latency ms']
    rows = [[r['name'], r['device'], 'x'.join(map(str, r['input_shape'])), _fmt(r['forward_ms']), _fmt(r['zoom_ms']),
             _fmt(r['unzoom_ms']), f"{r['added_ms']:.2f}" if r['lzu'] else '-',
             f"{100 * r['added_fraction']:.2f}%" if r['lzu'] else '-', f"{r['latency_ms']:.1f}"] for r in results]
    if any('gflops' in r for r in results):
        head.append('GFLOPs')
        for row, r in zip(rows, results):
            row.append('-' if r.get('gflops') is None else f"{r['gflops']:.1f}")
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    for row in [head, ['-' * w for w in widths]] + rows:
        print(' | '.join(str(x).ljust(w) for x, w in zip(row, widths)))


def write_work_dir(work_dir: str, results: List[dict]) -> str:
    os.makedirs(work_dir, exist_ok=True)
    path = osp.join(work_dir, BENCHMARK_JSON)
    with open(path, 'w') as f:
        json.dump(dict(results=results), f, indent=2)
    return path


def main(argv=None) -> List[dict]:
    args = parse_args(argv)
    devices = args.device or (['cpu'] + (['cuda'] if torch.cuda.is_available() else []))
    results = []
    for k, config in enumerate(args.configs):
        per_config = []
        for dev in devices:
            device = torch.device(dev)
            if device.type == 'cuda' and not torch.cuda.is_available():
                raise SystemExit('--device cuda given but CUDA is not available')
            print(f'benchmarking {config} on {device} ...', flush=True)
            r = benchmark_config(config, args, device)
            per_config.append(r)
            added = f", added {r['added_ms']:.2f} ms = {100 * r['added_fraction']:.2f}% of it" if r['lzu'] else ''
            print(f"  forward {r['forward_ms']['median']:.1f} ms{added}", flush=True)
        results.extend(per_config)
        work_dir = args.work_dir or (args.work_dirs[k] if args.work_dirs else None)
        if work_dir:
            print(f'  wrote {write_work_dir(work_dir, per_config)}')
    print_table(results)
    if args.json:
        os.makedirs(osp.dirname(osp.abspath(args.json)), exist_ok=True)
        with open(args.json, 'w') as f:
            json.dump(dict(results=results), f, indent=2)
    return results


if __name__ == '__main__':
    main()
