"""tools/test.py's --show / --wait-time / --show-dir: the frameworks' visualization hook, switched on as their tools do.

Only the configuration is checked here (no display; a real run of every family would be too slow for the suite).
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
