"""benchmark_adaptive.py: the per-frame parts that adaptive saliency adds, and the forward pass, are timed.

Speed is not asserted (the benchmark measures it); the test checks what is timed: the four per-frame parts on
the shapes the model uses (network input, padding, FPN levels) and the forward pass of the config's model.
"""
import json

import pytest

pytest.importorskip('mmdet', reason='MMDetection is not installed')

from tests.visualization.utils import load_script  # noqa: E402


def test_benchmark_adaptive_parts_and_forward(tmp_path, capsys):
    tool = load_script('tools/analysis_tools/benchmark_adaptive.py')
    out = str(tmp_path / 'adaptive.json')
    rows = tool.main(['--scales', '0.25', '--ori-shape', '300', '480', '--num-boxes', '7', '--warmup', '0',
                      '--repeat', '2', '--forward-repeat', '1', '--forward', '--device', 'cpu', '--json', out,
                      '--cfg-options', 'model.backbone.depth=18', 'model.neck.in_channels=[64,128,256,512]',
                      'model.bbox_head.stacked_convs=1'])
    (row, ) = rows
    assert row['input_shape'] == [75, 120] and row['pad_shape'] == [96, 128] and row['threads'] == 1
    assert row['feature_shapes'] == [[12, 16], [6, 8], [3, 4], [2, 2], [1, 1]]  # P3-P7 of the padded input
    for part in ('saliency', 'grid', 'zoom_grid', 'unzoom_grids', 'added', 'forward'):
        t = row[f'{part}_ms']
        assert t['n'] == (1 if part == 'forward' else 2) and 0 < t['q1'] <= t['median'] <= t['q3']
    assert row['added_fraction'] == pytest.approx(row['added_ms']['median'] / row['forward_ms']['median'])
    with open(out) as f:
        assert json.load(f)['results'][0]['num_boxes'] == 7
    assert 'added/forward' in capsys.readouterr().out
