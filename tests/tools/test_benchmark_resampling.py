"""benchmark_resampling.py runs (speed is measured by the script, not asserted here) and its memory accounting is
exact: a ResizeWithSource batch holds exactly the uint8 full-resolution sources more than a Resize batch."""
import json

import pytest

pytest.importorskip('mmdet', reason='MMDetection is not installed')

from tests.visualization.utils import load_script, nuscenes_front_image  # noqa: E402


def test_benchmark_resampling_small(tmp_path, capsys):
    tool = load_script('tools/analysis_tools/benchmark_resampling.py')
    out = str(tmp_path / 'bench.json')
    results = tool.main(['--ori-shape', '120', '192', '--out-shape', '60', '96', '--grid-shape', '4', '6',
                         '--warmup', '0', '--repeat', '1', '--op-repeat', '1', '--memory', '--nuscenes-image',
                         nuscenes_front_image(), '--json', out])
    with open(out) as f:
        assert json.load(f)['speed'].keys() == results['speed'].keys()
    speed = results['speed']
    assert set(speed) == {'forward', 'bilinear', 'downsizenet-2', 'downsizenet-3', 'saliency-net', 'learned-lz'}
    assert all(speed[k]['median'] > 0 for k in speed) and 'added_pct' in speed['downsizenet-2']
    for name, (h, w) in (('argoverse-hd', (1200, 1920)), ('nuscenes', (900, 1600))):
        for scale in ('1x', '0.5x'):
            memory = results['memory'][f'{name}-{scale}']
            assert 0 <= memory['added_bytes'] - 2 * h * w * 3 <= 1024  # the two uint8 sources (+ their records)
            assert memory['device_bytes']['source_float32'] == 2 * 3 * h * w * 4
    assert 'ResizeWithSource' in capsys.readouterr().out
