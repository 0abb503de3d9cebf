"""Config-time checks of pipelines that zoom with a fixed saliency (LZU §3-4).

The model unzooms with exactly the grid that the pipeline's zoom transform
recorded, so that grid must still describe the image the model receives.
After the zoom, only flips (which the model composes into the grid) and
photometric or padding steps may follow; a crop, resize, affine transform,
mosaic or mix-up after the zoom leaves a record that no longer describes the
image, and training would run, silently wrong. The model refuses such
samples at run time (:func:`lzu_mm.common.model.post_zoom_flip`); this module
refuses the config before anything runs, naming the transform.

A resize that hands the model the full-resolution source (``ResizeWithSource``)
has one more constraint: the model resamples the *source*, so a photometric
transform after the resize (mmseg's usual ``PhotoMetricDistortion``) would
change an image the model never uses and be silently lost; it must come
before. And a model whose ``lzu`` config resamples the source itself (a
learned ``interpolation`` or ``saliency_net``) needs such a resize in every
pipeline.
"""
import itertools
from typing import Iterable, Iterator, List, Optional, Sequence

from .transforms import SOURCE_TRANSFORMS, ZOOM_TRANSFORMS

#: Transforms that change the image geometry in a way no recorded grid can follow. Matched by class name.
GEOMETRIC_TRANSFORMS = frozenset({
    # resizes
    'Resize', 'RandomResize', 'RandomChoiceResize', 'ResizeShortestEdge', 'FixScaleResize', 'FixShapeResize',
    'Resize3D', 'RandomResize3D', 'ChainedResize', 'ChainedResize3D', 'ResizeToMultiple',
    # crops and pads that move the image
    'RandomCrop', 'RandomCenterCropPad', 'CenterCrop', 'MinIoURandomCrop', 'RandomResizedCrop', 'Expand',
    'RandomShift', 'RandomCrop3D',
    # affine and multi-image transforms
    'RandomAffine', 'AffineResize', 'RandomShiftScale', 'Mosaic', 'CachedMosaic', 'MixUp', 'CachedMixUp',
    'CopyPaste', 'RandomMosaic', 'Rotate', 'RandomRotate', 'RandomRotate90', 'ShearX', 'ShearY', 'TranslateX',
    'TranslateY', 'GeomTransform', 'Albu',
})
#: Transforms that change pixel values only; after a ``ResizeWithSource`` they would miss the source. By class name.
PHOTOMETRIC_TRANSFORMS = frozenset({
    'PhotoMetricDistortion', 'PhotoMetricDistortion3D', 'ColorTransform', 'Color', 'Brightness', 'Contrast',
    'Sharpness', 'Equalize', 'AutoContrast', 'Posterize', 'Solarize', 'SolarizeAdd', 'Invert', 'RandAugment',
    'AutoAugment', 'YOLOXHSVRandomAug', 'CLAHE', 'AdjustGamma', 'RGB2Gray', 'RandomGrayscale', 'Normalize',
    'BioMedicalGaussianNoise', 'BioMedicalGaussianBlur', 'BioMedicalRandomGamma', 'PhotoMetricDistortionMultiViewImage'
})
#: Flips the model composes into the grid (it needs ``flip`` and ``flip_direction`` in the metainfo).
FLIP_TRANSFORMS = frozenset({'RandomFlip', 'RandomFlip3D'})
#: Transforms that hold other transforms.
_WRAPPER_KEYS = ('transforms', 'pipeline')


def _type_name(kind) -> str:
    return (kind.__name__ if isinstance(kind, type) else str(kind)).split('.')[-1]


def _name(t) -> str:
    """Class name of a transform config; ``RandomResize`` / ``RandomChoiceResize`` with a zoom ``resize_type``
    are named by it (they zoom)."""
    kind = t.get('type') if isinstance(t, dict) else None
    name = _type_name(kind)
    if name in ('RandomResize', 'RandomChoiceResize') and _type_name(t.get('resize_type')) in ZOOM_TRANSFORMS:
        return _type_name(t['resize_type'])
    return name


def _flatten(pipeline: Iterable) -> List[dict]:
    """The transform dicts of a pipeline in order, wrappers (``RandomApply``, ``TestTimeAug``, ...) expanded."""
    out = []
    for t in pipeline or []:
        if isinstance(t, (list, tuple)):  # TestTimeAug: a list of alternatives per position
            out.extend(_flatten(t))
            continue
        if not isinstance(t, dict):
            continue
        if _name(t) == 'MultiScaleFlipAug':  # mmcv: resize_cfg, then a flip, then its transforms
            out.extend([dict(t.get('resize_cfg') or dict(type='Resize')), dict(type='RandomFlip')])
            out.extend(_flatten(t.get('transforms')))
            continue
        out.append(t)
        for key in _WRAPPER_KEYS:
            if isinstance(t.get(key), (list, tuple)):
                out.extend(_flatten(t[key]))
    return out


def _moves_image(t: dict) -> bool:
    """Whether a transform after the zoom changes the image geometry (the label-only crop of mmseg does not)."""
    name = _name(t)
    if name == 'CenterSquareCrop':  # lzu_mm.mmseg: with keys=('gt_seg_map',) it crops the labels only
        return 'img' in tuple(t.get('keys', ('img', 'gt_seg_map')))
    return name in GEOMETRIC_TRANSFORMS


def _tta_views(pipeline: Sequence) -> Iterator[list]:
    """The linear pipeline of each view a ``TestTimeAug`` in ``pipeline`` makes (one per combination of its
    alternatives, e.g. every scale x flip), and of each branch of a ``RandomChoice``; ``pipeline`` itself when it
    has none."""
    for i, t in enumerate(pipeline):
        if isinstance(t, dict) and _name(t) == 'RandomChoice':
            for branch in t.get('transforms') or []:
                branch = list(branch) if isinstance(branch, (list, tuple)) else [branch]
                yield from _tta_views([*pipeline[:i], *branch, *pipeline[i + 1:]])
            return
        if isinstance(t, dict) and _name(t) == 'TestTimeAug':
            choices = [alts if isinstance(alts, (list, tuple)) else [alts] for alts in t.get('transforms') or []]
            for combo in itertools.product(*choices):
                yield from _tta_views([*pipeline[:i], *combo, *pipeline[i + 1:]])
            return
    yield list(pipeline)


def check_lzu_pipeline(pipeline: Sequence, where: str = 'pipeline') -> None:
    """Refuse a pipeline whose zoom transform's record would not describe the packed image.

    Checks, for every fixed-saliency zoom transform (any
    :class:`~lzu_mm.common.LZZoomMixin` subclass) in ``pipeline``:

    * no transform after it changes the image geometry
      (:data:`GEOMETRIC_TRANSFORMS`, a second zoom included);
    * the packing transform (``Pack*Inputs``) passes ``lzu_zoom`` to the
      model, and ``flip`` / ``flip_direction`` when a flip follows the zoom.

    Transforms before the zoom are free (a flip there needs no mirroring).
    A ``TestTimeAug`` is checked view by view: each combination of its
    alternatives (one zoom per scale, then a flip or none) is one pipeline,
    whose zoom records the warp of that view.

    Args:
        pipeline: a list of transform config dicts (as in a config file).
        where: name of the pipeline for messages (``'train_dataloader'``).

    Raises:
        ValueError: naming the transform, its position and what to do.
    """
    views = list(_tta_views(pipeline))
    if len(views) > 1 or views[0] != list(pipeline):
        for k, view in enumerate(views):
            check_lzu_pipeline(view, f'{where} (TestTimeAug view {k})')
        return
    steps = _flatten(pipeline)
    zooms = [i for i, t in enumerate(steps) if _name(t) in ZOOM_TRANSFORMS]
    if not zooms:
        return
    first = zooms[0]
    zoom_name = _name(steps[first])
    flipped = False
    for t in steps[first + 1:]:
        name = _name(t)
        if name in ZOOM_TRANSFORMS:
            raise ValueError(f'{where}: a second zoom ({name}) after {zoom_name}; zoom once per sample')
        if zoom_name in SOURCE_TRANSFORMS and name in PHOTOMETRIC_TRANSFORMS:
            raise ValueError(f'{where}: {name} after {zoom_name} would change only the resized image, but the model '
                             f'resamples the full-resolution source {zoom_name} hands it, so {name} would be silently '
                             f'lost: move {name} before {zoom_name}')
        if _moves_image(t):
            raise ValueError(f'{where}: {name} after {zoom_name} changes the zoomed image, and the recorded LZ grid '
                             f'would no longer describe it (training would run, silently misaligned). Only flips, '
                             f'padding and photometric transforms may follow the zoom: move {name} before '
                             f'{zoom_name} (or zoom model-side with model.lzu and a uniform resize in the pipeline)')
        if name in FLIP_TRANSFORMS:
            flipped = True
        if name.startswith('Pack') and t.get('meta_keys') is not None:
            keys = set(t['meta_keys'])
            needed = ['lzu_zoom'] + (['flip', 'flip_direction'] if flipped else [])
            missing = [k for k in needed if k not in keys]
            if missing:
                raise ValueError(f"{where}: {name}.meta_keys lacks {missing}: the model needs 'lzu_zoom' (the grid "
                                 f"{zoom_name} recorded){' and the flip state to mirror it' if flipped else ''}; add "
                                 f'them to meta_keys')


def _dataset_pipelines(dataset: Optional[dict], where: str):
    """``(where, pipeline)`` of a dataset config and of the datasets it wraps."""
    if not isinstance(dataset, dict):
        return
    if isinstance(dataset.get('pipeline'), (list, tuple)):
        yield where, dataset['pipeline']
    if isinstance(dataset.get('dataset'), dict):
        yield from _dataset_pipelines(dataset['dataset'], where + '.dataset')
    for k, d in enumerate(dataset.get('datasets') or []):
        yield from _dataset_pipelines(d, f'{where}.datasets[{k}]')


def check_lzu_config(cfg) -> None:
    """:func:`check_lzu_pipeline` on the dataset pipelines of every dataloader of a config (and its TTA pipeline).

    Args:
        cfg: an mmengine ``Config`` or dict.

    Raises:
        ValueError: naming the dataloader, the transform and what to do.
    """
    lzu = (cfg.get('model') or {}).get('lzu') if hasattr(cfg, 'get') else None
    needs = None
    if isinstance(lzu, dict):
        interp = lzu.get('interpolation')
        if interp not in (None, 'bilinear'):
            needs = f"model.lzu.interpolation ({interp.get('type') if isinstance(interp, dict) else interp})"
        elif lzu.get('saliency_net') is not None:
            needs = 'model.lzu.saliency_net'
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        section = cfg.get(loader) if hasattr(cfg, 'get') else None
        if isinstance(section, dict):
            for where, pipeline in _dataset_pipelines(section.get('dataset'), f'{loader}.dataset'):
                check_lzu_pipeline(pipeline, where)
                if needs and not any(_name(t) in SOURCE_TRANSFORMS for t in _flatten(pipeline)):
                    raise ValueError(f'{where}: {needs} resamples the full-resolution image, but this pipeline does '
                                     'not hand it to the model: use ResizeWithSource (ResizeWithSource3D) where the '
                                     "pipeline resizes, and put 'lzu_zoom' in the packing transform's meta_keys")
    if isinstance(cfg.get('tta_pipeline'), (list, tuple)):
        check_lzu_pipeline(cfg['tta_pipeline'], 'tta_pipeline')


def use_tta(cfg) -> None:
    """Test with the config's test-time augmentation (the frameworks' ``tools/test.py --tta``), in place.

    ``test_dataloader.dataset.pipeline`` becomes ``tta_pipeline`` and the
    model ``tta_model`` (mmdet's ``DetTTAModel``, mmseg's ``SegTTAModel``)
    around ``model``. With LZU each view of the ``TestTimeAug`` is zoomed by its
    own zoom transform (replace every ``Resize`` of ``tta_pipeline`` by the
    framework's ``FixedSaliencyZoom``), which records that view's warp; a flip
    after it is composed into the warp by the model, and the frameworks merge
    the views' predictions in original-image pixels. A model with a warp of
    its own (``model.lzu``) zooms each uniformly resized view itself.

    Raises:
        ValueError: the config has no ``tta_model`` / ``tta_pipeline``, or
            an LZU model (type ``LZU...``) has no warp of its own and
            ``tta_pipeline`` has no zoom transform (its views would reach the
            model unzoomed, e.g. mmseg's inherited Cityscapes ``tta_pipeline``
            with ``Resize``).
    """
    from .model import LZU_RESAMPLING_KEYS, LZU_WARP_KEYS
    if not cfg.get('tta_model') or not cfg.get('tta_pipeline'):
        raise ValueError('--tta needs tta_model and tta_pipeline in the config (e.g. _base_ = '
                         "[..., 'mmdet::retinanet/retinanet_tta.py'])")
    model = cfg.model
    lzu = model.get('lzu') or {}
    zooms = any(_name(t) in ZOOM_TRANSFORMS for t in _flatten(cfg.tta_pipeline))
    if str(model.get('type', '')).split('.')[-1].startswith('LZU') and not zooms and not any(
            lzu.get(k) is not None for k in LZU_WARP_KEYS + LZU_RESAMPLING_KEYS):
        raise ValueError(f"--tta: tta_pipeline has no LZU zoom transform and {model['type']} has no warp of its own "
                         '(model.lzu): its views would reach the model unzoomed. Replace each Resize in tta_pipeline '
                         "by the framework's FixedSaliencyZoom (same arguments plus the LZ warp, e.g. **lzu_zoom) and "
                         "add 'lzu_zoom' (and 'homography_matrix' with MMDetection) to the packing meta_keys")
    dataset = cfg.test_dataloader.dataset
    while 'dataset' in dataset:  # dataset wrappers (as MMDetection's tools/test.py --tta)
        dataset = dataset['dataset']
    dataset.pipeline = cfg.tta_pipeline
    cfg.tta_model.module = cfg.model
    cfg.model = cfg.tta_model
