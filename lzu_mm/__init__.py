"""lzu_mm: LZU ("Learning to Zoom and Unzoom", Thavamani et al., CVPR 2023) for OpenMMLab.

``import lzu_mm`` imports nothing else: ``lzu_mm.ops`` (the warp core) is
pure PyTorch and stays free of OpenMMLab imports. Each integration lives in
its own subpackage (``lzu_mm.mmdet``, ``lzu_mm.mmseg``, ``lzu_mm.mmdet3d``,
``lzu_mm.visualization``) and imports only its own framework; importing it
registers its modules. Configs load them with
``custom_imports = dict(imports=['lzu_mm.mmdet'])`` (or ``lzu_mm.mmseg`` /
``lzu_mm.mmdet3d``); :func:`register_all_modules` imports every installed one.
"""
import importlib
import importlib.util
import warnings

from .version import __version__

_INTEGRATIONS = (('mmengine', 'lzu_mm.visualization'), ('mmdet', 'lzu_mm.mmdet'), ('mmseg', 'lzu_mm.mmseg'),
                 ('mmdet3d', 'lzu_mm.mmdet3d'))


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def register_all_modules() -> list:
    """Import (and so register) the integration of every installed framework; returns their names.

    Importing any integration also lets mmengine's checkpoint loaders read the
    checkpoints mmengine writes under torch >= 2.6, scoped to those loads
    (:func:`lzu_mm.common.allow_mmengine_checkpoints`). A
    framework whose import fails is skipped with a warning, so a broken
    install does not hide the others.
    """
    loaded = []
    for framework, module in _INTEGRATIONS:
        if not (_installed(framework) and _installed(module)):
            continue
        try:
            importlib.import_module(module)
        except ImportError as exc:
            warnings.warn(f'lzu_mm: {module} not registered, importing {framework} failed: {exc}')
            continue
        loaded.append(module)
    return loaded


__all__ = ['__version__', 'register_all_modules']
