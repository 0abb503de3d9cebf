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
                                  predictions_note, save_panels, summarize_predictions)
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


def test_predictions_panel_shows_the_painted_image(panels):
    """The predictions panel is the framework visualizer's painted original image, in original-image pixels."""
    painted = np.zeros((900, 1600, 3), np.uint8)
    painted[400:520, 600:800] = (255, 0, 0)
    fig = plot_lzu_panels(panels, painted, predictions_by='DetLocalVisualizer', predictions_note='1 objects')
    pred_ax = [ax for ax in fig.axes if ax.get_title().startswith('predictions')][0]
    assert pred_ax.get_title() == 'predictions on the original image (DetLocalVisualizer, 1 objects)'
    np.testing.assert_array_equal(pred_ax.images[0].get_array(), painted)
    assert pred_ax.images[0].get_extent() == [-0.5, 1599.5, 899.5, -0.5]  # original pixels on the axes
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


def test_summarize_mmengine_samples():
    from mmengine.structures import BaseDataElement, InstanceData, PixelData

    inst = InstanceData(bboxes=torch.tensor([[0., 0, 10, 10], [5, 5, 20, 20]]), scores=torch.tensor([0.9, 0.1]),
                        labels=torch.tensor([1, 0]))
    summary = summarize_predictions(BaseDataElement(pred_instances=inst), score_thr=0.3)
    assert summary == dict(num_boxes=1, num_below_score_thr=1, score_thr=0.3)
    assert predictions_note(summary) == '1 objects with score > 0.3; 1 below the threshold'
    seg = torch.ones(1, 4, 6, dtype=torch.long)
    seg[0, 0] = 3
    summary = summarize_predictions(BaseDataElement(pred_sem_seg=PixelData(data=seg)))
    assert summary == dict(sem_seg_shape=[4, 6], classes_present=[1, 3]) and predictions_note(summary) == 'class map'
    assert summarize_predictions(BaseDataElement()) is None
