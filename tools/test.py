"""Test (evaluate) a checkpoint from a config with mmengine's Runner.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out results.pkl]
                         [--show-dir DIR] [--cfg-options k=v ...] [--launcher pytorch]

Works for MMDetection, MMSegmentation and MMDetection3D configs; the metrics are
the config's ``test_evaluator``. ``import lzu_mm`` lets ``torch.load`` read the
checkpoints mmengine writes (numpy objects in ``meta`` / ``message_hub``) under
torch >= 2.6, without switching the safe unpickler off.
"""
import argparse
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout without installing

from mmengine.config import Config, DictAction  # noqa: E402
from mmengine.registry import RUNNERS  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

import lzu_mm  # noqa: E402,F401  (registers the plugin and the checkpoint allow-list)
from lzu_mm.common.distributed import setup_cpu_distributed  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test (and evaluate) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the directory to save the evaluation metrics')
    parser.add_argument('--out', help='dump the raw predictions to this pickle file')
    parser.add_argument('--show-dir', help='save painted predictions into this directory (under the work dir)')
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


def build_cfg(args) -> Config:
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    if args.show_dir:
        hooks = cfg.default_hooks
        if 'visualization' not in hooks:
            raise RuntimeError('--show-dir needs a visualization hook in default_hooks')
        hooks.visualization.draw = True
        hooks.visualization.test_out_dir = args.show_dir
    if args.out is not None:
        if not args.out.endswith(('.pkl', '.pickle')):
            raise ValueError(f'--out must be a .pkl/.pickle file, got {args.out!r}')
        evaluator = cfg.test_evaluator
        dump = dict(type='DumpResults', out_file_path=args.out)
        cfg.test_evaluator = (list(evaluator) if isinstance(evaluator, (list, tuple)) else [evaluator]) + [dump]
    return cfg


def main(argv=None):
    args = parse_args(argv)
    cfg = build_cfg(args)
    setup_cpu_distributed(cfg)  # DDP without CUDA (gloo): mmengine 0.10.7 assumes CUDA for --launcher pytorch
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    runner.test()


if __name__ == '__main__':
    main()
