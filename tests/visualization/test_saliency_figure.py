"""The saliency tools' PNG: the map on its grid with a colour bar in multiples of a uniform map's value."""
import cv2
import numpy as np
import torch

from lzu_mm.visualization import save_saliency_figure


def test_saliency_figure_has_colour_bar_in_uniform_units(tmp_path):
    sal = torch.full((1, 1, 4, 6), 1.0)
    sal[0, 0, 1, 2] = 25.0  # one cell at 25 / mean(= 2) = 12.5x uniform
    path = str(tmp_path / 'sub' / 'sal.png')
    fig = save_saliency_figure(sal, path)
    image_ax, bar_ax = fig.axes  # the map and its colour bar
    assert bar_ax.get_ylabel() == 'saliency (× uniform)'
    assert image_ax.get_xlabel() == 'x (grid cell)' and image_ax.get_ylabel() == 'y (grid cell)'
    shown = image_ax.images[0].get_array()
    np.testing.assert_allclose(shown.max(), 25.0 / sal.mean().item())
    np.testing.assert_allclose(shown.mean(), 1.0)
    assert image_ax.images[0].norm.vmin == 0
    assert 'max 12.50× uniform' in image_ax.get_title()
    png = cv2.imread(path)
    assert png is not None and png.shape[1] == int(fig.get_figwidth() * 100)


def test_empty_predictions_panel_names_the_score_threshold():
    """An untrained model's boxes all score below the threshold: the panel says so instead of a bare '0 objects'."""
    from matplotlib.figure import Figure
    from mmengine.structures import BaseDataElement, InstanceData

    from lzu_mm.visualization import draw_predictions, predictions_note, summarize_predictions

    sample = BaseDataElement(pred_instances=InstanceData(
        bboxes=torch.tensor([[0., 0., 10., 10.], [5., 5., 20., 30.], [1., 2., 3., 4.]]),
        scores=torch.tensor([0.05, 0.2, 0.5]), labels=torch.tensor([0, 1, 0])))
    summary = summarize_predictions(sample, score_thr=0.6)
    assert summary == dict(num_boxes=0, num_below_score_thr=3, score_thr=0.6)
    ax = Figure().add_subplot(1, 1, 1)
    draw_predictions(ax, np.zeros((40, 50, 3), np.uint8), 'DetLocalVisualizer', predictions_note(summary))
    assert '0 objects with score > 0.6; 3 below the threshold' in ax.get_title()

    summary = summarize_predictions(sample, score_thr=0.1)
    assert summary['num_boxes'] == 2 and summary['num_below_score_thr'] == 1
    ax = Figure().add_subplot(1, 1, 1)
    draw_predictions(ax, np.zeros((40, 50, 3), np.uint8), 'DetLocalVisualizer', predictions_note(summary))
    assert '2 objects with score > 0.1; 1 below the threshold' in ax.get_title()
