"""FixedSaliencyZoom3D on the real nuScenes sample: uniform intrinsics / 2D annotations, unchanged depths."""
import numpy as np
import pytest

pytest.importorskip('mmdet3d')

from tests.mmdet3d.utils import LOAD_ANNOTATIONS, nuscenes_mono3d_dataset, unpacked_samples, zoom_cfg  # noqa: E402

LOAD = dict(type='LoadImageFromFileMono3D', backend_args=None)


def _project(points: np.ndarray, cam2img: np.ndarray) -> np.ndarray:
    """Pinhole projection of ``[N, 3]`` camera points (metres) with a 3x3 / 3x4 / 4x4 ``cam2img`` -> ``[N, 2]`` px."""
    view = np.eye(4)
    view[:cam2img.shape[0], :cam2img.shape[1]] = cam2img
    homo = np.concatenate([points, np.ones((len(points), 1))], 1) @ view.T
    return homo[:, :2] / homo[:, 2:3]


def _samples(root, pipeline):
    return unpacked_samples(nuscenes_mono3d_dataset(root, [LOAD, LOAD_ANNOTATIONS] + pipeline))


def test_zoom_scales_intrinsics_and_2d_annotations_uniformly(nuscenes_root, official_nuscenes_saliency):
    """Projecting the GT 3D centres with the zoomed cam2img lands on the zoomed centers_2d (within 0.5 px)."""
    originals = _samples(nuscenes_root, [])
    zoomed = _samples(nuscenes_root, [zoom_cfg(official_nuscenes_saliency)])
    assert len(zoomed) == 6
    assert sum(len(s['gt_bboxes_3d']) for s in zoomed) == 84
    worst = 0.
    for orig, out in zip(originals, zoomed):
        assert out['img'].shape[:2] == (225, 400) and out['img_shape'] == (225, 400)
        assert out['scale_factor'] == pytest.approx((0.25, 0.25))
        assert out['lzu_zoom']['grid'].shape == (27, 48, 2)
        cam2img = np.asarray(out['cam2img'])
        np.testing.assert_allclose(cam2img[:2], np.asarray(orig['cam2img'], dtype=np.float64)[:2] * 0.25, rtol=1e-12)
        np.testing.assert_allclose(out['gt_bboxes'], orig['gt_bboxes'] * 0.25, rtol=1e-6, atol=1e-4)
        np.testing.assert_allclose(out['centers_2d'], orig['centers_2d'] * 0.25, rtol=1e-6, atol=1e-4)
        np.testing.assert_array_equal(out['depths'], orig['depths'])  # depths stay
        np.testing.assert_array_equal(out['gt_bboxes_3d'].tensor.numpy(), orig['gt_bboxes_3d'].tensor.numpy())
        if len(out['gt_bboxes_3d']):
            centres = _project(out['gt_bboxes_3d'].gravity_center.numpy().astype(np.float64), cam2img)
            error = np.abs(centres - out['centers_2d']).max()
            worst = max(worst, error)
    assert worst <= 0.5, worst


def test_zoom_then_flip_keeps_projection(nuscenes_root, official_nuscenes_saliency):
    """RandomFlip3D after the zoom flips cam2img and centers_2d consistently (and records the direction)."""
    flipped = _samples(nuscenes_root, [zoom_cfg(official_nuscenes_saliency),
                                       dict(type='RandomFlip3D', flip_ratio_bev_horizontal=1.0)])
    for out in flipped:
        assert out['flip'] and out['flip_direction'] == 'horizontal'
        if len(out['gt_bboxes_3d']):
            centres = _project(out['gt_bboxes_3d'].gravity_center.numpy().astype(np.float64), out['cam2img'])
            assert np.abs(centres - out['centers_2d']).max() <= 0.5


def test_zoom_matches_uniform_resize_except_the_image(nuscenes_root, official_nuscenes_saliency):
    """Everything but the pixels is what MMDetection3D's Resize3D produces."""
    uniform = _samples(nuscenes_root, [dict(type='Resize3D', scale=(400, 225), keep_ratio=True)])
    zoomed = _samples(nuscenes_root, [zoom_cfg(official_nuscenes_saliency)])
    for u, z in zip(uniform, zoomed):
        for key in ('gt_bboxes', 'centers_2d', 'depths'):
            np.testing.assert_allclose(z[key], u[key], rtol=1e-6, atol=1e-4)
        np.testing.assert_allclose(z['cam2img'], np.asarray(u['cam2img'], dtype=np.float64), rtol=1e-12)
        assert z['img'].shape == u['img'].shape
        assert np.abs(z['img'].astype(float) - u['img'].astype(float)).mean() > 1.  # the pixels differ: a real zoom


def test_chained_resize_composes_scale_factor(nuscenes_root, official_nuscenes_saliency):
    """Table 2: input first resized to 0.25x, then zoomed to 0.5x -> cam2img x0.5, scale_factor 0.5, 800x450."""
    originals = _samples(nuscenes_root, [])
    chained = _samples(nuscenes_root, [dict(type='Resize3D', scale=(400, 225), keep_ratio=True),
                                       zoom_cfg(official_nuscenes_saliency, scale=(800, 450))])
    for orig, out in zip(originals, chained):
        assert out['img'].shape[:2] == (450, 800)
        assert out['scale_factor'] == pytest.approx((0.5, 0.5))
        np.testing.assert_allclose(np.asarray(out['cam2img'])[:2],
                                   np.asarray(orig['cam2img'], dtype=np.float64)[:2] * 0.5, rtol=1e-9)
        np.testing.assert_allclose(out['centers_2d'], orig['centers_2d'] * 0.5, rtol=1e-6, atol=1e-4)


def test_wrong_saliency_shape_is_a_clear_error(official_nuscenes_saliency):
    from mmdet3d.registry import TRANSFORMS
    with pytest.raises(ValueError, match=r'nuscenes_fixed_saliency\.pkl.*\(31, 51\)|\(31, 51\).*nuscenes_fixed'):
        TRANSFORMS.build(zoom_cfg(official_nuscenes_saliency, grid_shape=(31, 51)))
    with pytest.raises(FileNotFoundError, match='missing.pkl'):
        TRANSFORMS.build(zoom_cfg('data/nuscenes/missing.pkl'))


def test_sample_without_cam2img_is_a_clear_error(official_nuscenes_saliency):
    from mmdet3d.registry import TRANSFORMS
    zoom = TRANSFORMS.build(zoom_cfg(official_nuscenes_saliency))
    results = dict(img=np.zeros((90, 160, 3), np.uint8), img_shape=(90, 160), ori_shape=(90, 160),
                   img_path='CAM_FRONT/x.jpg')
    with pytest.raises(ValueError, match=r'x\.jpg has no cam2img'):
        zoom(results)
    with pytest.raises(ValueError, match='cam2img .* must be a 3x3'):
        zoom(dict(results, cam2img=[1., 2., 3.]))
