"""Acceptance: LZUVisualizationHook writes the panels during a short tools/test.py run on the real Cityscapes sample."""
import glob
import os.path as osp
import subprocess
import sys

import pytest

pytest.importorskip('matplotlib', reason='matplotlib is not installed')
pytest.importorskip('mmengine', reason='mmengine is not installed')

from tests.conftest import REPO_ROOT  # noqa: E402
from tests.visualization.configs import SEG_SMALL, task_configs, zoom_transform_index, zoom_grid_shape  # noqa: E402
from tests.visualization.utils import read_rgb, resampled_official_saliency  # noqa: E402


def random_checkpoint(config: str, path: str) -> str:
    """An mmengine-style checkpoint of the config's model with random weights (no pretrained weights offline)."""
    import torch
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope

    import lzu_mm
    lzu_mm.register_all_modules()

    cfg = Config.fromfile(config)
    init_default_scope(cfg.default_scope)
    cfg.model.pretrained = None
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), path)
    return path


def seg_test_options(config: str, cityscapes_root: str, saliency: str):
    """--cfg-options pointing a segmentation config at the shared sample (offline, no workers)."""
    options = [f'test_dataloader.dataset.data_root={cityscapes_root}', 'model.pretrained=None',
               'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False']
    if 'lzu' in osp.basename(config):
        options.append(f'test_dataloader.dataset.pipeline.{zoom_transform_index(config)}.saliency={saliency}')
    return options


def run_test_py(config: str, checkpoint: str, work_dir: str, options) -> None:
    cmd = [sys.executable, osp.join(REPO_ROOT, 'tools', 'test.py'), config, checkpoint, '--work-dir', work_dir,
           '--cfg-options', *options]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_hook_writes_panels_during_test_py(tmp_path, cityscapes_root, official_nuscenes_saliency):
    task_configs('seg')
    lzu_config = osp.join(REPO_ROOT, SEG_SMALL[1])
    saliency = resampled_official_saliency(official_nuscenes_saliency, zoom_grid_shape(lzu_config),
                                           str(tmp_path / 'saliency.npy'))
    # how a user enables it: a config inheriting the experiment's, adding the plugin import and the hook
    config = tmp_path / 'with_hook.py'
    config.write_text(f"_base_ = [{lzu_config!r}]\n"
                      "custom_imports = dict(imports=['lzu_mm.mmseg', 'lzu_mm.visualization'], "
                      "allow_failed_imports=False)\n"
                      "custom_hooks = [dict(type='LZUVisualizationHook', interval=1)]\n")
    checkpoint = random_checkpoint(lzu_config, str(tmp_path / 'random.pth'))
    work_dir = str(tmp_path / 'work_dir')
    run_test_py(str(config), checkpoint, work_dir, seg_test_options(lzu_config, cityscapes_root, saliency))

    written = glob.glob(osp.join(work_dir, '*', 'vis_data', 'vis_image', 'lzu_test_*.png'))
    assert len(written) == 1, written  # one sample, interval 1
    assert osp.basename(written[0]) == 'lzu_test_frankfurt_000000_000294_leftImg8bit_0.png'
    panel = read_rgb(written[0])
    assert panel.shape[0] > 500 and panel.shape[1] > 1000 and panel.std() > 20
    # the metrics were still computed (the hook only draws)
    assert glob.glob(osp.join(work_dir, '*', '*.json'))
