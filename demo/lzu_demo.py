"""Save the LZU panel figure for one image.

    python demo/lzu_demo.py IMAGE CONFIG [CHECKPOINT] [--out-dir DIR] [--saliency FILE]
                            [--device cpu] [--score-thr 0.3] [--max-side 800]
                            [--ann-file INFO.pkl --cam-type CAM_FRONT]   # MMDetection3D with a checkpoint
                            [--cfg-options k=v ...]

The warp is the config's: its pipeline zoom transform (``saliency``,
``grid_shape``, ... arguments) or, when the model zooms, ``model.lzu``; the
zoomed size is what the config's resize gives this image (any image size
works); test-pipeline transforms before the zoom (e.g. a centre crop) are
applied first. ``--saliency FILE`` (or ``--cfg-options lzu_zoom.saliency=FILE``)
replaces the config's saliency file (:mod:`lzu_mm.common.config`). With a
checkpoint saved by ``tools/train.py``, saliency files missing on this machine
are read from the checkpoint (:mod:`lzu_mm.common.checkpoint_warp`).
Without a checkpoint only the warp panels are drawn (saliency, zoomed image,
sampling grid, magnification, unzoom(zoom(image))); with one, the
model's predictions on the original image are added, painted by the
framework's visualizer that the config's ``visualizer`` entry names
(``DetLocalVisualizer``, ``SegLocalVisualizer``, ``Det3DLocalVisualizer``;
MMDetection3D mono-3D needs ``--ann-file`` for the intrinsics). Writes into ``--out-dir`` (default
``work_dirs/lzu_demo/<image name>``): ``panels.png`` (the figure),
``zoomed.png``, ``unzoomed.png``, ``uncovered.png``, ``magnification.npy`` and
``summary.json``.
"""
import argparse
import json
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout without installing

from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

import lzu_mm  # noqa: E402

lzu_mm.register_all_modules()  # the plugin's modules and the checkpoint allow-list
from lzu_mm.common.checkpoint_warp import config_saliency_sites, register_checkpoint_warps  # noqa: E402
from lzu_mm.common.config import add_lzu_arguments, merge_cfg_options  # noqa: E402
from lzu_mm.ops import LZWarp, uniform_saliency  # noqa: E402
from lzu_mm.visualization import (build_framework_visualizer, compute_warp_panels, paint_predictions,  # noqa: E402
                                  predictions_note, save_panels, summarize_predictions)
from lzu_mm.visualization.config_warp import image_before_zoom, warp_from_config  # noqa: E402
from lzu_mm.visualization.hook import read_rgb  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Save the LZU panel figure (warp, magnification, unzoom, '
                                     'predictions) for one image')
    parser.add_argument('image', help='image file')
    parser.add_argument('config', help='config file (its zoom transform or model.lzu gives the warp)')
    parser.add_argument('checkpoint', nargs='?', default=None, help='checkpoint; without it: warp panels only')
    parser.add_argument('--out-dir', help='directory for panels.png and the raw panels (default: '
                        'work_dirs/lzu_demo/<image name>)')
    parser.add_argument('--device', default='cpu', help='device for the model (with a checkpoint)')
    parser.add_argument('--score-thr', type=float, default=0.3, help='boxes below this score are not drawn')
    parser.add_argument('--max-side', type=int, default=800, help='longest side of the original-image panels, px')
    parser.add_argument('--ann-file', help='MMDetection3D info file with the camera intrinsics of IMAGE')
    parser.add_argument('--cam-type', default='CAM_FRONT', help='MMDetection3D camera of IMAGE in --ann-file')
    add_lzu_arguments(parser, data=False)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config settings, key=value')
    args = parser.parse_args(argv)
    if args.out_dir is None:
        args.out_dir = osp.join('work_dirs', 'lzu_demo', osp.splitext(osp.basename(args.image))[0])
    return args


def _annotation_step(t) -> bool:
    """A test-pipeline step that needs ground truth (absent for a single image)."""
    keys = t.get('keys', None)
    if 'annotation' in str(t.get('type', '')).lower():
        return True
    return isinstance(keys, (list, tuple)) and bool(keys) and all(str(k).startswith('gt_') for k in keys)


def without_annotation_steps(cfg) -> None:
    """Drop the ground-truth loading / processing steps of the test pipelines, in place."""
    if cfg.get('test_pipeline', None) is not None:
        cfg.test_pipeline = [t for t in cfg.test_pipeline if not _annotation_step(t)]
    dataset = cfg.get('test_dataloader', {}).get('dataset', {})
    if dataset.get('pipeline', None) is not None:
        dataset.pipeline = [t for t in dataset.pipeline if not _annotation_step(t)]


def predict(cfg, args, image_path: str):
    """Run the checkpoint on the image with the framework's inference API; returns ``(data sample, dataset_meta)``."""
    cfg = cfg.copy()
    without_annotation_steps(cfg)
    scope = cfg.get('default_scope', None)
    if scope == 'mmdet':
        from mmdet.apis import inference_detector, init_detector
        model = init_detector(cfg, args.checkpoint, device=args.device)
        result = inference_detector(model, image_path)
    elif scope == 'mmseg':
        from mmseg.apis import inference_model, init_model
        model = init_model(cfg, args.checkpoint, device=args.device)
        result = inference_model(model, image_path)
    elif scope == 'mmdet3d':
        if not args.ann_file:
            raise SystemExit('MMDetection3D mono-3D inference needs the camera intrinsics: pass --ann-file '
                             '(an info .pkl holding IMAGE) and --cam-type')
        from mmdet3d.apis import inference_mono_3d_detector, init_model
        model = init_model(cfg, args.checkpoint, device=args.device)
        result = inference_mono_3d_detector(model, image_path, args.ann_file, cam_type=args.cam_type)
    else:
        raise SystemExit(f'unknown default_scope {scope!r} in the config; expected mmdet, mmseg or mmdet3d')
    return result, getattr(model, 'dataset_meta', None) or {}


def paint(cfg, image, result, dataset_meta: dict, score_thr: float):
    """``(painted image, visualizer class name)``: the config's visualizer paints the predictions on ``image``."""
    visualizer = build_framework_visualizer(cfg, dataset_meta)
    if visualizer is None:
        raise SystemExit('the config has no `visualizer` entry to draw the predictions with, e.g. '
                         "visualizer=dict(type='DetLocalVisualizer')")
    return paint_predictions(visualizer, image, result, score_thr), type(visualizer).__name__


def main(argv=None):
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if not osp.isfile(args.image):
        raise SystemExit(f'image {args.image!r} does not exist')
    merge_cfg_options(cfg, args.cfg_options, args.saliency)  # lzu_zoom / --saliency into every zoom and model.lzu
    init_default_scope(cfg.get('default_scope', None) or 'mmengine')
    if args.checkpoint and any(not osp.isfile(site['saliency']) for site in config_saliency_sites(cfg)):
        register_checkpoint_warps(args.checkpoint)  # saliency files this machine lacks: from the checkpoint
    image = image_before_zoom(cfg, read_rgb(args.image), args.image)  # e.g. a centre crop before the zoom
    found = warp_from_config(cfg)
    out_shape = found.out_shape(image.shape[:2])
    warp = found.warp
    if warp is None:
        print(f'{args.config}: no LZ warp (no zoom transform, no model.lzu): showing the uniform resize')
        warp = LZWarp(uniform_saliency((2, 2)))
    panels = compute_warp_panels(image, warp.grid()[0].double(), out_shape, warp.saliency[0, 0], warp.separable,
                                 args.max_side, warp.align_corners)
    painted = painted_by = drawn = None
    if args.checkpoint:
        result, dataset_meta = predict(cfg, args, args.image)
        painted, painted_by = paint(cfg, image, result, dataset_meta, args.score_thr)
        drawn = summarize_predictions(result, args.score_thr) or dict()
    title = (f'{osp.basename(args.image)}: {osp.basename(args.config)} (warp from the {found.where}; '
             f'{image.shape[1]}×{image.shape[0]} → {out_shape[1]}×{out_shape[0]})')
    paths = save_panels(panels, args.out_dir, painted, title=title, show_predictions=bool(args.checkpoint),
                        predictions_by=painted_by, predictions_note=None if drawn is None else predictions_note(drawn))
    summary = dict(warp_from=found.where, **panels.summary())
    if args.checkpoint:
        summary['predictions'] = {'num_boxes': 0, 'num_below_score_thr': 0, 'score_thr': args.score_thr, **drawn}
        if drawn.get('num_boxes') == 0 and drawn.get('num_below_score_thr'):
            print(f"no object scored above --score-thr {args.score_thr:g} ({drawn['num_below_score_thr']} below it); "
                  'lower --score-thr to draw them')
    with open(paths['summary'], 'w') as f:
        json.dump(summary, f, indent=2)
    print(json.dumps(dict(files=paths, **summary), indent=2))
    return paths


if __name__ == '__main__':
    main()
