"""tools/saliency/box_kde_saliency.py and lzu_mm.ops.saliency.kde_box_saliency (FOVEA's KDE SD saliency)."""
import importlib.util
import json
import os.path as osp
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from lzu_mm.ops import load_saliency
from lzu_mm.ops.saliency import kde_box_saliency
from tests.conftest import REPO_ROOT

TOOL = osp.join(REPO_ROOT, 'tools', 'saliency', 'box_kde_saliency.py')


def test_kde_single_box_peaks_at_its_centre():
    # a box centred on grid point (10, 20) of a 31 x 51 grid over a 1200 x 1920 image (FOVEA: edge to edge)
    cx, cy = 20 * 1920 / 50, 10 * 1200 / 30
    sal = kde_box_saliency([[cx - 40, cy - 30, cx + 40, cy + 30]], (1200, 1920), (31, 51), uniform_floor=0.)
    assert sal.shape == (1, 1, 31, 51) and sal.dtype == torch.float32
    assert abs(float(sal.sum()) - 1) < 1e-6
    assert np.unravel_index(int(sal.argmax()), (31, 51)) == (10, 20)
    # symmetric around the centre, wider along x (the box is wider than tall)
    s = sal[0, 0]
    torch.testing.assert_close(s[10, 15:20], s[10, 21:26].flip(0))
    assert float(s[10, 21]) / float(s[10, 20]) > float(s[11, 20]) / float(s[10, 20])
    # with align_corners the grid runs from the first to the last pixel centre: grid point 20 sits at 20 * 1919 / 50
    ax, ay = 20 * 1919 / 50, 10 * 1199 / 30
    box = [[ax - 40, ay - 30, ax + 40, ay + 30]]
    corners = kde_box_saliency(box, (1200, 1920), (31, 51), uniform_floor=0., align_corners=True)[0, 0]
    edges = kde_box_saliency(box, (1200, 1920), (31, 51), uniform_floor=0.)[0, 0]
    torch.testing.assert_close(corners[10, 15:20], corners[10, 21:26].flip(0))
    assert not torch.allclose(edges[10, 15:20], edges[10, 21:26].flip(0))
    # a larger bandwidth_scale spreads it
    wide = kde_box_saliency([[cx - 40, cy - 30, cx + 40, cy + 30]], (1200, 1920), (31, 51), bandwidth_scale=512.,
                            uniform_floor=0.)
    assert float(wide.max()) < float(sal.max())


def test_kde_floor_normalisation_and_per_box_weight():
    boxes = [[0, 0, 4, 4], [300, 300, 900, 700]]  # a tiny and a large box weigh the same (normalised per box)
    sal = kde_box_saliency(boxes, (900, 1600), (27, 48), uniform_floor=0.)
    one = kde_box_saliency(boxes[:1], (900, 1600), (27, 48), uniform_floor=0.)
    two = kde_box_saliency(boxes[1:], (900, 1600), (27, 48), uniform_floor=0.)
    torch.testing.assert_close(sal, (one + two) / 2)
    floor = kde_box_saliency(boxes, (900, 1600), (27, 48), uniform_floor=1.)
    torch.testing.assert_close(floor, (sal + 1. / (27 * 48)) / 2)
    assert float(floor.min()) >= 0.5 / (27 * 48) - 1e-9
    torch.testing.assert_close(kde_box_saliency(np.zeros((0, 4)), (900, 1600), (27, 48)),
                               torch.full((1, 1, 27, 48), 1. / (27 * 48)))


@pytest.mark.parametrize('kwargs, match', [
    (dict(boxes=[[0, 0, 1]]), 'boxes'),
    (dict(boxes=[[0, 0, float('nan'), 1]]), 'finite'),
    (dict(image_shapes=[(900, 1600)] * 3), 'image_shapes'),
    (dict(grid_shape=(1, 48)), 'grid_shape'),
    (dict(bandwidth_scale=0), 'bandwidth_scale'),
    (dict(uniform_floor=-1), 'uniform_floor'),
])
def test_kde_bad_input(kwargs, match):
    args = dict(boxes=[[0, 0, 10, 10]], image_shapes=(900, 1600), grid_shape=(27, 48))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        kde_box_saliency(**args)


def _nuscenes_boxes(nuscenes_root):
    with open(osp.join(nuscenes_root, 'nuscenes_infos_mini.pkl'), 'rb') as f:
        info = pickle.load(f)['data_list'][0]
    return [inst['bbox'] for cam in info['images'] for inst in info['cam_instances'].get(cam, [])]


def _tool_main():
    """The tool's ``main(argv)``, imported from its file (run in-process: no interpreter start-up)."""
    spec = importlib.util.spec_from_file_location('box_kde_saliency', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def _run_tool(*args):
    proc = subprocess.run([sys.executable, TOOL, *map(str, args)], cwd=REPO_ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def test_tool_reads_mmdet3d_infos_and_coco_json_alike(nuscenes_root, official_nuscenes_saliency, tmp_path):
    """Real nuScenes sample: the info .pkl (all 6 cameras, sizes from the images) and the same boxes as a COCO json
    give the same map, written in the authors' format (+ PNG), loadable with load_saliency."""
    out_pkl = tmp_path / 'from_infos.pkl'
    log = _run_tool(osp.join(nuscenes_root, 'nuscenes_infos_mini.pkl'), out_pkl, '--grid-shape', 27, 48, '--data-root',
                    nuscenes_root)
    boxes = _nuscenes_boxes(nuscenes_root)
    assert f'{len(boxes)} boxes' in log and len(boxes) == 84
    assert osp.getsize(tmp_path / 'from_infos.png') > 0
    with open(out_pkl, 'rb') as f:
        ours = pickle.load(f)
    with open(official_nuscenes_saliency, 'rb') as f:
        official = pickle.load(f)
    assert type(ours) is type(official) and ours.dtype == official.dtype and ours.shape == official.shape
    torch.testing.assert_close(ours, kde_box_saliency(boxes, (900, 1600), (27, 48)))
    load_saliency(str(out_pkl), (27, 48))

    coco = dict(images=[dict(id=0, width=1600, height=900, file_name='x.jpg')], categories=[dict(id=0, name='obj')],
                annotations=[dict(id=i, image_id=0, category_id=0, bbox=[x1, y1, x2 - x1, y2 - y1], iscrowd=0,
                                  area=(x2 - x1) * (y2 - y1)) for i, (x1, y1, x2, y2) in enumerate(boxes)])
    with open(tmp_path / 'coco.json', 'w') as f:
        json.dump(coco, f)
    main = _tool_main()
    for suffix in ('.npy', '.pth'):
        out = tmp_path / f'from_json{suffix}'
        main([str(tmp_path / 'coco.json'), str(out), '--grid-shape', '27', '48'])
        torch.testing.assert_close(load_saliency(str(out), (27, 48)), ours, atol=1e-7, rtol=1e-5)


def test_tool_default_image_size_when_images_absent(nuscenes_root, tmp_path):
    out = tmp_path / 's.pkl'
    log = _run_tool(osp.join(nuscenes_root, 'nuscenes_infos_mini.pkl'), out, '--grid-shape', 27, 48,
                    '--default-image-size', 800, 450)
    assert 'assumed size 800x450' in log
    boxes = np.asarray(_nuscenes_boxes(nuscenes_root))
    torch.testing.assert_close(load_saliency(str(out)), kde_box_saliency(boxes, (450, 800), (27, 48)))
