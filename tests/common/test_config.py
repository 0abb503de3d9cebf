"""lzu_mm.common.config via tools/train.py and tools/test.py: one LZ warp per experiment, data overrides, short runs.

The acceptance check of the saliency option: ``--cfg-options
lzu_zoom.saliency=FILE`` and ``--saliency FILE`` change the grid that every
pipeline's zoom transform records (train, val, test) and the model's own warp;
a config whose pipelines disagree is refused. Configs are the real ones of the
three families; nothing here needs the sample data.
"""
import importlib.util
import os.path as osp
import pickle

import numpy as np
import pytest
import torch

from lzu_mm.common.config import find_lz_sites, override_data, short_run, without_pretrained
from lzu_mm.ops import LZWarp, load_saliency
from tests.conftest import REPO_ROOT

pytest.importorskip('mmdet')

FAMILIES = {  # scope, LZU config, its grid shape
    'retinanet': ('mmdet', 'configs/lzu_retinanet/retinanet_r50_fpn_lzu-fixed_3e_argoverse-hd-0.25x.py', (31, 51)),
    'retinanet-from-0.25x':
    ('mmdet', 'configs/lzu_retinanet/retinanet_r50_fpn_lzu-fixed_3e_argoverse-hd-1x_from-0.25x.py', (31, 51)),
    'pspnet': ('mmseg', 'configs/lzu_pspnet/pspnet_r50-fpn_lzu-fixed_4xb2-80k_cityscapes-64x64.py', (32, 32)),
    'fcos3d': ('mmdet3d', 'configs/lzu_fcos3d/fcos3d_r50-caffe-dcn_fpn_head-gn_lzu-fixed_8xb2-1x_nus-mono3d-0.25x.py',
               (27, 48)),
}
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(f'lzu_tool_{name}', osp.join(REPO_ROOT, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


train_tool = load_tool('train')
test_tool = load_tool('test')


def bump(grid_shape, centre, path) -> str:
    """A pickled ``(1, 1, h, w)`` saliency (the authors' format): a Gaussian bump at ``centre`` (y, x in [0, 1])."""
    h, w = grid_shape
    y, x = torch.linspace(0, 1, h)[:, None], torch.linspace(0, 1, w)[None]
    s = torch.exp(-((y - centre[0])**2 + (x - centre[1])**2) / (2 * 0.1**2)) + 0.02
    with open(path, 'wb') as f:
        pickle.dump((s / s.sum())[None, None], f)
    return str(path)


def expected_grid(path, grid_shape, attraction_fwhm, separable=True, anti_crop=True) -> np.ndarray:
    warp = LZWarp(load_saliency(path, grid_shape), separable=separable, attraction_fwhm=attraction_fwhm,
                  anti_crop=anti_crop)
    return warp.grid()[0].numpy()


def recorded_grid(scope: str, transform_cfg: dict) -> np.ndarray:
    """Build a pipeline's zoom transform as the dataloader would, run it, return the grid it records."""
    from mmengine.registry import TRANSFORMS, DefaultScope
    with DefaultScope.overwrite_default_scope(scope):
        transform = TRANSFORMS.build(transform_cfg)
    results = transform(dict(img=np.zeros((90, 160, 3), np.uint8), img_shape=(90, 160), ori_shape=(90, 160),
                             cam2img=np.eye(3).tolist()))
    return np.asarray(results['lzu_zoom']['grid'])


def zoom_steps(cfg, loader: str):
    steps = [t for t in cfg[loader].dataset.pipeline if 'saliency' in t]
    assert len(steps) == 1, (loader, steps)
    return steps[0]


@pytest.mark.parametrize('how', ['cfg-options', 'flag'])
@pytest.mark.parametrize('family', list(FAMILIES))
def test_saliency_reaches_every_pipeline(family, how, tmp_path):
    scope, config, grid_shape = FAMILIES[family]
    pytest.importorskip(scope)
    config = osp.join(REPO_ROOT, config)
    a = bump(grid_shape, (0.4, 0.3), tmp_path / 'a.pkl')
    b = bump(grid_shape, (0.6, 0.7), tmp_path / 'b.pkl')
    grids = {}
    for path in (a, b):
        opts = ['--cfg-options', f'lzu_zoom.saliency={path}'] if how == 'cfg-options' else ['--saliency', path]
        cfg = train_tool.build_cfg(train_tool.parse_args([config, '--work-dir', str(tmp_path / 'w'), *opts]))
        assert cfg.lzu_zoom.saliency == path
        fwhm = cfg.lzu_zoom.attraction_fwhm
        for loader in LOADERS:  # every pipeline the run builds records the new warp
            grid = recorded_grid(scope, zoom_steps(cfg, loader))
            np.testing.assert_allclose(grid, expected_grid(path, grid_shape, fwhm), atol=1e-6)
            grids.setdefault(path, []).append(grid)
        # and the pipelines of the config file that the runner does not build (train_pipeline / test_pipeline)
        assert all(site['saliency'] == path for site in find_lz_sites(cfg).values())
    assert not np.allclose(grids[a][0], grids[b][0], atol=1e-3)  # the two saliencies give different warps


def test_other_lz_parameters_reach_the_pipelines(tmp_path):
    scope, config, grid_shape = FAMILIES['fcos3d']
    pytest.importorskip(scope)
    a = bump(grid_shape, (0.4, 0.3), tmp_path / 'a.pkl')
    cfg = train_tool.build_cfg(train_tool.parse_args([
        osp.join(REPO_ROOT, config), '--work-dir', str(tmp_path / 'w'), '--saliency', a, '--cfg-options',
        'lzu_zoom.attraction_fwhm=4.', 'lzu_zoom.separable=False'
    ]))
    for loader in LOADERS:
        step = zoom_steps(cfg, loader)
        assert step.attraction_fwhm == 4. and step.separable is False
        np.testing.assert_allclose(recorded_grid(scope, step), expected_grid(a, grid_shape, 4., separable=False),
                                   atol=1e-6)


def test_saliency_reaches_a_model_that_zooms_itself(tmp_path):
    """A config whose model zooms (``model.lzu``, pipelines resize uniformly): the model's warp follows lzu_zoom."""
    from mmdet.registry import MODELS
    from mmengine.registry import DefaultScope
    uniform = osp.join(REPO_ROOT, 'configs/lzu_retinanet/retinanet_r50_fpn_3e_argoverse-hd-0.25x.py')
    config = tmp_path / 'model_zoom.py'
    lzu = "dict(saliency='data/not-there.pkl', grid_shape=(31, 51), attraction_fwhm=4.)"
    config.write_text(f'_base_ = [{uniform!r}]\nlzu_zoom = {lzu}\nmodel = dict(type="LZURetinaNet", lzu={lzu})\n')
    a = bump((31, 51), (0.4, 0.3), tmp_path / 'a.pkl')
    cases = ((['--saliency', a], 4.), (['--cfg-options', f'lzu_zoom.saliency={a}', 'lzu_zoom.attraction_fwhm=8.'], 8.))
    for opts, fwhm in cases:
        cfg = train_tool.build_cfg(train_tool.parse_args([str(config), '--work-dir', str(tmp_path / 'w'), *opts]))
        with DefaultScope.overwrite_default_scope('mmdet'):
            model = MODELS.build(without_pretrained(cfg.model))
        np.testing.assert_allclose(model.lzu_warp.grid()[0].numpy(), expected_grid(a, (31, 51), fwhm), atol=1e-6)


def test_pipelines_that_disagree_are_refused(tmp_path):
    scope, config, grid_shape = FAMILIES['retinanet']
    config = osp.join(REPO_ROOT, config)
    a = bump(grid_shape, (0.4, 0.3), tmp_path / 'a.pkl')
    work = ['--work-dir', str(tmp_path / 'w')]
    # training runs every pipeline: overriding the test pipeline's saliency only is refused, naming the places
    with pytest.raises(ValueError, match=r'disagree.*test_dataloader\.dataset\.pipeline\.1.*lzu_zoom\.saliency'):
        train_tool.build_cfg(train_tool.parse_args(
            [config, *work, '--cfg-options', f'test_dataloader.dataset.pipeline.1.saliency={a}']))
    # testing runs the test pipeline only: the same override is the experiment's saliency, spread everywhere
    cfg = test_tool.build_cfg(test_tool.parse_args(
        [config, 'ckpt.pth', *work, '--cfg-options', f'test_dataloader.dataset.pipeline.1.saliency={a}']))
    assert cfg.lzu_zoom.saliency == a and zoom_steps(cfg, 'train_dataloader').saliency == a
    # the flag and the option naming two files
    with pytest.raises(ValueError, match='--saliency .* disagree'):
        train_tool.build_cfg(train_tool.parse_args(
            [config, *work, '--saliency', a, '--cfg-options', 'lzu_zoom.saliency=other.pkl']))
    # a config file whose pipelines disagree
    bad = tmp_path / 'bad.py'
    bad.write_text(f'_base_ = [{config!r}]\nval_dataloader = dict(dataset=dict(pipeline=[\n'
                   "    dict(type='LoadImageFromFile'),\n"
                   "    dict(type='FixedSaliencyZoom', scale=(480, 300), keep_ratio=True, saliency='x.pkl', "
                   "grid_shape=(31, 51), attraction_fwhm=4.),\n"
                   "    dict(type='PackDetInputs')]))\n")
    with pytest.raises(ValueError, match=r"saliency='x.pkl' in val_dataloader\.dataset\.pipeline\.1"):
        train_tool.build_cfg(train_tool.parse_args([str(bad), *work]))


def test_saliency_flag_on_a_uniform_config_is_an_error(tmp_path):
    config = osp.join(REPO_ROOT, 'configs/lzu_retinanet/retinanet_r50_fpn_3e_argoverse-hd-0.25x.py')
    with pytest.raises(ValueError, match='no LZ warp'):
        train_tool.build_cfg(train_tool.parse_args([config, '--saliency', 'a.pkl', '--work-dir', str(tmp_path)]))


# ------------------------------------------------------------------------------------- --data-root / --ann-file
@pytest.mark.parametrize('family', ['retinanet', 'pspnet', 'fcos3d'])
def test_data_root_reaches_every_loader_and_evaluator(family, tmp_path):
    scope, config, _ = FAMILIES[family]
    pytest.importorskip(scope)
    root = tmp_path / 'data'
    ann = {'retinanet': 'ann/val.json', 'pspnet': 'list.txt', 'fcos3d': 'infos.pkl'}[family]
    (root / osp.dirname(ann)).mkdir(parents=True, exist_ok=True)
    (root / ann).write_text('')
    args = [osp.join(REPO_ROOT, config), '--work-dir', str(tmp_path / 'w'), '--data-root', str(root), '--ann-file', ann]
    cfg = train_tool.build_cfg(train_tool.parse_args(args))
    test_prefix = cfg.test_dataloader.dataset.data_prefix
    for loader in LOADERS:
        ds = cfg[loader].dataset
        assert ds.data_root == str(root) and ds.ann_file == ann and ds.data_prefix == test_prefix
    evaluators = [e for name in ('val_evaluator', 'test_evaluator')
                  for e in (cfg[name] if isinstance(cfg[name], list) else [cfg[name]])]
    if family == 'retinanet':
        assert all(e.ann_file == osp.join(str(root), ann) for e in evaluators)
    if family == 'fcos3d':  # the full-dataset metric becomes the subset metric, for validation too
        assert [e.type for e in evaluators] == ['NuScenesSubsetMetric'] * 2
        assert all(e.data_root == str(root) and e.ann_file == osp.join(str(root), ann) for e in evaluators)
    if family == 'pspnet':  # every loader reads the test split's folders
        assert cfg.train_dataloader.dataset.data_prefix.img_path == 'leftImg8bit/val'


def test_data_root_errors(tmp_path):
    config = osp.join(REPO_ROOT, FAMILIES['retinanet'][1])
    with pytest.raises(FileNotFoundError, match='--data-root'):
        train_tool.build_cfg(train_tool.parse_args([config, '--data-root', str(tmp_path / 'nope')]))
    with pytest.raises(FileNotFoundError, match='--ann-file.*missing.json'):
        train_tool.build_cfg(
            train_tool.parse_args([config, '--data-root', str(tmp_path), '--ann-file', 'missing.json']))
    with pytest.raises(ValueError, match='--ann-file needs --data-root'):
        train_tool.build_cfg(train_tool.parse_args([config, '--ann-file', 'x.json']))
    with pytest.raises(ValueError, match='no train/val/test dataloader'):
        override_data(dict(model=dict()), str(tmp_path))


# ---------------------------------------------------------------------------------- --max-iters, output dirs
def test_max_iters_on_epoch_and_iteration_loops(tmp_path):
    from mmengine.config import Config
    epoch_cfg = Config.fromfile(osp.join(REPO_ROOT, FAMILIES['retinanet'][1]))
    short_run(epoch_cfg, 3)
    assert epoch_cfg.train_cfg.max_epochs == 1 and 'max_iters' not in epoch_cfg.train_cfg
    assert epoch_cfg.train_dataloader.dataset.indices == 3 * epoch_cfg.train_dataloader.batch_size
    assert epoch_cfg.train_cfg.val_interval == 1 and epoch_cfg.default_hooks.checkpoint.interval == 1
    pytest.importorskip('mmseg')
    iter_cfg = Config.fromfile(osp.join(REPO_ROOT, FAMILIES['pspnet'][1]))
    short_run(iter_cfg, 3)
    assert iter_cfg.train_cfg.max_iters == 3 and iter_cfg.train_cfg.val_interval == 3
    assert iter_cfg.default_hooks.checkpoint.interval == 3 and 'indices' not in iter_cfg.train_dataloader.dataset
    with pytest.raises(ValueError, match='--max-iters must be >= 1'):
        short_run(iter_cfg, 0)


def test_relative_evaluator_output_goes_under_the_work_dir(tmp_path):
    pytest.importorskip('mmseg')
    config = osp.join(REPO_ROOT, FAMILIES['pspnet'][1])
    cfg = test_tool.build_cfg(test_tool.parse_args([config, 'ckpt.pth', '--work-dir', str(tmp_path / 'run')]))
    cityscapes = [e for e in cfg.test_evaluator if e.type == 'CenterCropCityscapesMetric']
    assert cityscapes[0].output_dir == osp.join(str(tmp_path / 'run'), 'format_results')
    assert cityscapes[0].keep_results  # the README promises the crops stay


def test_demo_and_benchmarks_see_the_option(tmp_path):
    """demo/lzu_demo.py, benchmark_lzu.py and get_flops.py merge options with merge_cfg_options: same warp."""
    from mmengine.config import Config

    from lzu_mm.common.config import merge_cfg_options
    from lzu_mm.visualization import warp_from_config
    _, config, grid_shape = FAMILIES['pspnet']
    pytest.importorskip('mmseg')
    a = bump(grid_shape, (0.4, 0.3), tmp_path / 'a.pkl')
    cfg = Config.fromfile(osp.join(REPO_ROOT, config))
    merge_cfg_options(cfg, {'lzu_zoom.saliency': a, 'lzu_zoom.attraction_fwhm': 6.})
    found = warp_from_config(cfg)
    assert found.where == 'pipeline' and found.saliency_path == a
    np.testing.assert_allclose(found.warp.grid()[0].numpy(), expected_grid(a, grid_shape, 6.), atol=1e-6)
