"""lzu_mm: LZU ("Learning to Zoom and Unzoom", Thavamani et al., CVPR 2023) for OpenMMLab.

``import lzu_mm`` registers the plugin's modules for every OpenMMLab framework
that is installed (MMDetection, MMSegmentation, MMDetection3D); each
integration lives in its own subpackage (``lzu_mm.mmdet``, ``lzu_mm.mmseg``,
``lzu_mm.mmdet3d``) and imports only its own framework, so a user with one of
them installed can use that part. ``lzu_mm.ops`` is pure PyTorch.

Configs load the plugin with ``custom_imports = dict(imports=['lzu_mm.mmdet'])``
(or ``lzu_mm.mmseg`` / ``lzu_mm.mmdet3d``).
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
    """Import (and so register) the integration of every installed framework; returns their names."""
    loaded = []
    for framework, module in _INTEGRATIONS:
        if not (_installed(framework) and _installed(module)):
            continue
        try:
            importlib.import_module(module)
        except ImportError as exc:  # a broken framework install must not hide the others
            warnings.warn(f'lzu_mm: {module} not registered, importing {framework} failed: {exc}')
            continue
        loaded.append(module)
    return loaded


if _installed('mmengine'):
    from .common.checkpoint import allow_mmengine_checkpoints
    allow_mmengine_checkpoints()

register_all_modules()

__all__ = ['__version__', 'register_all_modules']
