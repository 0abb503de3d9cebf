"""Per-frame cost that adaptive saliency adds over fixed LZU, at every scale (LZU §5, Table 1 "LZU, adaptive").

    python tools/analysis_tools/benchmark_adaptive.py [CONFIG] [--scales 0.25 0.5 0.75 1]
        [--ori-shape 1200 1920] [--num-boxes 100] [--warmup 5] [--repeat 50] [--threads 1]
        [--device cpu cuda] [--forward] [--json out.json] [--cfg-options k=v ...]

A fixed warp computes its saliency, LZ grid, zoom sampling grid and unzoom
grids once and caches them (``LZWarp``); both fixed and adaptive LZU then
resample the image and every FPN level per frame. An adaptive warp must, for
every frame, additionally compute (nothing cached), exactly as
``AdaptiveSaliencyMixin`` does:

* ``saliency``: FOVEA's KDE of ``--num-boxes`` previous-frame detections in
  source pixels (``model.lzu_saliency``; default 100 = RetinaNet's
  ``max_per_img``, the most a frame can hand on);
* ``grid``: the LZ grid (``saliency_to_grid``);
* ``zoom grid``: the sampling grid that zooms the full-resolution source
  into the padded network input (per axis for a separable warp);
* ``unzoom grids``: the inversion and the sampling grids of every FPN level
  (``unzoom_positions`` + ``sampling_grid``, the model's strides and settings).

``added`` is their sum, timed as one per-frame call. With ``--forward`` the
config's whole forward pass (random weights, batch 1, ``mode='predict'``, the
zoom of a ``ResizeWithSource`` sample included) is timed too and ``added`` is
given as a fraction of it. Times are medians with the interquartile range over
``--repeat`` runs after ``--warmup`` runs, at ``--threads`` torch threads
(default 1: on a shared machine more threads make every op 10-40x noisier);
CUDA timings synchronise around each run.
"""
import argparse
import importlib.util
import json
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))  # run from a checkout

import mmcv  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmengine.config import Config, DictAction  # noqa: E402

import lzu_mm  # noqa: E402

lzu_mm.register_all_modules()  # the plugin's modules and registries
from lzu_mm.ops import saliency_to_grid, sampling_grid, unzoom_positions  # noqa: E402
from lzu_mm.ops.warp import zoom_sampling_grid  # noqa: E402

DEFAULT_CONFIG = 'configs/lzu_retinanet/retinanet_r50_fpn_lzu-adaptive_3e_argoverse-hd-0.5x.py'
PARTS = ('saliency', 'grid', 'zoom_grid', 'unzoom_grids')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Per-frame added cost of adaptive over fixed LZU')
    parser.add_argument('config', nargs='?', default=DEFAULT_CONFIG, help='an adaptive-saliency config')
    parser.add_argument('--scales', type=float, nargs='+', default=[0.25, 0.5, 0.75, 1.0],
                        help='network input as a fraction of the original size')
    parser.add_argument('--ori-shape', type=int, nargs=2, default=(1200, 1920), metavar=('H', 'W'),
                        help='original (source) image size (default: Argoverse-HD 1200 1920)')
    parser.add_argument('--num-boxes', type=int, default=100, help='previous-frame detections per frame')
    parser.add_argument('--warmup', type=int, default=5)
    parser.add_argument('--repeat', type=int, default=50, help='timed runs (median and IQR over them)')
    parser.add_argument('--forward-repeat', type=int, default=5, help='timed runs of the forward pass')
    parser.add_argument('--threads', type=int, default=1, help='torch threads (default 1)')
    parser.add_argument('--device', nargs='+', default=None, help='default: cpu, and cuda when available')
    parser.add_argument('--forward', action='store_true', help="also time the config's forward pass")
    parser.add_argument('--json', help='write the results to this JSON file')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config settings, key=value')
    args = parser.parse_args(argv)
    if args.warmup < 0 or args.repeat < 1 or args.forward_repeat < 1 or args.num_boxes < 0 or args.threads < 1:
        parser.error('--warmup >= 0, --repeat / --forward-repeat / --threads >= 1 and --num-boxes >= 0 expected')
    return args


def _load_benchmark_lzu():
    """``benchmark_lzu.py`` beside this file: its ``time_ms`` and ``build_model`` (random weights, no pretrained)."""
    path = osp.join(osp.dirname(osp.abspath(__file__)), 'benchmark_lzu.py')
    spec = importlib.util.spec_from_file_location('lzu_benchmark_lzu', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_lzu = _load_benchmark_lzu()
time_ms = _lzu.time_ms  # median and quartiles over repeats, device-synchronised
build_model = _lzu.build_model  # the config's model with random weights, eval mode


def detections(num: int, shape, seed: int = 0) -> torch.Tensor:
    """``[num, 4]`` plausible boxes in pixels of an image of ``shape`` (H, W): 10-400 px wide."""
    rng = np.random.default_rng(seed)
    h, w = shape
    size = rng.uniform(10, 400, (num, 2)) * [1, 0.6]
    centre = rng.uniform(0, 1, (num, 2)) * [w, h]
    return torch.from_numpy(np.concatenate([centre - size / 2, centre + size / 2], 1))


def frame_geometry(cfg, model, ori_shape, scale):
    """``(img_shape, pad_shape, level shapes, strides)`` of the network input at ``scale`` (keep-ratio Resize)."""
    h0, w0 = ori_shape
    new_w, new_h = mmcv.rescale_size((w0, h0), (int(round(w0 * scale)), int(round(h0 * scale))))
    divisor = int(cfg.model.data_preprocessor.get('pad_size_divisor', 1) or 1)
    pad = (-(-new_h // divisor) * divisor, -(-new_w // divisor) * divisor)
    strides = [s[0] if isinstance(s, (tuple, list)) else s for s in model.bbox_head.prior_generator.strides]
    levels = [(-(-pad[0] // s), -(-pad[1] // s)) for s in strides]
    return (new_h, new_w), pad, levels, strides


def adaptive_parts(model, boxes, ori_shape, img_shape, pad, levels, strides, device):
    """The per-frame functions of the adaptive warp (:mod:`lzu_mm.common.adaptive`), one per part."""
    state = {}
    separable, align = model._lzu_separable, model._lzu_align_corners

    def saliency():
        state['saliency'] = model.lzu_saliency([boxes], [ori_shape], device)

    def grid():
        state['grid'] = saliency_to_grid(state['saliency'], separable, model._lzu_attraction_fwhm,
                                         model._lzu_anti_crop)

    def zoom_grid():
        zoom_sampling_grid(state['grid'], ori_shape, pad, 1, [ori_shape], [img_shape], torch.float32, align,
                           separable)

    def unzoom_grids():
        positions = unzoom_positions(state['grid'], levels, [img_shape], pad, separable, model._lzu_exact,
                                     model._lzu_clamp, model._lzu_strides or strides, align, model._lzu_cell_centre)
        [sampling_grid(p, s, torch.float32) for p, s in zip(positions, levels)]

    return dict(saliency=saliency, grid=grid, zoom_grid=zoom_grid, unzoom_grids=unzoom_grids)


def forward_batch(cfg, model, ori_shape, img_shape, boxes):
    """A ``ResizeWithSource`` sample of a random image, preprocessed, whose previous frame had ``boxes``."""
    from mmengine.dataset import pseudo_collate
    from mmengine.registry import TRANSFORMS

    image = np.random.default_rng(0).integers(0, 256, (*ori_shape, 3), dtype=np.uint8)
    results = dict(img=image, img_shape=ori_shape, ori_shape=ori_shape, img_id=1, img_path='benchmark.jpg', sid=0,
                   fid=1)
    pack = [t for t in cfg.test_pipeline if t['type'] == 'PackDetInputs'][-1]
    for step in (dict(type='ResizeWithSource', scale=img_shape[::-1], keep_ratio=True), pack):
        results = TRANSFORMS.build(step)(results)
    data = model.data_preprocessor(pseudo_collate([results]), False)
    memory = dict(fid=0, img_id=0, bboxes=boxes, scores=torch.ones(len(boxes)))
    return data, memory


def benchmark(cfg, args, device) -> list:
    from mmengine.registry import init_default_scope
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    model = build_model(cfg, device)
    ori_shape = tuple(args.ori_shape)
    boxes = detections(args.num_boxes, ori_shape).to(device)
    rows = []
    for scale in args.scales:
        img_shape, pad, levels, strides = frame_geometry(cfg, model, ori_shape, scale)
        parts = adaptive_parts(model, boxes, ori_shape, img_shape, pad, levels, strides, device)
        timed = {}
        for name in PARTS:  # each part after the ones it needs
            timed[name] = time_ms(parts[name], device, args.warmup, args.repeat)

        def frame():
            for name in PARTS:
                parts[name]()

        added = time_ms(frame, device, args.warmup, args.repeat)
        row = dict(scale=scale, device=str(device), threads=torch.get_num_threads(), input_shape=list(img_shape),
                   pad_shape=list(pad), feature_shapes=[list(s) for s in levels], num_boxes=args.num_boxes,
                   added_ms=added, **{f'{k}_ms': v for k, v in timed.items()})
        if args.forward:
            data, memory = forward_batch(cfg, model, ori_shape, img_shape, boxes)

            sample = data['data_samples'][0]
            record = sample.lzu_zoom  # with the source image, which the forward takes out of the metainfo

            def run():
                model._lzu_online = {0: dict(memory)}  # frame 1 of sequence 0 uses these detections
                sample.set_field(record, 'lzu_zoom', field_type='metainfo')  # not copied: no cost
                model(**data, mode='predict')

            row['forward_ms'] = time_ms(run, device, 1, args.forward_repeat)
            row['added_fraction'] = added['median'] / row['forward_ms']['median']
        rows.append(row)
        print(f"  {scale}x {'x'.join(map(str, img_shape))}: added {added['median']:.2f} ms "
              f"[IQR {added['q1']:.2f}-{added['q3']:.2f}]", flush=True)
    return rows


def _fmt(t) -> str:
    return '-' if t is None else f"{t['median']:.2f} [{t['q1']:.2f}, {t['q3']:.2f}]"


def print_table(rows) -> None:
    head = ['scale', 'device', 'input HxW', 'saliency', 'grid', 'zoom grid', 'unzoom grids', 'added ms',
            'forward ms', 'added/forward']
    table = [[f"{r['scale']}x", r['device'], 'x'.join(map(str, r['input_shape'])), _fmt(r['saliency_ms']),
              _fmt(r['grid_ms']), _fmt(r['zoom_grid_ms']), _fmt(r['unzoom_grids_ms']), _fmt(r['added_ms']),
              _fmt(r.get('forward_ms')), f"{100 * r['added_fraction']:.2f}%" if 'added_fraction' in r else '-']
             for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *table)]
    print('ms: median [first quartile, third quartile]')
    for row in [head, ['-' * w for w in widths]] + table:
        print(' | '.join(str(x).ljust(w) for x, w in zip(row, widths)))


def main(argv=None) -> list:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    devices = args.device or (['cpu'] + (['cuda'] if torch.cuda.is_available() else []))
    rows = []
    for dev in devices:
        device = torch.device(dev)
        if device.type == 'cuda' and not torch.cuda.is_available():
            raise SystemExit('--device cuda given but CUDA is not available')
        print(f'benchmarking {args.config} on {device}, {torch.get_num_threads()} thread(s), '
              f'{args.num_boxes} boxes per frame ...', flush=True)
        rows.extend(benchmark(cfg, args, device))
    print_table(rows)
    if args.json:
        os.makedirs(osp.dirname(osp.abspath(args.json)), exist_ok=True)
        with open(args.json, 'w') as f:
            json.dump(dict(config=args.config, torch=torch.__version__, results=rows), f, indent=2)
    return rows


if __name__ == '__main__':
    main()
