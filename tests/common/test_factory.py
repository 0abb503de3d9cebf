"""The LZU model factory (lzu_mm/common/factory.py): one class per base, aliases, refusals, checkpoints.

``type='LZU'`` turns any registered detector / segmentor / monocular 3D
detector into its LZU version; the factory is idempotent (the landed
``lzu_mono3d_detector`` raised ``KeyError`` when called twice), the named
classes are its aliases, models LZU cannot wrap are refused when the config
is built with the reason, and the state dict is the base model's (strict
loads both ways).
"""
import subprocess
import sys

import pytest
import torch

pytest.importorskip('mmdet', reason='MMDetection is not installed')
pytest.importorskip('mmseg', reason='MMSegmentation is not installed')
pytest.importorskip('mmdet3d', reason='MMDetection3D is not installed')
import lzu_mm.mmdet  # noqa: E402,F401
import lzu_mm.mmdet3d  # noqa: E402,F401
import lzu_mm.mmseg  # noqa: E402,F401
from mmdet.models.detectors import ATSS, FCOS, FasterRCNN, RetinaNet  # noqa: E402
from mmdet.registry import MODELS as DET_MODELS  # noqa: E402
from mmdet3d.models.detectors import FCOSMono3D, SMOKEMono3D  # noqa: E402
from mmdet3d.registry import MODELS as DET3D_MODELS  # noqa: E402
from mmengine.registry import DefaultScope  # noqa: E402
from mmseg.models.segmentors import CascadeEncoderDecoder, DepthEstimator, EncoderDecoder  # noqa: E402
from mmseg.registry import MODELS as SEG_MODELS  # noqa: E402

from lzu_mm.common import LZUMixin, factory  # noqa: E402
from lzu_mm.mmdet3d import lzu_mono3d_detector  # noqa: E402

TINY_ATSS = dict(
    type='ATSS',
    data_preprocessor=dict(type='DetDataPreprocessor', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                           bgr_to_rgb=True, pad_size_divisor=32),
    backbone=dict(type='ResNet', depth=18, num_stages=4, out_indices=(1, 2, 3), frozen_stages=-1,
                  norm_cfg=dict(type='BN', requires_grad=True), norm_eval=False, style='pytorch'),
    neck=dict(type='FPN', in_channels=[128, 256, 512], out_channels=32, start_level=0, add_extra_convs='on_output',
              num_outs=5),
    bbox_head=dict(type='ATSSHead', num_classes=3, in_channels=32, stacked_convs=1, feat_channels=32,
                   anchor_generator=dict(type='AnchorGenerator', ratios=[1.0], octave_base_scale=8,
                                         scales_per_octave=1, strides=[8, 16, 32, 64, 128]),
                   bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[.0, .0, .0, .0],
                                   target_stds=[0.1, 0.1, 0.2, 0.2]),
                   loss_cls=dict(type='FocalLoss', use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
                   loss_bbox=dict(type='GIoULoss', loss_weight=2.0),
                   loss_centerness=dict(type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0)),
    train_cfg=dict(assigner=dict(type='ATSSAssigner', topk=9), allowed_border=-1, pos_weight=-1, debug=False),
    test_cfg=dict(nms_pre=100, min_bbox_size=0, score_thr=0.05, nms=dict(type='nms', iou_threshold=0.6),
                  max_per_img=10))


def _build(registry, cfg, scope):
    with DefaultScope.overwrite_default_scope(scope):
        return registry.build(cfg)


def test_factory_is_idempotent():
    assert factory.lzu_model_class(ATSS) is factory.lzu_model_class(ATSS)
    assert factory.lzu_model_class(factory.lzu_model_class(ATSS)) is factory.lzu_model_class(ATSS)
    # the landed lzu_mono3d_detector raised KeyError on the second call
    assert lzu_mono3d_detector(FCOSMono3D) is lzu_mono3d_detector(FCOSMono3D) is lzu_mm.mmdet3d.LZUFCOSMono3D
    assert factory.register_alias(DET_MODELS, ATSS) is factory.register_alias(DET_MODELS, ATSS)
    cls = factory.lzu_model_class(ATSS)
    assert cls.__mro__[1:3] == (lzu_mm.mmdet.detectors.LZUDetectorMixin, LZUMixin) and cls.__name__ == 'LZUATSS'
    assert getattr(factory, cls.__qualname__) is cls  # importable by name: instances pickle
    with pytest.raises(KeyError, match='already registered'):
        factory.register_alias(DET_MODELS, FCOS, name='LZURetinaNet')


@pytest.mark.parametrize('registry, name, base', [
    (DET_MODELS, 'LZURetinaNet', RetinaNet), (DET_MODELS, 'LZUFCOS', FCOS), (DET_MODELS, 'LZUFasterRCNN', FasterRCNN),
    (SEG_MODELS, 'LZUEncoderDecoder', EncoderDecoder), (SEG_MODELS, 'LZUCascadeEncoderDecoder', CascadeEncoderDecoder),
    (DET3D_MODELS, 'LZUFCOSMono3D', FCOSMono3D), (DET3D_MODELS, 'LZUSMOKEMono3D', SMOKEMono3D)])
def test_named_classes_are_aliases(registry, name, base):
    assert registry.get(name) is factory.lzu_model_class(base)
    assert issubclass(registry.get(name), base) and issubclass(registry.get(name), LZUMixin)


def test_family_mixins():
    seg = factory.lzu_model_class(DepthEstimator)
    assert issubclass(seg, lzu_mm.mmseg.segmentors.LZUSegmentorMixin) and issubclass(seg, DepthEstimator)
    mono = factory.lzu_model_class(FCOSMono3D)
    assert issubclass(mono, lzu_mm.mmdet3d.LZUMono3DMixin) and issubclass(mono, lzu_mm.mmdet3d.ResizedInputMono3DMixin)


def test_lzu_type_builds_the_base_in_each_registry():
    model = _build(DET_MODELS, dict(TINY_ATSS, type='LZU', base='ATSS'), 'mmdet')
    assert type(model) is factory.lzu_model_class(ATSS) and model.lzu_warp is None
    model = _build(DET_MODELS, dict(TINY_ATSS, type='LZU', base=ATSS, lzu=dict(saliency='uniform',
                                                                               grid_shape=(4, 6))), 'mmdet')
    assert type(model) is factory.lzu_model_class(ATSS) and model.lzu_warp is not None
    # a scoped name from another framework's scope (as mmdet3d configs write 'mmdet.ResNet')
    model = _build(DET3D_MODELS, dict(TINY_ATSS, type='LZU', base='mmdet.ATSS'), 'mmdet3d')
    assert type(model) is factory.lzu_model_class(ATSS)
    with pytest.raises(KeyError, match="base='ATSSS' is not registered"):
        _build(DET_MODELS, dict(TINY_ATSS, type='LZU', base='ATSSS'), 'mmdet')


@pytest.mark.parametrize('registry, scope, base, match', [
    (DET_MODELS, 'mmdet', 'LAD', 'teacher_model runs extract_feat'),
    (DET_MODELS, 'mmdet', 'KnowledgeDistillationSingleStageDetector', 'teacher'),
    (DET_MODELS, 'mmdet', 'SoftTeacher', 'semi-supervised wrapper.*make the inner detector'),
    (DET_MODELS, 'mmdet', 'TridentFasterRCNN', 'stacks the branches along the batch'),
    (DET_MODELS, 'mmdet', 'ByteTrack', 'trackers and video'),
    (DET_MODELS, 'mmdet', 'MaskTrackRCNN', 'trackers and video'),
    (DET_MODELS, 'mmdet', 'DetTTAModel', 'test-time-augmentation wrapper'),
    (DET_MODELS, 'mmdet', 'Detectron2Wrapper', 'detectron2'),
    (DET_MODELS, 'mmdet', 'ResNet', 'is none of them'),
    (SEG_MODELS, 'mmseg', 'SegTTAModel', 'test-time-augmentation wrapper'),
    (SEG_MODELS, 'mmseg', 'MultimodalEncoderDecoder', 'bypasses|runs the image encoder itself'),
    (DET3D_MODELS, 'mmdet3d', 'VoxelNet', 'point-cloud'),
    (DET3D_MODELS, 'mmdet3d', 'ImVoxelNet', 'point-cloud'),
    (DET3D_MODELS, 'mmdet3d', 'CenterPoint', 'point-cloud'),
])
def test_refusals_at_build_time(registry, scope, base, match):
    """Refused before anything is built (no teacher config is read, no backbone made), naming class and reason."""
    with pytest.raises(TypeError, match=f'LZU cannot wrap .*{base}: .*({match})'):
        _build(registry, dict(type='LZU', base=base), scope)


def test_abstract_and_already_lzu_are_refused():
    from mmdet.models.detectors.base import BaseDetector
    with pytest.raises(TypeError, match='abstract base class'):
        factory.lzu_model_class(BaseDetector)
    with pytest.raises(TypeError, match='already has LZU'):
        factory.lzu_model_class(lzu_mm.mmdet.LZUAdaptiveRetinaNet)
    assert 'abstract' in factory.refusal(BaseDetector) and factory.refusal(ATSS) is None


def test_segmentor_build_time_refusals():
    seg = dict(type='LZU', base='DepthEstimator', backbone=dict(type='ResNetV1c', depth=18),
               decode_head=dict(type='VPDDepthHead', in_channels=[64, 128, 256, 512], max_depth=10),
               test_cfg=dict(mode='slide_flip', crop_size=(64, 64), stride=(32, 32)))
    with pytest.raises(ValueError, match="slide_flip"):
        _build(SEG_MODELS, seg, 'mmseg')


def test_state_dict_is_the_base_models_strict_both_ways():
    torch.manual_seed(0)
    base = _build(DET_MODELS, TINY_ATSS, 'mmdet')
    lzu = _build(DET_MODELS, dict(TINY_ATSS, type='LZU', base='ATSS', lzu=dict(saliency='uniform', grid_shape=(4, 6))),
                 'mmdet')
    assert list(base.state_dict()) == list(lzu.state_dict())
    lzu.load_state_dict(base.state_dict(), strict=True)
    for p in lzu.parameters():
        p.data.add_(1.)
    base.load_state_dict(lzu.state_dict(), strict=True)
    assert all(torch.equal(a, b) for a, b in zip(base.state_dict().values(), lzu.state_dict().values()))


def test_factory_imports_no_framework():
    code = ('import sys, lzu_mm.common.factory; '
            'print(sorted(m for m in ("mmdet", "mmseg", "mmdet3d") if m in sys.modules))')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == '[]'


def test_register_all_modules_per_framework():
    """As OpenMMLab's: the framework's modules, ours, and (optionally) the default scope."""
    for framework, registry in (('mmdet', DET_MODELS), ('mmseg', SEG_MODELS), ('mmdet3d', DET3D_MODELS)):
        module = getattr(lzu_mm, framework)
        module.register_all_modules(init_default_scope=False)
        assert registry.get('LZU') is not None and registry.get(f'{framework}.LZU') is not None
        with DefaultScope.overwrite_default_scope(None):
            scopes = dict(DefaultScope._instance_dict)
            try:
                module.register_all_modules(init_default_scope=True)
                assert DefaultScope.get_current_instance().scope_name == framework
            finally:
                DefaultScope._instance_dict.clear()
                DefaultScope._instance_dict.update(scopes)


def test_a_users_own_detector():
    """A class registered by the user's code (custom_imports) gets its family's mixin by inheritance."""

    class MyATSS(ATSS):
        pass

    DET_MODELS.register_module(name='TestFactoryMyATSS', module=MyATSS, force=True)
    model = _build(DET_MODELS, dict(TINY_ATSS, type='LZU', base='TestFactoryMyATSS'), 'mmdet')
    assert isinstance(model, MyATSS) and isinstance(model, lzu_mm.mmdet.detectors.LZUDetectorMixin)
    assert type(model).__name__ == 'LZUMyATSS'
