"""tools/analysis_tools/get_flops.py: zoom and unzoom are counted, exactly as documented."""
import importlib.util
import os.path as osp

import pytest

from tests.conftest import REPO_ROOT

pytest.importorskip('mmseg', reason='MMSegmentation is not installed')

CONFIGS = osp.join(REPO_ROOT, 'configs', 'lzu_pspnet')


@pytest.fixture(autouse=True)
def _restore_default_scope():
    """The tool sets mmseg as the default scope (as mmseg's tools do); restore it after each test."""
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmseg'):
        yield


def _tool():
    spec = importlib.util.spec_from_file_location('get_flops', osp.join(REPO_ROOT, 'tools', 'analysis_tools',
                                                                        'get_flops.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_uniform_vs_lzu_64(capsys):
    tool = _tool()
    rows = dict(tool.main([osp.join(CONFIGS, 'pspnet_r50-fpn_4xb2-80k_cityscapes-64x64.py'),
                           osp.join(CONFIGS, 'pspnet_r50-fpn_lzu-fixed_4xb2-80k_cityscapes-64x64.py'),
                           '--input-size', '128', '128', '--saliency', 'uniform']))
    uni = rows['pspnet_r50-fpn_4xb2-80k_cityscapes-64x64']
    lzu = rows['pspnet_r50-fpn_lzu-fixed_4xb2-80k_cityscapes-64x64']
    # unzoom: 4 FLOPs per output element of every FPN level (256 channels, strides 4, 8, 16, 32 of 64x64)
    assert lzu['unzoom'] * 1e9 == 4 * 256 * (16 * 16 + 8 * 8 + 4 * 4 + 2 * 2)
    assert uni['unzoom'] == 0
    # resize: bilinear, 4 per output element; zoom: bilinear sampling of 3 channels, plus at most the bilinear
    # upsampling of the LZ grid's 2 coordinates
    assert uni['resample'] * 1e9 == 4 * 3 * 64 * 64
    assert 4 * 3 * 64 * 64 <= lzu['resample'] * 1e9 <= 4 * 5 * 64 * 64
    # the unzoom is counted inside the total, and only the unzoom and the resampling differ
    # the rest of the model is the same network
    extra = (lzu['unzoom'] + lzu['resample'] - uni['resample']) * 1e9
    assert abs((lzu['total'] - uni['total']) * 1e9 - extra) < 1
    assert lzu['params'] == uni['params'] and uni['total'] > 0.5
    assert 'GFLOPs' in capsys.readouterr().out


def test_missing_saliency_is_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the config's relative data/cityscapes/lzu/... path does not exist here
    tool = _tool()
    with pytest.raises(FileNotFoundError, match='boundary_saliency_32x32.pkl'):
        tool.main([osp.join(CONFIGS, 'pspnet_r50-fpn_lzu-fixed_4xb2-80k_cityscapes-64x64.py')])
