"""tools/test.py's --show / --wait-time / --show-dir: the frameworks' visualization hook, switched on as their tools do.

The configuration is checked for every family (no display; a real run of each would be too slow for the suite), and
one real --show-dir run paints an LZU PSPNet config's centre-cropped predictions (LZUSegLocalVisualizer).
"""
import importlib.util
import os.path as osp

import pytest

from tests.conftest import REPO_ROOT

pytest.importorskip('mmengine')

CONFIGS = {  # framework -> (LZU config, its visualization hook)
    'mmdet': ('configs/lzu_retinanet/retinanet_r50_fpn_lzu-fixed_3e_argoverse-hd-0.25x.py', 'DetVisualizationHook'),
    'mmseg': ('configs/lzu_pspnet/pspnet_r50-fpn_lzu-fixed_4xb2-80k_cityscapes-64x64.py', 'SegVisualizationHook'),
    'mmdet3d': ('configs/lzu_fcos3d/fcos3d_r50-caffe-dcn_fpn_head-gn_lzu-fixed_8xb2-1x_nus-mono3d-0.25x.py',
                'Det3DVisualizationHook'),
}


def load_test_tool():
    spec = importlib.util.spec_from_file_location('lzu_tool_test_py', osp.join(REPO_ROOT, 'tools', 'test.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def tool():
    return load_test_tool()


@pytest.mark.parametrize('framework', list(CONFIGS))
def test_show_and_show_dir_switch_on_the_visualization_hook(framework, tool, tmp_path):
    pytest.importorskip(framework)
    config, hook_type = CONFIGS[framework]
    work = ['--work-dir', str(tmp_path)]
    cfg = tool.build_cfg(tool.parse_args([osp.join(REPO_ROOT, config), 'ckpt.pth', '--show', '--wait-time', '0.5',
                                          *work]))
    hook = cfg.default_hooks.visualization
    assert hook.type == hook_type
    assert (hook.draw, hook.show, hook.wait_time) == (True, True, 0.5)
    assert 'test_out_dir' not in hook

    cfg = tool.build_cfg(tool.parse_args([osp.join(REPO_ROOT, config), 'ckpt.pth', '--show-dir', 'painted', *work]))
    hook = cfg.default_hooks.visualization
    assert hook.draw
    if framework == 'mmseg':  # SegVisualizationHook has no test_out_dir: mmseg's tool sets the visualizer's save_dir
        assert 'test_out_dir' not in hook and cfg.visualizer.save_dir == 'painted'
    else:
        assert hook.test_out_dir == 'painted' and 'save_dir' not in cfg.visualizer
    assert not hook.get('show', False)  # --show-dir alone opens no window


def test_show_builds_the_framework_hook_with_its_window_settings(tool, tmp_path):
    pytest.importorskip('mmdet')
    from mmengine.registry import HOOKS, VISUALIZERS, init_default_scope

    config, _ = CONFIGS['mmdet']
    cfg = tool.build_cfg(tool.parse_args([osp.join(REPO_ROOT, config), 'ckpt.pth', '--show', '--wait-time', '0.25',
                                          '--work-dir', str(tmp_path)]))
    init_default_scope('mmdet')
    VISUALIZERS.build(dict(cfg.visualizer, name='lzu_test_py_show'))
    hook = HOOKS.build(cfg.default_hooks.visualization)
    assert (hook.draw, hook.show, hook.wait_time) == (True, True, 0.25)


def test_show_without_a_visualization_hook_is_an_error(tool):
    args = tool.parse_args(['config.py', 'ckpt.pth', '--show'])
    cfg = tool.Config(dict(default_hooks=dict(checkpoint=dict(type='CheckpointHook'))))
    with pytest.raises(RuntimeError, match='visualization hook in default_hooks'):
        tool.trigger_visualization_hook(cfg, args)
    cfg = tool.Config(dict(default_hooks=dict(visualization=dict(type='VisualizationHook'))))
    tool.trigger_visualization_hook(cfg, args)
    assert (cfg.default_hooks.visualization.draw, cfg.default_hooks.visualization.wait_time) == (True, 2)


def test_show_dir_paints_the_centre_crop_of_a_pspnet_config(tool, tmp_path, monkeypatch):
    """A real tools/test.py --show-dir run of an LZU PSPNet config on the Cityscapes sample: the painted image is the
    ground truth and the prediction side by side, each drawn on the centred square crop (the frame of the
    predictions), not on the full frame that SegVisualizationHook re-reads from img_path."""
    pytest.importorskip('mmseg')
    import glob

    import mmcv
    import numpy as np
    import torch
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    from lzu_mm.mmseg.transforms import center_square_box
    from tests.conftest import shared_path
    from tests.mmseg.conftest import SAMPLE, build_cityscapes_layout, config_path, load_tool

    layout = build_cityscapes_layout(osp.abspath(shared_path('cityscapes')), str(tmp_path))
    load_tool('tools/saliency/boundary_saliency.py').main(
        [layout['root'], layout['saliency'], '--ann-file', 'splits/train_minus_minival500.txt'])
    monkeypatch.chdir(layout['workdir'])  # the config's relative data/cityscapes/... paths
    config = config_path('pspnet_r50-fpn_lzu-fixed_4xb2-80k_cityscapes-64x64.py')
    options = ['model.pretrained=None', 'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False',
               'default_hooks.visualization.interval=1', 'visualizer.name=lzu_test_py_show_dir']
    with DefaultScope.overwrite_default_scope('mmseg'):
        from mmseg.registry import MODELS
        torch.manual_seed(0)
        model = MODELS.build(dict(Config.fromfile(config).model, pretrained=None))
    checkpoint = str(tmp_path / 'random.pth')
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), checkpoint)

    show_dir = str(tmp_path / 'painted')
    tool.main([config, checkpoint, '--work-dir', str(tmp_path / 'work'), '--show-dir', show_dir,
               '--cfg-options', *options])

    painted = glob.glob(osp.join(show_dir, 'vis_data', 'vis_image', '*.png'))
    assert len(painted) == 1
    painted = mmcv.imread(painted[0], channel_order='rgb')
    frame = mmcv.imread(shared_path('cityscapes', 'leftImg8bit', 'val', SAMPLE + '_leftImg8bit.png'),
                        channel_order='rgb')
    height, width = frame.shape[:2]
    side = min(height, width)  # 128 of the 128x256 sample
    assert painted.shape == (side, 2 * side, 3)  # ground truth | prediction, each at the crop's size

    # the ground-truth panel is mmseg's blend (alpha 0.8) of the palette colours with the image under the labels:
    # with the centred crop it matches (but for the class-name boxes), with another crop of the frame it does not
    labels = mmcv.imread(shared_path('cityscapes', 'gtFine', 'val', SAMPLE + '_gtFine_labelTrainIds.png'),
                         flag='unchanged')
    palette = np.array(_cityscapes_palette(), dtype=np.float64)
    x1, y1 = center_square_box(height, width, side)
    label_crop = labels[y1:y1 + side, x1:x1 + side]
    colour = np.where((label_crop < len(palette))[..., None], palette[np.minimum(label_crop, len(palette) - 1)], 0)

    def error(x):
        expected = (frame[y1:y1 + side, x:x + side] * 0.2 + colour * 0.8).astype(np.uint8)
        return np.median(np.abs(painted[:, :side].astype(np.int64) - expected))

    assert error(x1) <= 1 < 3 < min(error(0), error(width - side))


def _cityscapes_palette():
    from mmseg.datasets import CityscapesDataset
    return CityscapesDataset.METAINFO['palette']
