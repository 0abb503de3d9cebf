"""Find the LZ warp and the zoomed size that a config applies (framework-agnostic: reads config dicts only).

A config zooms either in its pipeline -- a ``Resize``-like transform with the
fixed-saliency arguments ``saliency`` and ``grid_shape`` (the
:class:`lzu_mm.common.LZZoomMixin` transforms of every framework) -- or in the
model (``model.lzu = dict(saliency=..., grid_shape=...)``, see
:func:`lzu_mm.common.build_lzu_warp`), after a uniform ``Resize``.
"""
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import numpy as np

from lzu_mm.ops import LZWarp, load_saliency

#: Keys that make a pipeline transform the fixed-saliency zoom.
ZOOM_KEYS = ('saliency', 'grid_shape')


@dataclass
class ConfigWarp:
    """The warp of a config.

    Attributes:
        warp: the fixed warp (None for a uniform config).
        where: ``'pipeline'`` (zoom transform), ``'model'`` (``model.lzu``) or
            ``'none'`` (uniform resize only).
        resize: the resize / zoom transform's config dict (None if none found).
        saliency_path: file of the fixed saliency (None if uniform / unknown).
    """
    warp: Optional[LZWarp]
    where: str
    resize: Optional[dict]
    saliency_path: Optional[str]

    def out_shape(self, ori_shape: Sequence[int]) -> Tuple[int, int]:
        """``(h, w)`` of the zoomed (or resized) image for an original of ``ori_shape = (H, W)``."""
        return resized_shape(self.resize, ori_shape)


def _to_plain(obj):
    """mmengine ``ConfigDict`` / lists -> plain dicts / lists."""
    if hasattr(obj, 'to_dict'):
        return obj.to_dict()
    if isinstance(obj, dict):
        return {k: _to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_plain(v) for v in obj)
    return obj


def config_test_pipeline(cfg) -> List[dict]:
    """The test pipeline of a config (``test_dataloader.dataset.pipeline``, else ``test_pipeline``), flattened.

    Wrappers such as ``TestTimeAug`` / ``MultiScaleFlipAug`` contribute their inner transforms.
    """
    pipeline = None
    loader = cfg.get('test_dataloader', None) or cfg.get('val_dataloader', None)
    if loader is not None:
        ds = loader.get('dataset', {})
        while 'pipeline' not in ds and 'dataset' in ds:  # dataset wrappers
            ds = ds['dataset']
        pipeline = ds.get('pipeline', None)
    if pipeline is None:
        pipeline = cfg.get('test_pipeline', None)
    if pipeline is None:
        raise ValueError('config has no test pipeline (test_dataloader.dataset.pipeline or test_pipeline)')
    flat = []

    def visit(items):
        for t in items:
            t = _to_plain(t)
            if isinstance(t, (list, tuple)):
                visit(t)
            elif isinstance(t, dict):
                flat.append(t)
                for key in ('transforms', 'img_transforms'):
                    if isinstance(t.get(key), (list, tuple)):
                        visit(t[key])

    visit(pipeline)
    return flat


def _is_resize(t: dict) -> bool:
    name = str(t.get('type', '')).split('.')[-1].lower()
    return ('resize' in name or 'zoom' in name) and ('scale' in t or 'scale_factor' in t)


def find_resize(pipeline: Sequence[dict]) -> Optional[dict]:
    """The zoom transform of a pipeline if any, else its first ``Resize``-like transform, else None."""
    for t in pipeline:
        if all(k in t for k in ZOOM_KEYS):
            return t
    for t in pipeline:
        if _is_resize(t):
            return t
    return None


def resized_shape(resize: Optional[dict], ori_shape: Sequence[int]) -> Tuple[int, int]:
    """``(h, w)`` that a Resize-like transform config gives an image of ``ori_shape = (H, W)``.

    Follows ``mmcv.Resize``: ``scale=(w, h)`` with ``keep_ratio`` fits the
    image into the scale (``mmcv.rescale_size``), without it resizes to
    exactly ``(w, h)``; ``scale_factor`` (float or ``(fw, fh)``) multiplies the size.
    No transform: the original size.
    """
    import mmcv

    h, w = int(ori_shape[0]), int(ori_shape[1])
    if resize is None:
        return h, w
    if resize.get('scale') is not None:
        scale = resize['scale']
        if isinstance(scale, (int, float)):
            scale = (scale, scale)
        if resize.get('keep_ratio', False):
            new_w, new_h = mmcv.rescale_size((w, h), tuple(scale))
        else:
            new_w, new_h = scale
        return int(new_h), int(new_w)
    sf = resize.get('scale_factor')
    if sf is None:
        return h, w
    if isinstance(sf, (int, float)):
        new_w, new_h = mmcv.rescale_size((w, h), float(sf))
        return int(new_h), int(new_w)
    fw, fh = sf
    return int(h * float(fh) + 0.5), int(w * float(fw) + 0.5)


def warp_from_config(cfg, saliency: Optional[str] = None) -> ConfigWarp:
    """The warp that ``cfg`` applies: its pipeline zoom transform, else ``model.lzu``, else none.

    Args:
        cfg: an mmengine ``Config`` (or dict).
        saliency: optional saliency file replacing the config's (same grid shape).

    Raises:
        ValueError: no test pipeline; FileNotFoundError / ValueError from a
            bad saliency file (naming it).
    """
    pipeline = config_test_pipeline(cfg)
    resize = find_resize(pipeline)
    if resize is not None and all(k in resize for k in ZOOM_KEYS):
        path = str(saliency or resize['saliency'])
        warp = LZWarp(load_saliency(path, resize['grid_shape']), separable=resize.get('separable', True),
                      attraction_fwhm=resize.get('attraction_fwhm', 13.), anti_crop=resize.get('anti_crop', True),
                      align_corners=resize.get('align_corners', False))
        return ConfigWarp(warp, 'pipeline', resize, path)
    lzu = _to_plain(cfg.get('model', {})).get('lzu')
    if lzu:
        from lzu_mm.common.model import build_lzu_warp
        if saliency:
            lzu = dict(lzu, saliency=saliency)
        source = lzu.get('saliency', 'uniform')
        return ConfigWarp(build_lzu_warp(lzu), 'model', resize, None if source in (None, 'uniform') else str(source))
    return ConfigWarp(None, 'none', resize, None)


def _is_loader(t: dict) -> bool:
    name = str(t.get('type', '')).split('.')[-1].lower()
    return name.startswith('load')


def pre_zoom_transforms(cfg) -> list:
    """The built test-pipeline transforms that come before the zoom / resize (loaders excluded).

    Build them once and pass them to :func:`image_before_zoom` for every
    image; the framework's registry must be the default scope
    (``mmengine.registry.init_default_scope``).
    """
    from mmengine.registry import TRANSFORMS

    pipeline = config_test_pipeline(cfg)
    resize = find_resize(pipeline)
    if resize is None:
        return []
    return [TRANSFORMS.build(t) for t in pipeline[:pipeline.index(resize)] if not _is_loader(t)]


def image_before_zoom(cfg, image: np.ndarray, image_path: str = '', transforms: Optional[list] = None) -> np.ndarray:
    """The image as the config's zoom / resize transform receives it.

    Runs the test-pipeline transforms that come before the zoom (e.g. a
    centre crop), except the loading transforms (the image is given) and
    annotation loaders; the framework's registry must be the default scope
    (``mmengine.registry.init_default_scope``).

    Args:
        cfg: the config.
        image: ``[H, W, 3]`` RGB image.
        image_path: its path (some transforms record it).
        transforms: :func:`pre_zoom_transforms` of ``cfg``, built once by
            the caller (default: built here).

    Returns:
        ``[h, w, 3]`` RGB image.

    Raises:
        ValueError: a transform dropped the image.
    """
    if transforms is None:
        transforms = pre_zoom_transforms(cfg)
    if not transforms:
        return image
    bgr = np.ascontiguousarray(image[..., ::-1])
    # cam2img: placeholder intrinsics for mono-3D resizes, which rescale them in place (only the image is used)
    results = dict(img=bgr, img_path=image_path, img_shape=bgr.shape[:2], ori_shape=bgr.shape[:2],
                   cam2img=np.eye(3))
    for t in transforms:
        results = t(results)
        if results is None:
            raise ValueError(f'transform {type(t).__name__} of the test pipeline dropped the image')
    return np.ascontiguousarray(results['img'][..., ::-1])
