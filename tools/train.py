"""Train a model from a config with mmengine's Runner (MMDetection / MMSegmentation / MMDetection3D).

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] [--auto-scale-lr]
                                 [--saliency FILE] [--data-root DIR [--ann-file FILE]] [--max-iters N]
                                 [--cfg-options k=v ...] [--launcher pytorch]

Works for any config of the three frameworks: the plugin's modules are
registered (configs also load them through ``custom_imports``), and mmengine's
checkpoint loaders read the checkpoints mmengine writes under torch >= 2.6
(``weights_only``; scoped to those loaders, see ``lzu_mm.common.checkpoint``).

The config is prepared by :mod:`lzu_mm.common.config`: ``--cfg-options`` are
merged, then the top-level ``lzu_zoom`` (``--cfg-options lzu_zoom.saliency=F``
or ``--saliency F``) is written into every zoom transform and ``model.lzu``;
``--data-root`` / ``--ann-file`` point every dataloader and evaluator at one
data folder; ``--max-iters`` makes a short run of any loop type. A config that
zooms with saliency files gets ``LZUCheckpointHook``: every checkpoint stores
those maps, so inference does not need the files
(:mod:`lzu_mm.common.checkpoint_warp`).
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout without installing

from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.registry import RUNNERS  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

import lzu_mm  # noqa: E402

lzu_mm.register_all_modules()  # the plugin's modules and the checkpoint allow-list
from lzu_mm.common import check_lzu_config  # noqa: E402
from lzu_mm.common.checkpoint_warp import LZUCheckpointHook, config_saliency_sites  # noqa: E402
from lzu_mm.common.config import USED_BY_TRAINING, add_lzu_arguments, prepare_tool_cfg, short_run  # noqa: E402
from lzu_mm.common.distributed import setup_cpu_distributed  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument('--amp', action='store_true', help='enable automatic-mixed-precision training')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr by (processes x train_dataloader.batch_size) / '
                        'auto_scale_lr.base_batch_size (the paper\'s total batch), as mmengine\'s Runner.scale_lr does')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from the given checkpoint, or from the latest one in the work dir when no path is given')
    add_lzu_arguments(parser)
    parser.add_argument(
        '--max-iters',
        type=int,
        help='short run: N training iterations, then validation and a checkpoint (epoch-based configs: one epoch '
        'over the first N x batch_size samples)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, key=value pairs (e.g. load_from=None lzu_zoom.saliency=sal.pkl '
        'train_cfg.max_epochs=1; train_cfg.max_iters only exists for iteration-based configs such as mmseg\'s)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def add_checkpoint_warp_hook(cfg: Config) -> None:
    """Checkpoints of a config with saliency files store them (self-contained for inference, LZUCheckpointHook)."""
    hooks = list(cfg.get('custom_hooks', None) or [])
    if config_saliency_sites(cfg) and not any(h.get('type') in ('LZUCheckpointHook', LZUCheckpointHook) for h in hooks):
        cfg.custom_hooks = hooks + [dict(type='LZUCheckpointHook')]


def build_cfg(args) -> Config:
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    prepare_tool_cfg(cfg, args, args.config, used=USED_BY_TRAINING)
    if args.max_iters is not None:
        for line in short_run(cfg, args.max_iters):
            print(f'--max-iters: {line}')
    if args.amp:
        optim_wrapper = cfg.optim_wrapper.type
        if optim_wrapper == 'AmpOptimWrapper':
            print('AMP training is already enabled in the config.')
        else:
            assert optim_wrapper == 'OptimWrapper', f'--amp needs OptimWrapper, got {optim_wrapper}'
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.loss_scale = 'dynamic'
    if args.auto_scale_lr:
        if 'auto_scale_lr' in cfg and 'enable' in cfg.auto_scale_lr and 'base_batch_size' in cfg.auto_scale_lr:
            cfg.auto_scale_lr.enable = True
        else:
            raise RuntimeError('--auto-scale-lr needs auto_scale_lr = dict(enable=..., base_batch_size=...) in the '
                               'config')
    add_checkpoint_warp_hook(cfg)
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    return cfg


def main(argv=None):
    args = parse_args(argv)
    cfg = build_cfg(args)
    check_lzu_config(cfg)  # refuse a pipeline whose recorded LZ grid would not describe the zoomed image
    setup_cpu_distributed(cfg)  # DDP without CUDA (gloo): mmengine 0.10.7 assumes CUDA for --launcher pytorch
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    runner.train()


if __name__ == '__main__':
    main()
