"""The predictions panel is painted by the framework's own visualizer (no re-drawing, no extra file written)."""
import functools
import glob
import os.path as osp
from types import SimpleNamespace

import numpy as np
import pytest
import torch

pytest.importorskip('matplotlib', reason='matplotlib is not installed')
pytest.importorskip('mmengine', reason='mmengine is not installed')

from lzu_mm.visualization import paint_predictions  # noqa: E402


def spy_on_add_datasample(monkeypatch, visualizer):
    """Record the calls of ``visualizer.add_datasample`` (signature kept) and what it hands to ``add_image``."""
    calls = []
    original = visualizer.add_datasample

    @functools.wraps(original)
    def spy(name, image, data_sample=None, **kwargs):
        calls.append(dict(kwargs, name=name, image=image, data_sample=data_sample))
        original(name, image, data_sample=data_sample, **kwargs)
        calls[-1]['drawn'] = visualizer.get_image()

    monkeypatch.setattr(visualizer, 'add_datasample', spy)
    return calls


def test_paint_predictions_uses_the_detection_visualizer_and_saves_nothing(tmp_path, monkeypatch):
    pytest.importorskip('mmdet', reason='MMDetection is not installed')
    from mmdet.structures import DetDataSample
    from mmdet.visualization import DetLocalVisualizer
    from mmengine.structures import InstanceData

    visualizer = DetLocalVisualizer(name='lzu_test_paint_det', vis_backends=[dict(type='LocalVisBackend')],
                                    save_dir=str(tmp_path))
    visualizer.dataset_meta = dict(classes=('person', 'car'), palette=[(220, 20, 60), (0, 0, 142)])
    calls = spy_on_add_datasample(monkeypatch, visualizer)
    image = np.full((60, 80, 3), 100, np.uint8)
    sample = DetDataSample(metainfo=dict(img_shape=(60, 80), ori_shape=(60, 80)))
    sample.pred_instances = InstanceData(bboxes=torch.tensor([[10., 10., 40., 30.], [50., 35., 70., 55.]]),
                                         scores=torch.tensor([0.9, 0.1]), labels=torch.tensor([1, 0]))

    painted = paint_predictions(visualizer, image, sample, score_thr=0.3)

    assert len(calls) == 1
    call = calls[0]
    assert (call['draw_gt'], call['draw_pred'], call['show'], call['pred_score_thr']) == (False, True, False, 0.3)
    assert call['data_sample'] is sample and call['image'] is image
    np.testing.assert_array_equal(painted, call['drawn'])  # exactly what the framework drew
    assert painted.shape == image.shape
    assert (painted[10, 10:41] != 100).any()  # the car box's top edge
    np.testing.assert_array_equal(painted[35:56, 50:71], image[35:56, 50:71])  # 0.1 < score_thr: not drawn
    assert not glob.glob(osp.join(str(tmp_path), '**', '*.png'), recursive=True)  # no extra image saved
    visualizer.add_image('after', image)  # the backends are back once the panel is painted
    assert glob.glob(osp.join(str(tmp_path), '**', 'after_0.png'), recursive=True)


def test_hook_panel_is_painted_by_the_runner_visualizer(tmp_path, monkeypatch, cityscapes_root,
                                                        official_nuscenes_saliency):
    """LZUVisualizationHook's predictions panel is runner.visualizer's drawing of the sample (mmseg, centre crop)."""
    pytest.importorskip('mmseg', reason='MMSegmentation is not installed')
    from mmengine.config import Config
    from mmengine.dataset import Compose
    from mmengine.registry import DefaultScope
    from mmengine.structures import PixelData

    import lzu_mm.mmseg  # noqa: F401
    from lzu_mm.mmseg import LZUSegLocalVisualizer
    from lzu_mm.visualization import LZUVisualizationHook
    from tests.conftest import REPO_ROOT
    from tests.visualization.configs import SEG_SMALL, zoom_grid_shape, zoom_transform_index
    from tests.visualization.utils import resampled_official_saliency

    config = osp.join(REPO_ROOT, SEG_SMALL[1])
    cfg = Config.fromfile(config)
    saliency = resampled_official_saliency(official_nuscenes_saliency, zoom_grid_shape(config),
                                           str(tmp_path / 'saliency.npy'))
    pipeline = cfg.test_dataloader.dataset.pipeline
    pipeline[zoom_transform_index(config)].saliency = saliency
    cfg.test_pipeline = pipeline
    sample_name = 'frankfurt/frankfurt_000000_000294'
    with DefaultScope.overwrite_default_scope('mmseg'):
        packed = Compose(pipeline)(dict(
            img_path=osp.join(cityscapes_root, 'leftImg8bit', 'val', sample_name + '_leftImg8bit.png'),
            seg_map_path=osp.join(cityscapes_root, 'gtFine', 'val', sample_name + '_gtFine_labelTrainIds.png'),
            reduce_zero_label=False, seg_fields=[]))
        sample = packed['data_samples']
        side = sample.ori_shape[0]  # the centre crop: 128 of the 128x256 frame
        sample.pred_sem_seg = PixelData(data=torch.randint(0, 19, (1, side, side)))
        visualizer = LZUSegLocalVisualizer(name='lzu_test_hook_panel')
        visualizer.set_dataset_meta(dataset_name='cityscapes')
        calls = spy_on_add_datasample(monkeypatch, visualizer)
        runner = SimpleNamespace(cfg=cfg, model=torch.nn.Module(), visualizer=visualizer)
        fig = LZUVisualizationHook(interval=1).figure_for(runner, sample)

    assert len(calls) == 1 and calls[0]['data_sample'] is sample and not calls[0]['draw_gt']
    assert calls[0]['image'].shape[:2] == (side, side)  # the hook hands the visualizer the crop
    pred_ax = [ax for ax in fig.axes if ax.get_title().startswith('predictions')][0]
    assert 'LZUSegLocalVisualizer' in pred_ax.get_title() and 'class map' in pred_ax.get_title()
    np.testing.assert_array_equal(pred_ax.images[0].get_array(), calls[0]['drawn'])
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert len(titles) == 6  # the five warp panels + the framework's drawing, in one figure


def test_paint_predictions_mono3d_projects_into_the_original_image():
    """Det3DLocalVisualizer draws the 3-D box with the intrinsics taken back from the resized input to the original
    image (cam2img rows / scale_factor), on a copy of the sample."""
    pytest.importorskip('mmdet3d', reason='MMDetection3D is not installed')
    from mmdet3d.structures import CameraInstance3DBoxes, Det3DDataSample
    from mmdet3d.visualization import Det3DLocalVisualizer
    from mmengine.structures import InstanceData

    visualizer = Det3DLocalVisualizer(name='lzu_test_paint_3d')
    visualizer.dataset_meta = dict(classes=('car', ), palette=[(255, 0, 0)])
    k = np.array([[500., 0, 200, 0], [0, 500., 100, 0], [0, 0, 1, 0], [0, 0, 0, 1]])  # original 400x200 image
    resized = (k * np.array([[0.5], [0.5], [1], [1]])).tolist()  # the 0.5x input's intrinsics, as the pipeline sets
    sample = Det3DDataSample(metainfo=dict(cam2img=resized, scale_factor=(0.5, 0.5), img_shape=(100, 200),
                                           ori_shape=(200, 400), box_type_3d=CameraInstance3DBoxes))
    sample.pred_instances_3d = InstanceData(  # a car 10 m ahead on the optical axis
        bboxes_3d=CameraInstance3DBoxes(torch.tensor([[0., 1., 10., 4., 1.5, 2., 0.]])),
        scores_3d=torch.tensor([0.9]), labels_3d=torch.tensor([0]))
    image = np.full((200, 400, 3), 100, np.uint8)

    painted = paint_predictions(visualizer, image, sample)

    cols = np.argwhere((painted != 100).any(-1))[:, 1]
    assert abs((cols.min() + cols.max()) / 2 - 200) < 10  # centred on the original principal point, not on 100
    assert sample.cam2img == resized  # the sample itself is not modified
