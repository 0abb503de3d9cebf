"""Test (evaluate) a checkpoint from a config with mmengine's Runner.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out results.pkl] [--tta]
                         [--show] [--wait-time SECONDS] [--show-dir DIR] [--saliency FILE]
                         [--data-root DIR [--ann-file FILE]]
                         [--cfg-options k=v ...] [--launcher pytorch]

Works for MMDetection, MMSegmentation and MMDetection3D configs; the metrics are
the config's ``test_evaluator``. Registering the plugin lets mmengine's
checkpoint loaders read the checkpoints mmengine writes (numpy objects in
``meta`` / ``message_hub``) under torch >= 2.6, without switching the safe
unpickler off (:mod:`lzu_mm.common.checkpoint`, scoped to those loads).

As in ``tools/train.py``, ``--saliency`` / ``--cfg-options lzu_zoom.*`` reach
every zoom transform and ``model.lzu``, ``--data-root`` / ``--ann-file`` every
dataloader and evaluator (:mod:`lzu_mm.common.config`). Saliency files the
config names but this machine lacks are read from the checkpoint, if
``tools/train.py`` stored them there (:mod:`lzu_mm.common.checkpoint_warp`). The metrics are written
by mmengine to ``<work_dir>/<timestamp>/<timestamp>.json``; evaluator outputs
given as a relative ``output_dir`` (e.g. the Cityscapes metric's
``format_results``) go under the work dir.

``--show`` / ``--wait-time`` / ``--show-dir`` follow MMDetection's,
MMSegmentation's and MMDetection3D's ``tools/test.py``: they switch on the
config's ``default_hooks.visualization`` (``DetVisualizationHook``,
``SegVisualizationHook`` or ``Det3DVisualizationHook``) with ``draw=True``;
``--show`` opens a window per test image for ``wait_time`` seconds,
``--show-dir`` saves the painted images under
``<work_dir>/<timestamp>/<show_dir>`` (MMDetection, MMDetection3D) or, as
MMSegmentation's tool does, under ``<show_dir>/vis_data/vis_image``. The PSPNet configs,
which centre-crop the Cityscapes frame, draw with ``LZUSegLocalVisualizer``: the hook's
re-read frame is cut to the recorded ``crop_box`` before mmseg paints the predictions.
"""
import argparse
import inspect
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout without installing

from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.registry import HOOKS, RUNNERS  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

import lzu_mm  # noqa: E402

lzu_mm.register_all_modules()  # the plugin's modules and the checkpoint allow-list
from lzu_mm.common import check_lzu_config, use_tta  # noqa: E402
from lzu_mm.common.checkpoint_warp import config_saliency_sites, register_checkpoint_warps  # noqa: E402
from lzu_mm.common.config import add_lzu_arguments, prepare_tool_cfg  # noqa: E402
from lzu_mm.common.distributed import setup_cpu_distributed  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test (and evaluate) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the directory to save the evaluation metrics')
    parser.add_argument('--out', help='dump the raw predictions to this pickle file')
    parser.add_argument('--tta', action='store_true',
                        help='test-time augmentation: tta_model around the model on tta_pipeline (a zoom per view)')
    parser.add_argument('--show', action='store_true', help='show the predictions in a window (needs a display)')
    parser.add_argument('--wait-time', type=float, default=2, help='seconds each --show window stays open')
    parser.add_argument('--show-dir',
                        help='save painted predictions into this directory (mmdet / mmdet3d: under the work dir)')
    add_lzu_arguments(parser)
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, key=value pairs (e.g. test_dataloader.dataset.indices=4)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def _hook_accepts(cfg: Config, hook: dict, argument: str) -> bool:
    """Whether the (registered) class of a hook config takes ``argument`` in its constructor."""
    hook_type = hook['type']
    if isinstance(hook_type, str):
        scope = hook.get('_scope_', cfg.get('default_scope'))
        hook_type = HOOKS.get(hook_type if '.' in hook_type or not scope else f'{scope}.{hook_type}')
    return hook_type is not None and argument in inspect.signature(hook_type.__init__).parameters


def trigger_visualization_hook(cfg: Config, args) -> None:
    """Switch on ``default_hooks.visualization`` for ``--show`` / ``--show-dir``, as the frameworks' test tools do.

    ``draw=True``; ``--show``: ``show=True`` and ``wait_time``; ``--show-dir``:
    the hook's ``test_out_dir`` where it has one (MMDetection,
    MMDetection3D: ``<work_dir>/<timestamp>/<show_dir>``), else the
    visualizer's ``save_dir`` (MMSegmentation's ``SegVisualizationHook``:
    ``<show_dir>/vis_data/vis_image``, relative to the current directory).

    Raises:
        RuntimeError: the config has no ``visualization`` entry in ``default_hooks``.
    """
    hooks = cfg.get('default_hooks', {})
    if 'visualization' not in hooks:
        raise RuntimeError('--show / --show-dir need a visualization hook in default_hooks, e.g. '
                           "visualization=dict(type='DetVisualizationHook')")
    hook = hooks['visualization']
    hook['draw'] = True
    if args.show:
        hook['show'] = True
        hook['wait_time'] = args.wait_time
    if args.show_dir:
        if _hook_accepts(cfg, hook, 'test_out_dir'):
            hook['test_out_dir'] = args.show_dir
        else:
            cfg.visualizer['save_dir'] = args.show_dir


def build_cfg(args) -> Config:
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    prepare_tool_cfg(cfg, args, args.config)
    cfg.load_from = args.checkpoint
    if args.tta:
        use_tta(cfg)
    if args.show or args.show_dir:
        trigger_visualization_hook(cfg, args)
    if args.out is not None:
        if not args.out.endswith(('.pkl', '.pickle')):
            raise ValueError(f'--out must be a .pkl/.pickle file, got {args.out!r}')
        evaluator = cfg.test_evaluator
        dump = dict(type='DumpResults', out_file_path=args.out)
        cfg.test_evaluator = (list(evaluator) if isinstance(evaluator, (list, tuple)) else [evaluator]) + [dump]
    return cfg


def register_missing_saliency(cfg: Config, checkpoint: str) -> None:
    """Saliency files the config names but this machine lacks come from the checkpoint (LZUCheckpointHook).

    The Runner builds the test pipeline (and its zoom) before it loads the checkpoint: read the checkpoint's warp
    record first, only when a file is missing (:mod:`lzu_mm.common.checkpoint_warp`).
    """
    if any(not osp.isfile(site['saliency']) for site in config_saliency_sites(cfg)):
        register_checkpoint_warps(checkpoint)


def without_training(cfg: Config) -> Config:
    """The config with no training loop, dataloader, optimizer or schedulers: a test run never builds the training
    set (mmengine builds the training loop lazily, e.g. when MMSegmentation's ``SegVisualizationHook`` reads
    ``runner.iter``, which then needs the training split on disk)."""
    for key in ('train_dataloader', 'train_cfg', 'optim_wrapper', 'param_scheduler'):
        cfg[key] = None
    return cfg


def main(argv=None):
    args = parse_args(argv)
    cfg = build_cfg(args)
    check_lzu_config(cfg)  # refuse a pipeline whose recorded LZ grid would not describe the zoomed image
    register_missing_saliency(cfg, args.checkpoint)
    cfg = without_training(cfg)
    setup_cpu_distributed(cfg)  # DDP without CUDA (gloo): mmengine 0.10.7 assumes CUDA for --launcher pytorch
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    runner.test()


if __name__ == '__main__':
    main()
