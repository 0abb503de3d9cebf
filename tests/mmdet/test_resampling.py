"""Detectors that resample the full-resolution image themselves (positions x interpolation) on real images:
equivalences with the pipeline's resize, DownsizeNet's bilinear start, the learned saliency's identity start and its
gradients through inversion and unzoom, the geometry harness on the learned / DownsizeNet paths, optimiser groups."""
import copy

import pytest
import torch
from mmengine.dataset import pseudo_collate

from lzu_mm.common import DownsizeNet, SaliencyNet
from mmdet.registry import DATASETS, TRANSFORMS
from tests.position_harness import assert_geometry, build_pipeline, coordinate_samples, geometry_report

from .conftest import bump_saliency
from .test_detectors import META, assert_same_predictions, build, model_cfg
from .test_geometry import SHAPES, _builder, _config, _strides

GRID = (31, 51)
SIZES = ((288, 162), (224, 126))  # two sizes: the second sample is padded in the batch
LEARNED = dict(saliency_net=dict(type='SaliencyNet', input_size=(62, 102)), grid_shape=GRID, attraction_fwhm=4.)


def real_batch(argoverse_hd, model, resize_type, training=False, indices=(0, 1), to_float32=True):
    """The real Argoverse-HD-format images through ``LoadImageFromFile(to_float32) -> resize -> pack``, padded."""
    items = []
    for idx, scale in zip(indices, SIZES):
        dataset = DATASETS.build(
            dict(type='ArgoverseHDDataset', data_root=argoverse_hd['root'], ann_file=argoverse_hd['val'],
                 data_prefix=dict(img=argoverse_hd['img_prefix']), test_mode=True, serialize_data=False, pipeline=[
                     dict(type='LoadImageFromFile', to_float32=to_float32),
                     dict(type='LoadAnnotations', with_bbox=True),
                     dict(type=resize_type, scale=scale, keep_ratio=True),
                     dict(type='PackDetInputs', meta_keys=META + ('homography_matrix', ))
                 ]))
        items.append(dataset[idx])
    return model.data_preprocessor(pseudo_collate(items), training)


def predict(model, data, rescale):
    with torch.no_grad():
        return model.predict(data['inputs'], copy.deepcopy(data['data_samples']), rescale=rescale)


def same_as_pipeline_resize(argoverse_hd, model, ulps=2):
    """``model`` (ResizeWithSource, model-side resampling) vs RetinaNet with the same weights on the pipeline's
    Resize, both from the float32 image: boxes in the network frame within 1e-4, in the original within 1e-4 +
    ``ulps`` float32 ulps (1600 px)."""
    plain = build(model_cfg(type='RetinaNet'), seed=1)
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith('lzu_')}, strict=True)
    ours, theirs = real_batch(argoverse_hd, model, 'ResizeWithSource'), real_batch(argoverse_hd, plain, 'Resize')
    assert ours['data_samples'][1].img_shape[0] < ours['data_samples'][1].batch_input_shape[0]  # padded
    assert_same_predictions(predict(model, ours, False), predict(plain, theirs, False))
    return assert_same_predictions(predict(model, ours, True), predict(plain, theirs, True), ulps=ulps)


def test_model_side_uniform_bilinear_equals_the_pipeline_resize(argoverse_hd):
    """lzu.positions='uniform' + bilinear: the detector's predictions are the base detector's on the pipeline's
    Resize (same float32 image); nothing is unzoomed."""
    model = build(model_cfg(type='LZURetinaNet', lzu=dict(positions='uniform')))
    same_as_pipeline_resize(argoverse_hd, model)
    data = real_batch(argoverse_hd, model, 'ResizeWithSource')
    with torch.no_grad(), model.lzu_context(data['inputs'], data['data_samples']):
        assert model._lzu_state.warp is None and model._lzu_state.grid is None
    assert data['data_samples'][0].lzu_zoom['grid'].shape == (2, 2, 2)  # the identity warp, recorded


@pytest.mark.parametrize('activation', ['softmax', 'sigmoid'])
def test_downsizenet_starts_as_bilinear_in_the_detector(argoverse_hd, activation):
    """DownsizeNet at initialisation, uniform positions: the base detector's predictions (uniform + DownsizeNet);
    on LZ positions it predicts as LZ + bilinear (LZ + DownsizeNet)."""
    lzu = dict(positions='uniform', interpolation=dict(type='DownsizeNet', activation=activation))
    model = build(model_cfg(type='LZURetinaNet', lzu=lzu))
    assert isinstance(model.lzu_interpolation, DownsizeNet)
    same_as_pipeline_resize(argoverse_hd, model)
    bump = bump_saliency(GRID)
    lz_net = build(
        model_cfg(type='LZURetinaNet',
                  lzu=dict(saliency=bump, grid_shape=GRID, attraction_fwhm=4., interpolation=dict(type='DownsizeNet'))))
    lz = build(model_cfg(type='LZURetinaNet', lzu=dict(saliency=bump, grid_shape=GRID, attraction_fwhm=4.)))
    lz.load_state_dict({k: v for k, v in lz_net.state_dict().items() if not k.startswith('lzu_')})
    data = real_batch(argoverse_hd, lz, 'ResizeWithSource', to_float32=False)  # uint8 sources, as in training
    assert_same_predictions(predict(lz_net, data, False), predict(lz, data, False))


def test_learned_saliency_starts_as_the_base_detector(argoverse_hd):
    """A saliency net with constant output (its initialisation): identity warp, the base detector's predictions;
    the per-sample learned grid and saliency are recorded in the predictions' metainfo (for the panels)."""
    model = build(model_cfg(type='LZURetinaNet', lzu=LEARNED))
    assert isinstance(model.lzu_saliency_net, SaliencyNet)
    same_as_pipeline_resize(argoverse_hd, model, ulps=4)  # the identity unzoom at float32 positions: 2.7e-4 px
    out = predict(model, real_batch(argoverse_hd, model, 'ResizeWithSource'), True)
    record = out[0].lzu_zoom
    assert record['grid'].shape == (*GRID, 2) and record['saliency'].shape == GRID and 'image' not in record


def _perturbed_learned(lzu=LEARNED, std=0.3, seed=0):
    model = build(model_cfg(type='LZURetinaNet', lzu=lzu), seed=seed)
    with torch.no_grad():
        model.lzu_saliency_net.head.weight.normal_(std=std, generator=torch.Generator().manual_seed(seed))
    return model


def _grad_norms(model, prefix):
    grads = [p.grad for n, p in model.named_parameters() if n.startswith(prefix)]
    assert grads and all(g is not None and bool(torch.isfinite(g).all()) for g in grads)
    return [float(g.abs().sum()) for g in grads]


@pytest.mark.parametrize('path', ['zoom and unzoom', 'unzoom only'])
def test_gradients_reach_the_saliency_net_through_inversion_and_unzoom(argoverse_hd, monkeypatch, path):
    """Training loss on the real images: every saliency-net parameter gets a finite, non-zero gradient, also when
    the zoom's sampling positions are cut from the graph (only the exact inversion in the unzoom remains)."""
    import lzu_mm.common.model as model_module
    model = _perturbed_learned(dict(LEARNED, saliency_net=dict(LEARNED['saliency_net'], entropy_weight=0.1))).train()
    if path == 'unzoom only':
        real = model_module.zoom_sampling_grid
        monkeypatch.setattr(model_module, 'zoom_sampling_grid', lambda grid, *a, **k: real(grid.detach(), *a, **k))
    data = real_batch(argoverse_hd, model, 'ResizeWithSource', training=True, to_float32=False)
    losses = model.loss(data['inputs'], data['data_samples'])
    assert 'loss_saliency_entropy' in losses and float(losses['loss_saliency_entropy']) > 0
    if path == 'unzoom only':
        losses.pop('loss_saliency_entropy')  # the regulariser reaches the net directly
    total, _ = model.parse_losses(losses)
    total.backward()
    assert all(g > 0 for g in _grad_norms(model, 'lzu_saliency_net.'))


def test_learned_and_downsizenet_geometry():
    """The position-encoding harness on the learned path: a (perturbed) saliency net's per-sample grids and a
    (perturbed) DownsizeNet, padded batch, flip after the resize; every cell of P3-P7 where the head expects it."""
    cfg = _config('0.25x')
    cfg.test_pipeline = [
        t if t['type'] != 'FixedSaliencyZoom' else dict(type='ResizeWithSource', scale=cfg.img_scale, keep_ratio=True)
        for t in cfg.test_pipeline
    ]
    inner = _builder(cfg, **dict(LEARNED, interpolation=dict(type='DownsizeNet')))

    def build_model(frame):
        torch.manual_seed(0)
        model = inner(frame)
        gen = torch.Generator().manual_seed(1)
        with torch.no_grad():
            model.lzu_saliency_net.head.weight.normal_(std=3., generator=gen)
            model.lzu_interpolation.coefficients.weight.normal_(std=0.05, generator=gen)
        return model

    run = build_pipeline(TRANSFORMS, cfg.test_pipeline, None, dict(type='RandomFlip', prob=1.))
    samples = [
        coordinate_samples(run, shape, cfg.img_scale, [flip])[0] for shape, flip in zip(SHAPES, (None, 'horizontal'))
    ]
    report = geometry_report(build_model, samples, _strides(inner))
    assert_geometry(report)  # measured: content <= 0.080 cell, frame <= 7.4e-6 cell
    # the learned warp is non-uniform (up to 1 P3 cell off the identity) and differs per image: not vacuous. (A
    # rougher random warp, std 10, exceeds content mode's 0.15-cell bound through the linearisation of the warp
    # between cells, as any warp would; frame mode stays exact.)
    model = build_model(True)
    data = model.data_preprocessor(pseudo_collate(copy.deepcopy(samples)), False)
    with torch.no_grad(), model.lzu_context(data['inputs'], data['data_samples']):
        grid = model._lzu_state.grid
    from lzu_mm.ops import identity_grid
    assert float((grid - identity_grid(GRID)).abs().max()) > 0.03 and not torch.allclose(grid[0], grid[1])


def test_learned_pieces_need_the_full_resolution_source(argoverse_hd):
    """A model with DownsizeNet or a saliency net fed a batch the pipeline resized is refused (it would silently
    learn nothing), naming ResizeWithSource."""
    for lzu in (dict(positions='uniform', interpolation=dict(type='DownsizeNet')), LEARNED):
        model = build(model_cfg(type='LZURetinaNet', lzu=lzu))
        data = real_batch(argoverse_hd, model, 'Resize')
        with pytest.raises(ValueError, match='ResizeWithSource'):
            predict(model, data, True)


def test_own_optimiser_groups():
    """paramwise_cfg custom_keys give the saliency net and DownsizeNet their own learning rates."""
    from mmengine.optim import build_optim_wrapper
    model = build(model_cfg(type='LZURetinaNet', lzu=dict(LEARNED, interpolation=dict(type='DownsizeNet'))))
    wrapper = build_optim_wrapper(model, dict(
        optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=1e-4),
        paramwise_cfg=dict(custom_keys={'lzu_saliency_net': dict(lr_mult=0.1, decay_mult=0.),
                                        'lzu_interpolation': dict(lr_mult=2.)})))
    names = {id(p): n for n, p in model.named_parameters()}
    seen = set()
    for group in wrapper.optimizer.param_groups:
        for p in group['params']:
            name = names[id(p)]
            seen.add(name.split('.')[0])
            if name.startswith('lzu_saliency_net.'):
                assert group['lr'] == pytest.approx(1e-3) and group['weight_decay'] == 0
            elif name.startswith('lzu_interpolation.'):
                assert group['lr'] == pytest.approx(2e-2)
            else:
                assert group['lr'] == pytest.approx(1e-2)
    assert {'lzu_saliency_net', 'lzu_interpolation', 'backbone'} <= seen


NEW_CONFIGS = {
    'retinanet_r50_fpn_downsizenet_3e_argoverse-hd-0.5x.py': ('LZURetinaNet', 'DownsizeNet', None),
    'retinanet_r50_fpn_downsizenet-from-pspnet_3e_argoverse-hd-0.5x.py': ('LZURetinaNet', 'DownsizeNet', None),
    'retinanet_r50_fpn_lzu-fixed-downsizenet_3e_argoverse-hd-0.5x.py': ('LZURetinaNet', 'DownsizeNet', None),
    'retinanet_r50_fpn_lzu-learned_3e_argoverse-hd-0.5x.py': ('LZURetinaNet', None, 'SaliencyNet'),
    **{f'retinanet_r50_fpn_fovea-fixed_3e_argoverse-hd-{s}.py': ('FOVEARetinaNet', None, None)
       for s in ('0.25x', '0.5x', '0.75x', '1x')},
}


@pytest.mark.parametrize('name', sorted(NEW_CONFIGS))
def test_config_builds_and_passes_the_checks(name, tmp_path):
    """Each new config passes check_lzu_config and builds its model (a stand-in saliency file where one is read)."""
    import os.path as osp

    from mmengine.config import Config

    from lzu_mm.common import check_lzu_config
    from mmdet.registry import MODELS

    from .conftest import CONFIG_DIR, save_pickled_saliency
    cfg = Config.fromfile(osp.join(CONFIG_DIR, name))
    check_lzu_config(cfg)
    lzu = cfg.model.get('lzu') or {}
    if isinstance(lzu.get('saliency'), str):
        lzu.saliency = save_pickled_saliency(bump_saliency(GRID), tmp_path / 'sal.pkl')
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    kind, interpolation, net = NEW_CONFIGS[name]
    assert type(model).__name__ == kind
    assert type(model.lzu_interpolation).__name__ == (interpolation or 'NoneType')
    assert type(model.lzu_saliency_net).__name__ == (net or 'NoneType')
    if 'lzu-fixed-downsizenet' in name:  # the warp of the LZU-fixed config, zoomed model-side
        assert cfg.lzu_zoom == Config.fromfile(osp.join(CONFIG_DIR, name.replace('-downsizenet', ''))).lzu_zoom
    if 'fovea' in name:  # zoomed by the pipeline exactly as the LZU-fixed config of the same scale
        lzu_cfg = Config.fromfile(osp.join(CONFIG_DIR, name.replace('fovea-fixed', 'lzu-fixed')))
        assert cfg.test_dataloader.dataset.pipeline == lzu_cfg.test_dataloader.dataset.pipeline
