"""Turn any MMDetection / MMSegmentation / MMDetection3D config into its LZU version (LZU §3-4, fixed saliency).

:func:`convert_config` writes a config that inherits the base config (``_base_``,
``mmdet::`` / ``mmseg::`` / ``mmdet3d::`` paths included) and changes only what
LZU needs:

* the model: ``model = dict(type='LZU', base=<the base model type>)`` (the
  generic LZU model of :mod:`lzu_mm.common.factory`; the base model's
  arguments are inherited);
* pipeline zoom (default): the *last* resize of every dataset pipeline (train,
  val, test, ``tta_pipeline``; each branch of a ``RandomChoice``) becomes the
  framework's fixed-saliency zoom -- ``Resize`` -> ``FixedSaliencyZoom``
  (``FixedSaliencyZoom3D`` in MMDetection3D, where it scales the intrinsics as
  ``Resize3D``), ``RandomResize`` / ``RandomChoiceResize`` get
  ``resize_type=<zoom>``, ``MultiScaleFlipAug`` its ``resize_cfg``, every
  ``Resize`` alternative of a ``TestTimeAug`` is zoomed -- and the packing
  transform's ``meta_keys`` get ``'lzu_zoom'`` (plus ``'flip'``,
  ``'flip_direction'``, for a flip after the zoom, and ``'homography_matrix'``
  (MMDetection, MMDetection3D)). Resizes before the last one stay uniform.
* model zoom (``model_side=True``): the pipelines are not touched (their
  uniform resizes stay) and the model gets ``lzu=dict(saliency=...,
  grid_shape=...)``: it zooms the uniformly resized batch itself, each window
  in mmseg's sliding-window inference.

What cannot be converted raises ``ValueError`` naming the transform / dataset
/ setting and what to do: a transform that moves the image after the last
resize (``RandomCrop`` after ``RandomResize``, ``AffineResize``, ...),
multi-image transforms (``Mosaic``, ``MixUp``, ``CopyPaste``; the fixed
saliency is a prior on where objects are in one camera frame), resizes the
zoom cannot stand for (``RandomResize3D``, ``ResizeShortestEdge``, ...), a
pipeline without a resize, ``ConcatDataset`` / ``MultiImageMixDataset``,
mmseg's ``test_cfg.mode='slide'`` with a pipeline zoom (use
``model_side=True``), an LZU config, and a model the factory refuses
(:func:`lzu_mm.common.factory.refusal`). The written config passes
:func:`lzu_mm.common.check_lzu_config`.
"""
import copy
import importlib
import inspect
import os
import os.path as osp
from typing import List, Optional, Sequence, Tuple

from .pipeline import GEOMETRIC_TRANSFORMS, _moves_image, _name, check_lzu_config
from .transforms import ZOOM_TRANSFORMS

#: Per framework: the zoom transform, the resizes it stands for, the packing transform, extra meta keys.
FRAMEWORKS = {
    'mmdet': dict(zoom='FixedSaliencyZoom', resizes=('Resize', ), pack='PackDetInputs',
                  meta=('homography_matrix', )),
    'mmseg': dict(zoom='FixedSaliencyZoom', resizes=('Resize', ), pack='PackSegInputs', meta=()),
    'mmdet3d': dict(zoom='FixedSaliencyZoom3D', resizes=('Resize', 'Resize3D'), pack='Pack3DDetInputs',
                    meta=('homography_matrix', )),
}
#: Transforms that combine several images: the fixed saliency is a prior on one camera frame.
MULTI_IMAGE_TRANSFORMS = frozenset({'Mosaic', 'CachedMosaic', 'MixUp', 'CachedMixUp', 'CopyPaste', 'RandomMosaic'})
#: Resizes that the zoom transforms cannot stand for (with what to do).
UNCONVERTIBLE_RESIZES = {
    'RandomResize3D': 'it resizes image and point cloud / depth together; use Resize3D or --model-side',
    'ResizeShortestEdge': 'the zoom takes Resize arguments; use Resize(scale=..., keep_ratio=True) or --model-side',
    'FixShapeResize': 'the zoom takes Resize arguments; use Resize(keep_ratio=False) or --model-side',
    'FixScaleResize': 'the zoom takes Resize arguments; use Resize or --model-side',
    'AffineResize': 'it is an affine warp with a random shift and scale (SMOKE), not a resize; use --model-side',
    'RandomResizedCrop': 'it crops and resizes at random; use --model-side',
}
#: Wrappers holding transforms that the converter does not look into for a resize.
_OPAQUE_WRAPPERS = ('RandomApply', 'Compose', 'KeyMapper', 'TransformBroadcaster', 'RandomOrder')
_RESIZE_WRAPPERS = ('RandomResize', 'RandomChoiceResize')


class _Ctx:
    """What a conversion needs: the framework's names and the zoom arguments."""

    def __init__(self, framework: str, zoom_kwargs: dict):
        if framework not in FRAMEWORKS:
            raise ValueError(f'framework must be one of {sorted(FRAMEWORKS)}, got {framework!r}')
        importlib.import_module(f'lzu_mm.{framework}')  # registers the zoom transforms
        spec = FRAMEWORKS[framework]
        self.framework = framework
        self.zoom = spec['zoom']
        self.resizes = spec['resizes']
        self.pack = spec['pack']
        self.meta = spec['meta']
        self.zoom_kwargs = zoom_kwargs


def _is_resize(t, ctx: _Ctx) -> bool:
    name = _name(t)
    return name in ctx.resizes or name in _RESIZE_WRAPPERS or name in ('MultiScaleFlipAug', 'TestTimeAug') or (
        name == 'RandomChoice') or name in UNCONVERTIBLE_RESIZES


def _contains_resize(t, ctx: _Ctx) -> bool:
    if isinstance(t, (list, tuple)):
        return any(_contains_resize(x, ctx) for x in t)
    if not isinstance(t, dict):
        return False
    return _is_resize(t, ctx) or any(_contains_resize(t.get(k), ctx) for k in ('transforms', 'pipeline'))


def _flat(t) -> list:
    if isinstance(t, (list, tuple)):
        return [x for s in t for x in _flat(s)]
    if not isinstance(t, dict):
        return []
    return [t] + _flat(t.get('transforms')) + _flat(t.get('pipeline'))


def _refuse_multi_image(seq, where: str) -> None:
    for t in _flat(seq):
        if _name(t) in MULTI_IMAGE_TRANSFORMS:
            raise ValueError(f'{where}: cannot convert {_name(t)} to LZU: it combines several images into one, but a '
                             'fixed saliency is a prior on where objects are in one camera frame; drop it (or zoom '
                             'model-side with --model-side, knowing the saliency will not match the mosaic)')


def _zoom(t: dict, ctx: _Ctx, where: str) -> dict:
    """The zoom transform standing for the resize ``t``."""
    name = _name(t)
    if name in ctx.resizes:
        return dict(type=ctx.zoom, **{k: v for k, v in t.items() if k != 'type'}, **ctx.zoom_kwargs)
    if name in _RESIZE_WRAPPERS:
        inner = _name(dict(type=t.get('resize_type', 'Resize')))
        if inner not in ctx.resizes:
            raise ValueError(f"{where}: cannot convert {name}(resize_type='{inner}') to LZU: the zoom "
                             f'({ctx.zoom}) stands for {" / ".join(ctx.resizes)} only; use --model-side')
        return dict(t, resize_type=ctx.zoom, **ctx.zoom_kwargs)
    raise ValueError(f'{where}: cannot convert {name} to LZU: {UNCONVERTIBLE_RESIZES.get(name, "not a resize")}')


def _convert_seq(seq: Sequence, ctx: _Ctx, where: str) -> list:
    """``seq`` with its last resize zoomed; raises if something after it moves the image or nothing resizes."""
    seq = list(seq)
    if not _contains_resize(seq, ctx):
        found = ', '.join(_name(t) for t in seq if isinstance(t, dict)) or 'nothing'
        raise ValueError(f'{where}: no resize to turn into the LZU zoom (transforms: {found}); add a Resize where '
                         'the image gets its network size, or zoom model-side with --model-side')
    _refuse_multi_image(seq, where)
    after = None  # the first transform seen (from the right) that moves the image
    for i in range(len(seq) - 1, -1, -1):
        t = seq[i]
        name = _name(t)
        if _is_resize(t, ctx):
            if after is not None:
                raise ValueError(f'{where}: cannot convert {after} after {name} to LZU: it changes the image after '
                                 'the resize, so the zoom recorded there would no longer describe it (move it before '
                                 'the resize, or zoom model-side with --model-side)')
            seq[i] = _convert_resize(t, ctx, where)
            return seq
        if name in _OPAQUE_WRAPPERS and _contains_resize(t, ctx):
            raise ValueError(f'{where}: cannot convert the resize inside {name} to LZU (it may or may not run); '
                             'resize outside it, or use --model-side')
        moves = [x for x in _flat(t) if _moves_image(x)]
        if moves and after is None:
            after = _name(moves[0])
    raise AssertionError('unreachable: _contains_resize found a resize')  # pragma: no cover


def _convert_resize(t: dict, ctx: _Ctx, where: str) -> dict:
    name = _name(t)
    if name == 'RandomChoice':
        branches = []
        for k, branch in enumerate(t.get('transforms') or []):
            branch = branch if isinstance(branch, (list, tuple)) else [branch]
            branches.append(_convert_seq(branch, ctx, f'{where} (RandomChoice branch {k})'))
        return dict(t, transforms=branches)
    if name == 'TestTimeAug':
        positions, zoomed = [], False
        for alts in t.get('transforms') or []:
            alts = list(alts) if isinstance(alts, (list, tuple)) else [alts]
            if any(_is_resize(a, ctx) for a in alts):
                alts = [_zoom(a, ctx, f'{where} (TestTimeAug)') if _is_resize(a, ctx) else a for a in alts]
                zoomed = True
            elif zoomed and any(_moves_image(a) for a in alts):
                moving = next(_name(a) for a in alts if _moves_image(a))
                raise ValueError(f'{where}: cannot convert {moving} after the resize of TestTimeAug to LZU: it '
                                 'changes the zoomed view; use --model-side')
            positions.append(alts)
        return dict(t, transforms=positions)
    if name == 'MultiScaleFlipAug':
        inner = t.get('transforms') or []
        moving = [_name(x) for x in _flat(inner) if _moves_image(x)]
        if moving:
            raise ValueError(f'{where}: cannot convert {moving[0]} inside MultiScaleFlipAug to LZU: it runs after '
                             'the resize and changes the zoomed view; use --model-side')
        resize = dict(t.get('resize_cfg') or dict(type='Resize', keep_ratio=True))
        return dict(t, resize_cfg=_zoom(resize, ctx, f'{where} (MultiScaleFlipAug.resize_cfg)'))
    return _zoom(t, ctx, where)


def _default_meta_keys(ctx: _Ctx) -> tuple:
    registry = importlib.import_module(f'{ctx.framework}.registry').TRANSFORMS
    cls = registry.get(ctx.pack)
    return tuple(inspect.signature(cls.__init__).parameters['meta_keys'].default)


def _set_meta_keys(seq, ctx: _Ctx, flips: bool):
    """Copy of ``seq`` whose packing transforms pass the LZU record (and flip state, homography) to the model."""
    if isinstance(seq, (list, tuple)):
        return [_set_meta_keys(t, ctx, flips) for t in seq]
    if not isinstance(seq, dict):
        return seq
    t = dict(seq)
    for key in ('transforms', 'pipeline'):
        if isinstance(t.get(key), (list, tuple)):
            t[key] = _set_meta_keys(t[key], ctx, flips)
    if _name(t).startswith('Pack'):
        keys = list(t.get('meta_keys') or _default_meta_keys(ctx))
        for k in ('lzu_zoom', *(('flip', 'flip_direction') if flips else ()), *ctx.meta):
            if k not in keys:
                keys.append(k)
        t['meta_keys'] = tuple(keys)
    return t


def convert_pipeline(pipeline: Sequence, framework: str, zoom_kwargs: dict, where: str = 'pipeline') -> list:
    """The LZU version of one dataset pipeline (see the module docstring); raises ``ValueError`` naming the transform.

    Args:
        pipeline: list of transform config dicts.
        framework: ``'mmdet'``, ``'mmseg'`` or ``'mmdet3d'``.
        zoom_kwargs: the zoom's LZ arguments (``saliency``, ``grid_shape``, ...).
        where: name of the pipeline for messages.
    """
    ctx = _Ctx(framework, zoom_kwargs)
    seq = _convert_seq(copy.deepcopy(list(pipeline)), ctx, where)
    return _set_meta_keys(seq, ctx, flips=True)  # the flip state too: packed only when present, a later flip needs it


# ------------------------------------------------------------------------------------------------- configs
def _framework(cfg, base: str) -> str:
    scope = cfg.get('default_scope')
    if base.split('::')[0] in FRAMEWORKS and '::' in base:
        scope = scope or base.split('::')[0]
    if scope not in FRAMEWORKS:
        raise ValueError(f'{base}: cannot tell its framework (default_scope={scope!r}); expected one of '
                         f'{sorted(FRAMEWORKS)}')
    return scope


def _dataset_chain(dataset, where: str) -> List[Tuple[str, list]]:
    """``[(where, path of keys)]`` of the pipelines in a dataset config and the datasets it wraps (outermost first)."""
    out = []
    path = []
    while isinstance(dataset, dict):
        kind = _name(dataset)
        if kind in ('ConcatDataset', 'MultiImageMixDataset') or dataset.get('datasets') is not None:
            raise ValueError(f'{where}: cannot convert a {kind or "dataset with datasets=[...]"} to LZU: '
                             + ('its mixing pipeline combines several images' if kind == 'MultiImageMixDataset' else
                                'its datasets each have a pipeline; convert a config per dataset'))
        if isinstance(dataset.get('pipeline'), (list, tuple)):
            out.append(('.'.join([where, *path, 'pipeline']), list(path)))
        path.append('dataset')
        dataset = dataset.get('dataset')
    return out


def _nested(path: List[str], leaf) -> dict:
    out = leaf
    for key in reversed(path):
        out = {key: out}
    return out


def _get(d: dict, path: List[str]):
    for key in path:
        d = d[key]
    return d


class _Var:
    """A name written as is into the config text (a variable reference)."""

    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name


def _text(value) -> str:
    """Python source of a config value: dicts as ``dict(...)`` when their keys are identifiers."""
    if isinstance(value, dict):
        if all(isinstance(k, str) and k.isidentifier() for k in value):
            return 'dict(' + ', '.join(f'{k}={_text(v)}' for k, v in value.items()) + ')'
        return '{' + ', '.join(f'{_text(k)}: {_text(v)}' for k, v in value.items()) + '}'
    if isinstance(value, list):
        return '[' + ', '.join(_text(v) for v in value) + ']'
    if isinstance(value, tuple):
        return '(' + ', '.join(_text(v) for v in value) + (',)' if len(value) == 1 else ')')
    return repr(value)


def _zoom_text(t, zoom_kwargs: dict) -> str:
    """Like :func:`_text`, but the zoom arguments of a transform are written as ``**lzu_zoom``."""
    if isinstance(t, list):
        return '[' + ', '.join(_zoom_text(v, zoom_kwargs) for v in t) + ']'
    if isinstance(t, tuple):
        return '(' + ', '.join(_zoom_text(v, zoom_kwargs) for v in t) + (',)' if len(t) == 1 else ')')
    if not isinstance(t, dict):
        return _text(t)
    has_zoom = all(k in t and t[k] == v for k, v in zoom_kwargs.items()) and (
        _name(t) in ZOOM_TRANSFORMS or _name(dict(type=t.get('resize_type', ''))) in ZOOM_TRANSFORMS)
    items = [(k, v) for k, v in t.items() if not (has_zoom and k in zoom_kwargs)]
    if not all(isinstance(k, str) and k.isidentifier() for k, _ in items):
        return _text(t)
    body = [f'{k}={_zoom_text(v, zoom_kwargs)}' for k, v in items] + (['**lzu_zoom'] if has_zoom else [])
    return 'dict(' + ', '.join(body) + ')'


def _format(code: str) -> str:
    try:
        from yapf.yapflib.yapf_api import FormatCode
    except ImportError:  # pragma: no cover - yapf comes with mmengine
        return code
    style = dict(based_on_style='pep8', column_limit=120, blank_line_before_nested_class_or_def=True,
                 split_before_expression_after_opening_paren=True)
    out = FormatCode(code, style_config=style)
    return out[0] if isinstance(out, tuple) else out


def _base_ref(base: str, out: Optional[str]) -> str:
    if '::' in base or out is None:
        return base
    return osp.relpath(osp.abspath(base), osp.dirname(osp.abspath(out)))


def convert_config(base: str,
                   saliency: str,
                   grid_shape: Optional[Sequence[int]] = None,
                   attraction_fwhm: Optional[float] = None,
                   separable: Optional[bool] = None,
                   anti_crop: Optional[bool] = None,
                   model_side: bool = False,
                   out: Optional[str] = None) -> str:
    """Write (when ``out`` is given) and return the text of the LZU version of the config ``base``.

    Args:
        base: config file path or ``'mmdet::...'`` / ``'mmseg::...'`` /
            ``'mmdet3d::...'``.
        saliency: saliency file (``tools/saliency/*.py`` output: ``.pkl``,
            ``.npy``, ``.pth``, map ``(h, w)``) or ``'uniform'``; written into
            the config as given.
        grid_shape: ``(h, w)`` of the LZ grid; default: the saliency file's
            shape (required for ``'uniform'``).
        attraction_fwhm, separable, anti_crop: LZ grid parameters written
            into the config (``None``: the transforms' defaults, 13 grid
            cells, separable, anti-crop).
        model_side: zoom in the model (``model.lzu``), keep the pipelines.
        out: path to write the new config to (its ``_base_`` is then written
            relative to it).

    Returns:
        The config text.

    Raises:
        ValueError: the config cannot be converted (message names the
            transform / dataset / setting and what to do), a bad saliency.
        TypeError: the model type cannot be made an LZU model (reason).
    """
    from mmengine.config import Config

    from lzu_mm.ops import load_saliency
    from . import factory

    if '::' in base:  # a package path: mmengine resolves it in the installed package (as _base_ does)
        from mmengine.hub import get_config
        cfg = get_config(base)
    else:
        cfg = Config.fromfile(base)
    framework = _framework(cfg, base)
    importlib.import_module(f'lzu_mm.{framework}')
    if saliency != 'uniform':
        grid_shape = tuple(load_saliency(saliency, grid_shape).shape[-2:])
    elif grid_shape is None:
        raise ValueError("grid_shape (h, w) must be given with saliency='uniform'")
    zoom_kwargs = dict(saliency=saliency, grid_shape=tuple(int(v) for v in grid_shape))
    for key, value in (('separable', separable), ('attraction_fwhm', attraction_fwhm), ('anti_crop', anti_crop)):
        if value is not None:
            zoom_kwargs[key] = float(value) if key == 'attraction_fwhm' else bool(value)

    model = cfg.get('model') or {}
    kind = model.get('type')
    short = _name(model)
    if short == 'LZU' or short.startswith(('LZU', 'FOVEA')) or 'lzu' in model:
        raise ValueError(f'{base}: model.type={kind!r} is already an LZU model; convert its base config instead')
    if isinstance(kind, str):
        registry = importlib.import_module(f'{framework}.registry').MODELS
        cls = registry.get(kind)
        if cls is None:
            raise ValueError(f'{base}: model.type={kind!r} is not registered in {framework} (custom_imports?)')
        factory.lzu_model_class(cls)  # TypeError with the reason when LZU cannot wrap it
    test_mode = (model.get('test_cfg') or {}).get('mode')
    if not model_side and test_mode in ('slide', 'slide_flip'):
        raise ValueError(f"{base}: model.test_cfg.mode='{test_mode}' cuts windows out of the image inside the model, "
                         "and a zoom recorded by the pipeline belongs to the whole image; convert with --model-side "
                         "(model.lzu: each window is zoomed and unzoomed by the model), or set "
                         "model.test_cfg=dict(mode='whole') in the base config")

    lines = ['# LZU ("Learning to Zoom and Unzoom", Thavamani et al., CVPR 2023) version of',
             f'# {base},', '# written by tools/misc/lzu_config.py. Changed: the model type'
             + (' and its warp\n# (model.lzu: the model zooms; the pipelines are the base\'s).' if model_side else
                ', the last resize of each\n# pipeline (-> the fixed-saliency zoom) and the packing meta_keys.'),
             f'_base_ = [{_base_ref(base, out)!r}]']
    imports = list((cfg.get('custom_imports') or {}).get('imports') or [])
    if f'lzu_mm.{framework}' not in imports:
        imports.append(f'lzu_mm.{framework}')
    lines.append(f'custom_imports = dict(imports={imports!r}, allow_failed_imports=False)')
    lines.append('')
    lines.append('# the LZ warp: a fixed saliency and its grid (LZU §3)')
    lines.append(f'lzu_zoom = {_text(zoom_kwargs)}')
    lines.append('')
    lzu_arg = ', lzu=lzu_zoom' if model_side else ''
    lines.append(f'model = dict(type=\'LZU\', base={kind!r}{lzu_arg})')

    if not model_side:
        converted, names = {}, {}
        texts = {}
        for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
            section = cfg.get(loader)
            if not isinstance(section, dict):
                continue
            chain = _dataset_chain(section.get('dataset'), f'{loader}.dataset')
            ctx = _Ctx(framework, zoom_kwargs)
            resizing = [(w, p) for w, p in chain if _contains_resize(_get(section['dataset'], p)['pipeline'], ctx)]
            for where, path in resizing or chain[:1]:  # none resizes: convert_pipeline says so
                pipeline = _get(section['dataset'], path)['pipeline']
                new = convert_pipeline(pipeline, framework, zoom_kwargs, where)
                text = _zoom_text(new, zoom_kwargs)
                var = texts.get(text)
                if var is None:
                    var = {'train_dataloader': 'train_pipeline', 'val_dataloader': 'test_pipeline',
                           'test_dataloader': 'test_pipeline'}[loader]
                    var = var if var not in names.values() else f'{var}_{len(names)}'
                    texts[text] = var
                    names[where] = var
                    lines += ['', f'{var} = {text}']
                converted.setdefault(loader, []).append((path, var))
        if not converted:
            raise ValueError(f'{base}: no dataloader with a pipeline to convert')
        lines.append('')
        for loader, items in converted.items():
            override = {}
            for path, var in items:
                leaf = _nested(path + ['pipeline'], _Var(var))
                override = _merge(override, leaf)
            lines.append(f'{loader} = dict(dataset={_text(override)})')
        if isinstance(cfg.get('tta_pipeline'), (list, tuple)):
            new = convert_pipeline(cfg['tta_pipeline'], framework, zoom_kwargs, 'tta_pipeline')
            lines += ['', f'tta_pipeline = {_zoom_text(new, zoom_kwargs)}']

    text = _format('\n'.join(lines) + '\n')
    if out is not None:
        os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
        with open(out, 'w') as f:
            f.write(text)
        check_lzu_config(Config.fromfile(out))
    return text


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(out.get(k), dict) and isinstance(v, dict) else v
    return out


__all__ = ['convert_config', 'convert_pipeline', 'FRAMEWORKS', 'MULTI_IMAGE_TRANSFORMS', 'UNCONVERTIBLE_RESIZES',
           'GEOMETRIC_TRANSFORMS']
