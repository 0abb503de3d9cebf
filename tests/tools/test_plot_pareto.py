"""Acceptance: plot_pareto.py draws a PNG from two short real work dirs (tools/test.py + benchmark_lzu.py)."""
import json
import os.path as osp

import pytest

pytest.importorskip('matplotlib', reason='matplotlib is not installed')
pytest.importorskip('mmengine', reason='mmengine is not installed')

from tests.conftest import REPO_ROOT  # noqa: E402
from tests.visualization.configs import SEG_SMALL, task_configs, zoom_grid_shape  # noqa: E402
from tests.visualization.test_hook import random_checkpoint, run_test_py, seg_test_options  # noqa: E402
from tests.visualization.utils import load_script, read_rgb, resampled_official_saliency  # noqa: E402


def test_pareto_from_two_real_work_dirs(tmp_path, cityscapes_root, official_nuscenes_saliency):
    task_configs('seg')
    uniform, lzu = (osp.join(REPO_ROOT, p) for p in SEG_SMALL)
    saliency = resampled_official_saliency(official_nuscenes_saliency, zoom_grid_shape(lzu),
                                           str(tmp_path / 'saliency.npy'))
    checkpoint = random_checkpoint(uniform, str(tmp_path / 'random.pth'))  # LZU adds no parameters: fits both
    dirs = [str(tmp_path / 'uniform'), str(tmp_path / 'lzu')]
    for config, work_dir in zip((uniform, lzu), dirs):
        run_test_py(config, checkpoint, work_dir, seg_test_options(config, cityscapes_root, saliency))
    bench = load_script('tools/analysis_tools/benchmark_lzu.py')
    bench.main([uniform, lzu, '--warmup', '0', '--repeat', '1', '--device', 'cpu', '--flops', '--saliency',
                saliency, '--ori-shape', '128', '256', '--work-dirs', *dirs])

    tool = load_script('tools/analysis_tools/plot_pareto.py')
    out = str(tmp_path / 'pareto.png')
    data = tool.main([*dirs, '--out', out])
    points = data['points']
    assert [p['lzu'] for p in points] == [False, True]
    assert all(p['task'] == 'seg' and p['xlabel'] == 'GFLOPs' for p in points)
    for p, d in zip(points, dirs):  # the mIoU that tools/test.py logged, the GFLOPs benchmark_lzu.py counted
        assert p['score'] == pytest.approx(tool.read_metric(d, r'(^|/)mIoU$'))
        with open(osp.join(d, 'lzu_benchmark.json')) as f:
            assert p['cost'] == pytest.approx(json.load(f)['results'][0]['gflops'])
        assert 0 <= p['score'] <= 100 and p['cost'] > 0
    assert any(p['pareto'] for p in points)
    png = read_rgb(out)
    assert png.shape[0] > 300 and png.std() > 10
    # latency on the x axis instead
    data = tool.main([*dirs, '--out', str(tmp_path / 'ms.png'), '--cost', 'ms'])
    assert data['points'][0]['xlabel'].startswith('latency (ms')


def test_pareto_optimal_points():
    tool = load_script('tools/analysis_tools/plot_pareto.py')
    # (cost, score): b dominates a; c is slower but better; d equals c's cost with a lower score
    flags = tool.pareto_optimal([10, 8, 20, 20], [30, 35, 40, 39])
    assert flags == [False, True, True, False]


def test_missing_benchmark_is_explained(tmp_path):
    tool = load_script('tools/analysis_tools/plot_pareto.py')
    with pytest.raises(SystemExit, match='benchmark_lzu.py'):
        tool.main([str(tmp_path), '--out', str(tmp_path / 'x.png')])
