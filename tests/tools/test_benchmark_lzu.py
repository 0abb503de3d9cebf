"""Acceptance: benchmark_lzu.py times the uniform and LZU 0.25x configs of each task on this CPU.

Speed is not asserted (it is measured by the benchmark); the tests check that
the forward pass and the added zoom / unzoom are timed, on the feature maps
the model really unzooms, and that the JSON for plot_pareto.py is written.
"""
import json
import os.path as osp

import pytest

pytest.importorskip('mmengine', reason='mmengine is not installed')

from tests.visualization.configs import task_configs, zoom_grid_shape  # noqa: E402
from tests.visualization.utils import load_script, resampled_official_saliency  # noqa: E402

#: FPN levels each task's model unzooms (RetinaNet P3-P7, PSPNet-FPN 4 levels, FCOS3D P3-P7)
LEVELS = {'det': 5, 'seg': 4, '3d': 5}
#: zoomed input size (h, w) of the 0.25x configs
INPUT = {'det': [300, 480], 'seg': [256, 256], '3d': [225, 400]}


@pytest.mark.parametrize('task', ['det', 'seg', '3d'])
def test_benchmark_uniform_and_lzu(task, tmp_path, capsys, official_nuscenes_saliency):
    uniform, lzu = task_configs(task)
    saliency = (official_nuscenes_saliency if task == '3d' else
                resampled_official_saliency(official_nuscenes_saliency, zoom_grid_shape(lzu),
                                            str(tmp_path / 'saliency.npy')))
    tool = load_script('tools/analysis_tools/benchmark_lzu.py')
    dirs = [str(tmp_path / 'uniform'), str(tmp_path / 'lzu')]
    results = tool.main([uniform, lzu, '--warmup', '1', '--repeat', '2', '--device', 'cpu', '--saliency', saliency,
                         '--work-dirs', *dirs])
    assert [r['lzu'] for r in results] == [False, True]
    base, ours = results
    for r in results:
        assert r['input_shape'] == INPUT[task] and r['device'] == 'cpu'
        assert r['forward_ms']['median'] > 0 and r['forward_ms']['n'] == 2
        assert r['forward_ms']['q1'] <= r['forward_ms']['median'] <= r['forward_ms']['q3']
    assert base['zoom_ms'] is None and base['added_ms'] == 0
    assert ours['warp_from'] == 'pipeline'
    assert ours['zoom_ms']['median'] > 0 and ours['unzoom_ms']['median'] > 0
    assert ours['added_ms'] == pytest.approx(ours['zoom_ms']['median'] + ours['unzoom_ms']['median'])
    assert ours['added_fraction'] == pytest.approx(ours['added_ms'] / ours['forward_ms']['median'])
    assert ours['latency_ms'] == pytest.approx(ours['forward_ms']['median'] + ours['zoom_ms']['median'])
    # the unzoom is timed on exactly the maps the model unzooms: one per FPN level, finest at stride 8 or 4
    assert len(ours['feature_shapes']) == LEVELS[task]
    assert all(s[0] == 1 for s in ours['feature_shapes'])  # batch size 1
    for d, r in zip(dirs, results):
        with open(osp.join(d, 'lzu_benchmark.json')) as f:
            assert json.load(f)['results'][0]['name'] == r['name']
    out = capsys.readouterr().out
    assert 'added/forward' in out and f"{100 * ours['added_fraction']:.2f}%" in out


def test_benchmark_rejects_bad_arguments():
    tool = load_script('tools/analysis_tools/benchmark_lzu.py')
    with pytest.raises(SystemExit):
        tool.parse_args(['a.py', '--repeat', '0'])
    with pytest.raises(SystemExit):
        tool.parse_args(['a.py', 'b.py', '--work-dir', 'x'])
