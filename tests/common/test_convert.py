"""The config converter (lzu_mm/common/convert.py, tools/misc/lzu_config.py) on stock OpenMMLab configs.

Each pipeline form (Resize, RandomChoice branches with RandomChoiceResize,
RandomResize, TestTimeAug, MultiScaleFlipAug, mmdet3d's mmdet.Resize) is
converted at its last resize; the written config inherits the base, passes
check_lzu_config, and its pipelines build; what cannot be converted is
refused naming the transform / dataset / setting.
"""
import os
import os.path as osp

import pytest

pytest.importorskip('mmdet', reason='MMDetection is not installed')
pytest.importorskip('mmseg', reason='MMSegmentation is not installed')
pytest.importorskip('mmdet3d', reason='MMDetection3D is not installed')
from mmengine.config import Config  # noqa: E402
from mmengine.registry import DefaultScope  # noqa: E402

from lzu_mm.common import check_lzu_config, check_lzu_pipeline  # noqa: E402
from lzu_mm.common.convert import convert_config, convert_pipeline  # noqa: E402
from lzu_mm.ops.saliency import save_saliency  # noqa: E402
from tests.position_harness import strong_saliency  # noqa: E402

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
GRID = (9, 16)


@pytest.fixture(scope='module')
def saliency(tmp_path_factory):
    """A saliency file as tools/saliency/*.py write it (a pickled (1, 1, h, w) tensor)."""
    path = str(tmp_path_factory.mktemp('sal') / 'saliency.pkl')
    save_saliency(strong_saliency(GRID), path)
    return path


def _names(pipeline):
    return [t['type'] for t in pipeline]


def _pack(pipeline):
    return next(t for t in pipeline if t['type'].startswith('Pack'))


def _build_pipeline(pipeline, scope):
    from mmengine.dataset import Compose
    with DefaultScope.overwrite_default_scope(scope):
        return Compose(pipeline)


def test_mmdet_atss_stock(saliency, tmp_path):
    out = str(tmp_path / 'atss_lzu.py')
    text = convert_config('mmdet::atss/atss_r50_fpn_1x_coco.py', saliency, out=out)
    assert "_base_ = ['mmdet::atss/atss_r50_fpn_1x_coco.py']" in text and "base='ATSS'" in text
    assert 'lzu_zoom = dict(saliency=' in text and '**lzu_zoom' in text  # readable: the LZ warp once
    cfg = Config.fromfile(out)
    check_lzu_config(cfg)
    assert cfg.model.type == 'LZU' and cfg.model.base == 'ATSS' and cfg.model.backbone.depth == 50  # inherited
    assert 'lzu_mm.mmdet' in cfg.custom_imports.imports
    train = cfg.train_dataloader.dataset.pipeline
    assert _names(train) == ['LoadImageFromFile', 'LoadAnnotations', 'FixedSaliencyZoom', 'RandomFlip', 'PackDetInputs']
    assert train[2].scale == (1333, 800) and train[2].keep_ratio and tuple(train[2].grid_shape) == GRID
    assert {'lzu_zoom', 'flip', 'flip_direction', 'homography_matrix', 'img_id'} <= set(_pack(train).meta_keys)
    for loader in (cfg.val_dataloader, cfg.test_dataloader):
        test = loader.dataset.pipeline
        assert _names(test) == ['LoadImageFromFile', 'FixedSaliencyZoom', 'LoadAnnotations', 'PackDetInputs']
        assert 'lzu_zoom' in _pack(test).meta_keys and 'img_id' in _pack(test).meta_keys
    _build_pipeline(train, 'mmdet')  # the zoom loads the saliency file


def test_detr_random_choice_branches(saliency, tmp_path):
    """Each RandomChoice branch is zoomed at its last RandomChoiceResize; the earlier resize and crop stay."""
    out = str(tmp_path / 'ddetr_lzu.py')
    convert_config('mmdet::deformable_detr/deformable-detr_r50_16xb2-50e_coco.py', saliency, out=out)
    cfg = Config.fromfile(out)
    check_lzu_config(cfg)
    choice = next(t for t in cfg.train_dataloader.dataset.pipeline if t['type'] == 'RandomChoice')
    first, second = choice.transforms
    assert [t.get('resize_type') for t in first] == ['FixedSaliencyZoom']
    assert _names(second) == ['RandomChoiceResize', 'RandomCrop', 'RandomChoiceResize']
    assert [t.get('resize_type') for t in second] == [None, None, 'FixedSaliencyZoom']
    assert second[2].saliency == saliency
    _build_pipeline(cfg.train_dataloader.dataset.pipeline, 'mmdet')
    # the checker sees each branch as its own pipeline: a crop after the zoom in a branch is refused
    bad = [dict(type='RandomChoice', transforms=[[dict(second[2]), dict(type='RandomCrop', crop_size=(8, 8))]]),
           dict(type='PackDetInputs', meta_keys=('lzu_zoom', ))]
    with pytest.raises(ValueError, match='RandomCrop after FixedSaliencyZoom'):
        check_lzu_pipeline(bad)


def test_test_time_aug_and_multiscale_flip_aug(saliency):
    zoom = dict(saliency=saliency, grid_shape=GRID)
    tta = [dict(type='LoadImageFromFile'),
           dict(type='TestTimeAug', transforms=[[dict(type='Resize', scale=(1333, 800), keep_ratio=True),
                                                 dict(type='Resize', scale=(666, 400), keep_ratio=True)],
                                                [dict(type='RandomFlip', prob=1.), dict(type='RandomFlip', prob=0.)],
                                                [dict(type='PackDetInputs', meta_keys=('img_id', 'img_shape'))]])]
    new = convert_pipeline(tta, 'mmdet', zoom)
    scales, flips, packs = new[1]['transforms']
    assert [t['type'] for t in scales] == ['FixedSaliencyZoom'] * 2 and scales[1]['scale'] == (666, 400)
    assert set(packs[0]['meta_keys']) >= {'img_id', 'lzu_zoom', 'flip', 'flip_direction', 'homography_matrix'}
    check_lzu_pipeline(new)
    msfa = [dict(type='LoadImageFromFile'),
            dict(type='MultiScaleFlipAug', scales=[(1333, 800)], allow_flip=True,
                 transforms=[dict(type='PackDetInputs')])]
    new = convert_pipeline(msfa, 'mmdet', zoom)
    assert new[1]['resize_cfg'] == dict(type='FixedSaliencyZoom', keep_ratio=True, **zoom)
    assert 'lzu_zoom' in new[1]['transforms'][0]['meta_keys']
    check_lzu_pipeline(new)


def test_random_resize_forms(saliency):
    zoom = dict(saliency=saliency, grid_shape=GRID)
    for t in (dict(type='RandomResize', scale=(2048, 1024), ratio_range=(0.5, 2.0), keep_ratio=True),
              dict(type='RandomChoiceResize', scales=[(512, 256), (1024, 512)], keep_ratio=True)):
        new = convert_pipeline([dict(type='LoadImageFromFile'), t, dict(type='PackSegInputs')], 'mmseg', zoom)
        assert new[1] == dict(t, resize_type='FixedSaliencyZoom', **zoom)
        assert 'lzu_zoom' in new[2]['meta_keys'] and 'reduce_zero_label' in new[2]['meta_keys']
        check_lzu_pipeline(new)
        _build_pipeline(new[1:2], 'mmseg')


@pytest.mark.parametrize('pipeline, framework, match', [
    ([dict(type='RandomResize', scale=(2048, 1024), ratio_range=(.5, 2.)), dict(type='RandomCrop', crop_size=(8, 8)),
      dict(type='PackSegInputs')], 'mmseg', 'RandomCrop after RandomResize'),
    ([dict(type='Mosaic', img_scale=(640, 640)), dict(type='Resize', scale=(640, 640)), dict(type='PackDetInputs')],
     'mmdet', 'Mosaic'),
    ([dict(type='RandomResize3D', scale=(1600, 900), ratio_range=(.9, 1.1)), dict(type='Pack3DDetInputs')],
     'mmdet3d', 'RandomResize3D'),
    ([dict(type='RandomShiftScale', shift_scale=(0.2, 0.4), aug_prob=0.3),
      dict(type='AffineResize', img_scale=(1280, 384)), dict(type='Pack3DDetInputs')], 'mmdet3d', 'AffineResize'),
    ([dict(type='Resize', scale=(8, 8)), dict(type='RandomApply', transforms=[dict(type='Resize', scale=(4, 4))]),
      dict(type='PackDetInputs')], 'mmdet', 'inside RandomApply'),
    ([dict(type='LoadImageFromFile'), dict(type='PackDetInputs')], 'mmdet', 'no resize'),
])
def test_unconvertible_pipelines_name_the_transform(pipeline, framework, match, saliency):
    with pytest.raises(ValueError, match=match):
        convert_pipeline(pipeline, framework, dict(saliency=saliency, grid_shape=GRID), 'train_dataloader')


def test_unconvertible_configs(saliency, tmp_path):
    # a crop after the random resize (every stock mmseg training pipeline): refused, pointing at --model-side
    with pytest.raises(ValueError, match='RandomCrop after RandomResize.*--model-side'):
        convert_config('mmseg::pspnet/pspnet_r50-d8_4xb2-40k_cityscapes-512x1024.py', saliency)
    # sliding-window inference with a pipeline zoom
    with pytest.raises(ValueError, match="mode='slide'.*--model-side"):
        convert_config('mmseg::segformer/segformer_mit-b0_8xb1-160k_cityscapes-1024x1024.py', saliency)
    # already LZU
    lzu = osp.join(REPO_ROOT, 'configs', 'lzu_retinanet', 'retinanet_r50_fpn_lzu-fixed_3e_argoverse-hd-0.5x.py')
    with pytest.raises(ValueError, match='already an LZU model'):
        convert_config(lzu, saliency)
    # a model the factory refuses, with its reason
    with pytest.raises(TypeError, match='LZU cannot wrap .*SoftTeacher.*semi-supervised'):
        convert_config('mmdet::soft_teacher/soft-teacher_faster-rcnn_r50-caffe_fpn_180k_semi-0.1-coco.py', saliency)
    # dataset wrappers that mix several datasets or images
    concat = tmp_path / 'concat.py'
    concat.write_text("_base_ = ['mmdet::atss/atss_r50_fpn_1x_coco.py']\n"
                      "train_dataloader = dict(dataset=dict(_delete_=True, type='ConcatDataset', datasets=[]))\n")
    with pytest.raises(ValueError, match='ConcatDataset'):
        convert_config(str(concat), saliency)
    with pytest.raises(ValueError, match='MultiImageMixDataset'):
        convert_config('mmdet::yolox/yolox_s_8xb8-300e_coco.py', saliency)
    with pytest.raises(ValueError, match="grid_shape"):
        convert_config('mmdet::atss/atss_r50_fpn_1x_coco.py', 'uniform')


def test_mmseg_model_side_slide(saliency, tmp_path):
    """--model-side: the pipelines stay, the model zooms (each window in slide mode); the config builds and runs."""
    import torch
    from mmseg.registry import MODELS
    out = str(tmp_path / 'segformer_lzu.py')
    text = convert_config('mmseg::segformer/segformer_mit-b0_8xb1-160k_cityscapes-1024x1024.py', saliency,
                          model_side=True, attraction_fwhm=4., out=out)
    assert "model = dict(type='LZU', base='EncoderDecoder', lzu=lzu_zoom)" in text and 'pipeline =' not in text
    cfg = Config.fromfile(out)
    check_lzu_config(cfg)
    assert cfg.model.test_cfg.mode == 'slide' and cfg.model.lzu.attraction_fwhm == 4.
    cfg.model.pop('init_cfg', None)
    cfg.model.backbone.init_cfg = None
    cfg.model.test_cfg = dict(mode='slide', crop_size=(32, 32), stride=(24, 24))
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(cfg.model).eval()
    with torch.no_grad():
        logits = model.slide_inference(torch.rand(1, 3, 40, 56), [dict(img_shape=(40, 56), ori_shape=(40, 56))])
    assert logits.shape == (1, 19, 40, 56) and torch.isfinite(logits).all()


@pytest.mark.parametrize('stock', ['mmdet3d::fcos3d/fcos3d_r101-caffe-dcn_fpn_head-gn_8xb2-1x_nus-mono3d.py',
                                   'mmdet3d::pgd/pgd_r101-caffe_fpn_head-gn_4xb3-4x_kitti-mono3d.py'])
def test_mmdet3d_stock(stock, saliency, tmp_path):
    out = str(tmp_path / 'mono3d_lzu.py')
    convert_config(stock, saliency, out=out)
    cfg = Config.fromfile(out)
    check_lzu_config(cfg)
    assert cfg.model.type == 'LZU' and cfg.model.base in ('FCOSMono3D', 'PGD', 'mmdet3d.FCOSMono3D')
    for loader in (cfg.train_dataloader, cfg.test_dataloader):
        pipeline = loader.dataset.pipeline
        assert 'FixedSaliencyZoom3D' in _names(pipeline)
        assert {'lzu_zoom', 'cam2img', 'homography_matrix'} <= set(_pack(pipeline).meta_keys)
    _build_pipeline(cfg.test_dataloader.dataset.pipeline, 'mmdet3d')
    from mmdet3d.registry import MODELS
    cfg.model.backbone.update(depth=18, init_cfg=None, dcn=None, stage_with_dcn=(False, ) * 4)
    cfg.model.neck.in_channels = [64, 128, 256, 512]
    with DefaultScope.overwrite_default_scope('mmdet3d'):
        model = MODELS.build(cfg.model)
    assert type(model).__name__ == 'LZUFCOSMono3D'  # PGD is an FCOSMono3D with a PGDHead


def test_cli(saliency, tmp_path):
    import importlib.util
    spec = importlib.util.spec_from_file_location('lzu_config', osp.join(REPO_ROOT, 'tools', 'misc', 'lzu_config.py'))
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    out = str(tmp_path / 'cfg.py')
    cli.main(['mmdet::atss/atss_r50_fpn_1x_coco.py', '--saliency', 'uniform', '--grid-shape', '4', '6',
              '--no-separable', '--attraction-fwhm', '5', '-o', out])
    cfg = Config.fromfile(out)
    zoom = cfg.test_dataloader.dataset.pipeline[1]
    assert zoom.saliency == 'uniform' and zoom.separable is False and zoom.attraction_fwhm == 5.
    with pytest.raises(SystemExit, match='lzu_config: .*RandomCrop after RandomResize'):
        cli.main(['mmseg::pspnet/pspnet_r50-d8_4xb2-40k_cityscapes-512x1024.py', '--saliency', saliency, '-o', out])


def test_readme_shows_the_converters_actual_output(tmp_path, monkeypatch):
    """README "Use LZU in your own model": each example block is what the converter writes today."""
    import re

    from lzu_mm.ops import uniform_saliency
    with open(osp.join(REPO_ROOT, 'README.md')) as f:
        readme = f.read()
    section = readme[readme.index('## Use LZU in your own model'):]
    commands = re.findall(r'`python tools/misc/lzu_config.py ([^`]+)`', section)
    blocks = re.findall(r'```python\n(# LZU .*?)\n```', section, re.S)
    assert len(commands) == len(blocks) == 3
    monkeypatch.chdir(tmp_path)
    for command, block in zip(commands, blocks):
        args = command.split()
        saliency = args[args.index('--saliency') + 1]
        sized = re.search(r'_(\d+)x(\d+)\.pkl$', saliency)  # kde-sd_31x51.pkl; the authors' nuScenes map: 27x48
        shape = tuple(int(v) for v in sized.groups()) if sized else (27, 48)
        os.makedirs(osp.dirname(saliency), exist_ok=True)
        save_saliency(uniform_saliency(shape), saliency)
        text = convert_config(args[0], saliency, attraction_fwhm=10. if '--attraction-fwhm' in args else None,
                              model_side='--model-side' in args, out=args[args.index('-o') + 1])
        assert text.rstrip() == block.rstrip(), command
