"""The panel figure: every panel drawn with its units, files written, predictions drawn where they belong."""
import json
import os.path as osp

import numpy as np
import pytest
import torch

pytest.importorskip('matplotlib', reason='matplotlib is not installed')
cv2 = pytest.importorskip('cv2', reason='opencv is not installed')

from lzu_mm.ops import load_saliency, saliency_to_grid  # noqa: E402
from lzu_mm.visualization import (compute_warp_panels, figure_to_array, plot_lzu_panels,  # noqa: E402
                                  predictions_from_sample, project_corners, save_panels)
from tests.visualization.utils import OFFICIAL_NUSCENES_LZ, nuscenes_front_image, read_rgb  # noqa: E402


@pytest.fixture
def panels(official_nuscenes_saliency):
    lz = OFFICIAL_NUSCENES_LZ
    sal = load_saliency(official_nuscenes_saliency, lz['grid_shape'])
    grid = saliency_to_grid(sal.double(), lz['separable'], lz['attraction_fwhm'], lz['anti_crop'])
    return compute_warp_panels(read_rgb(nuscenes_front_image()), grid, (225, 400), sal[0, 0], max_side=480)


def _colorbar_labels(fig):
    return [ax.get_ylabel() for ax in fig.axes if not ax.get_title()]  # colour-bar axes carry no title


def test_figure_has_every_panel_with_units(panels):
    fig = plot_lzu_panels(panels, title='nuScenes CAM_FRONT')
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    for key in ('saliency', 'zoomed image 400×225', 'sampling grid', 'magnification', 'unzoom(zoom(image))'):
        assert any(key in t for t in titles), (key, titles)
    labels = _colorbar_labels(fig)
    assert 'saliency (× uniform)' in labels
    assert 'magnification (× uniform sampling density)' in labels
    assert 'local magnification (× uniform)' in labels
    image_axes = [ax for ax in fig.axes if ax.get_title()]
    assert all('px' in ax.get_xlabel() for ax in image_axes)  # pixel units on every image panel
    arr = figure_to_array(fig)
    assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3 and arr.std() > 20


def test_predictions_panel_boxes_and_class_map(panels):
    boxes = dict(bboxes=np.array([[600., 400., 800., 520.]]), labels=np.array([2]), scores=np.array([0.9]),
                 class_names=['person', 'bicycle', 'car'])
    fig = plot_lzu_panels(panels, boxes)
    pred_ax = [ax for ax in fig.axes if ax.get_title().startswith('predictions')][0]
    assert '1 objects' in pred_ax.get_title()
    assert any(t.get_text() == 'car 0.90' for t in pred_ax.texts)
    seg = np.zeros((900, 1600), np.int64)
    seg[450:] = 1
    fig = plot_lzu_panels(panels, dict(sem_seg=seg, class_names=['road', 'sky']))
    pred_ax = [ax for ax in fig.axes if ax.get_title().startswith('predictions')][0]
    assert 'class map' in pred_ax.get_title()
    assert {t.get_text() for t in pred_ax.get_legend().get_texts()} == {'road', 'sky'}
    fig = plot_lzu_panels(panels, None, show_predictions=True)
    assert any('no checkpoint' in ax.get_title() for ax in fig.axes)


def test_save_panels_writes_readable_files(panels, tmp_path):
    paths = save_panels(panels, str(tmp_path / 'out'), title='t')
    for key in ('figure', 'zoomed', 'unzoomed', 'uncovered', 'magnification', 'summary'):
        assert osp.getsize(paths[key]) > 0
    fig = cv2.imread(paths['figure'])
    assert fig is not None and fig.shape[1] > 1000 and fig.std() > 20
    zoomed = cv2.imread(paths['zoomed'])[..., ::-1]
    np.testing.assert_array_equal(zoomed, panels.zoomed)
    np.testing.assert_allclose(np.load(paths['magnification']), panels.magnification, rtol=1e-6)
    with open(paths['summary']) as f:
        assert json.load(f)['zoomed_shape'] == [225, 400]


def test_project_corners_pinhole():
    k = np.array([[1000., 0, 800], [0, 1000., 450], [0, 0, 1]])
    corners = np.zeros((2, 8, 3))
    corners[0] = [[1, 0.5, 10]] * 8  # 10 m ahead, 1 m right, 0.5 m down
    corners[1] = [[0, 0, -5]] * 8  # behind the camera: dropped
    uv = project_corners(corners, k, scale_factor=(0.5, 0.5))
    assert uv.shape == (1, 8, 2)
    np.testing.assert_allclose(uv[0, 0], [(800 + 100) / 0.5, (450 + 50) / 0.5])


def test_predictions_from_mmengine_samples():
    from mmengine.structures import BaseDataElement, InstanceData, PixelData

    inst = InstanceData(bboxes=torch.tensor([[0., 0, 10, 10], [5, 5, 20, 20]]), scores=torch.tensor([0.9, 0.1]),
                        labels=torch.tensor([1, 0]))
    preds = predictions_from_sample(BaseDataElement(pred_instances=inst), score_thr=0.3, class_names=['a', 'b'])
    assert preds['bboxes'].shape == (1, 4) and preds['labels'].tolist() == [1]
    seg = BaseDataElement(pred_sem_seg=PixelData(data=torch.ones(1, 4, 6, dtype=torch.long)))
    assert predictions_from_sample(seg)['sem_seg'].shape == (4, 6)
    assert predictions_from_sample(BaseDataElement()) is None
