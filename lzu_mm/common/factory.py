"""One explicit, idempotent factory of LZU model classes for every framework (LZU §4: zoom, backbone, unzoom).

Any detector, segmentor or monocular 3D detector registered in MMDetection,
MMSegmentation or MMDetection3D (or in a user's ``custom_imports``) becomes its
LZU version from the config alone::

    model = dict(type='LZU', base='ATSS', lzu=None, **atss_kwargs)       # or base='mmdet.ATSS', or a class

:func:`lzu_model_class` composes the base class with the mixin of its family
(the first base of the new class):

======================  =====================================================  ===================================
family (root class)     mixins                                                  registered by
======================  =====================================================  ===================================
mmdet ``BaseDetector``  :class:`lzu_mm.mmdet.detectors.LZUDetectorMixin`         ``lzu_mm.mmdet``
mmseg ``EncoderDecoder``:class:`lzu_mm.mmseg.segmentors.LZUSegmentorMixin`       ``lzu_mm.mmseg``
mmdet3d ``SingleStage   :class:`lzu_mm.mmdet3d.detectors.LZUMono3DMixin`,         ``lzu_mm.mmdet3d``
Mono3DDetector``        ``ResizedInputMono3DMixin``
======================  =====================================================  ===================================

The most derived matching root wins (MMDetection3D's detectors are also
MMDetection ``BaseDetector`` subclasses). The class is made once per base
class and cached: asking again returns the same class object; its name is
``'LZU' + base.__name__`` and it is reachable as an attribute of this module
(so instances pickle). LZU adds no parameters or persistent buffers, so the
``state_dict`` keys are the base model's: a base checkpoint loads with
``strict=True`` and an LZU checkpoint loads into the base model.

Models whose design makes LZU impossible are refused with a ``TypeError``
*when the config is built*, naming the class and the reason
(:func:`refuse`, :data:`REFUSED`; abstract classes and classes outside every
family are refused too). This module imports no OpenMMLab framework: each
framework integration registers its family and refusals when imported, and
:func:`lzu_model_class` imports the integration of a base class' framework
(``lzu_mm.<mmdet|mmseg|mmdet3d>``) on demand.
"""
import importlib
import inspect
import sys
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple, Union


class Family(NamedTuple):
    """A model family LZU supports: its root class and the mixins composed before the base (first to last)."""
    name: str
    root: type
    mixins: Tuple[type, ...]


#: Registered families, by name (filled by the framework integrations).
FAMILIES: Dict[str, Family] = {}
#: Refused classes (and their subclasses) with the reason, in registration order (filled by the integrations).
REFUSED: List[Tuple[type, str]] = []
#: The LZU class of each base class made so far.
_CACHE: Dict[type, type] = {}
#: Root packages whose LZU integration :func:`lzu_model_class` imports on demand.
_INTEGRATIONS = {'mmdet': 'lzu_mm.mmdet', 'mmseg': 'lzu_mm.mmseg', 'mmdet3d': 'lzu_mm.mmdet3d'}


def register_family(name: str, root: type, mixins: Tuple[type, ...]) -> None:
    """Declare that subclasses of ``root`` become LZU models by composing ``mixins`` (idempotent)."""
    FAMILIES[name] = Family(name, root, tuple(mixins))


def refuse(cls: type, reason: str) -> None:
    """Refuse ``cls`` and its subclasses as an LZU base, with ``reason`` (a sentence: why, and what to do)."""
    if not any(c is cls for c, _ in REFUSED):
        REFUSED.append((cls, reason))


def _import_integration(base: type) -> None:
    root = (getattr(base, '__module__', '') or '').split('.')[0]
    for cls in base.__mro__:  # a user's class: the framework of the library class it derives from
        module = _INTEGRATIONS.get((getattr(cls, '__module__', '') or '').split('.')[0])
        if module is not None and module not in sys.modules:
            importlib.import_module(module)
    if root in _INTEGRATIONS and _INTEGRATIONS[root] not in sys.modules:
        importlib.import_module(_INTEGRATIONS[root])


def refusal(base: type) -> Optional[str]:
    """Why ``base`` cannot be made an LZU model (``None``: it can); see :func:`lzu_model_class`."""
    if not isinstance(base, type):
        return f'{base!r} is not a class'
    _import_integration(base)
    family = _family(base)
    for cls, reason in REFUSED:  # a family root derived from a refused class (mono 3D in 3D) is not refused
        if issubclass(base, cls) and not (family is not None and family.root is not cls and
                                          issubclass(family.root, cls)):
            return reason
    if inspect.isabstract(base):
        missing = ', '.join(sorted(getattr(base, '__abstractmethods__', ())))
        return f'it is an abstract base class (abstract methods: {missing}); give a concrete model class'
    if family is None:
        roots = ', '.join(f'{f.root.__module__}.{f.root.__name__}' for f in FAMILIES.values()) or 'none registered'
        return ('LZU zooms the input image of a model whose extract_feat returns 2-D image feature maps; supported '
                f'are subclasses of {roots}, and {base.__module__}.{base.__name__} is none of them')
    return None


def _family(base: type) -> Optional[Family]:
    matches = [f for f in FAMILIES.values() if issubclass(base, f.root)]
    best = [f for f in matches if all(issubclass(f.root, g.root) for g in matches)]
    return best[0] if best else None


def lzu_model_class(base: type) -> type:
    """The LZU class of a model class: ``(<family mixins>, base)``; made once, the same object on every call.

    Args:
        base: a detector / segmentor / monocular 3D detector class (a
            subclass of a registered family root).

    Returns:
        The class ``LZU<base.__name__>``: ``base``'s arguments plus ``lzu``
        (see :class:`lzu_mm.common.LZUMixin`); a class that already is an
        LZU class is returned as it is.

    Raises:
        TypeError: ``base`` is refused (the message names the class and the
            reason).
    """
    if base in _CACHE:
        return _CACHE[base]
    if isinstance(base, type) and base in _CACHE.values():
        return base
    why = refusal(base)
    if why is not None:
        name = f'{base.__module__}.{base.__name__}' if isinstance(base, type) else repr(base)
        raise TypeError(f'LZU cannot wrap {name}: {why}')
    family = _family(base)
    from .model import LZUMixin
    if issubclass(base, (LZUMixin, family.mixins[0])):
        raise TypeError(f'LZU cannot wrap {base.__module__}.{base.__name__}: it already has LZU '
                        f'({next(c.__name__ for c in base.__mro__ if issubclass(c, LZUMixin))}) among its bases')
    name = f'LZU{base.__name__}'
    module = sys.modules[__name__]
    attr = name if getattr(module, name, None) is None else f'{name}_{len(_CACHE)}'  # two bases of the same name
    cls = type(name, (*family.mixins, base), {
        '__doc__': f'{base.__name__} with LZU ({family.name} family): the input is zoomed, the features of '
                   f'extract_feat unzoomed (:mod:`lzu_mm.common.factory`). Arguments: those of '
                   f'{base.__module__}.{base.__name__} plus ``lzu`` (:class:`lzu_mm.common.LZUMixin`).',
        '__module__': __name__,
        '__qualname__': attr,
    })
    setattr(module, attr, cls)
    _CACHE[base] = cls
    return cls


def _resolve(registry, base: Union[str, type]) -> type:
    if isinstance(base, type):
        return base
    if not isinstance(base, str) or not base:
        raise TypeError(f"LZU: base must be a registered model type name (e.g. 'ATSS', 'mmdet.ATSS') or a class, "
                        f'got {base!r}')
    cls = registry.get(base)
    if cls is None:
        raise KeyError(f"LZU: base={base!r} is not registered in the {registry.scope!r} MODELS registry (nor its "
                       "parents); check the spelling, add the scope (e.g. 'mmdet.ATSS') or custom_imports")
    if not isinstance(cls, type):
        raise TypeError(f'LZU: base={base!r} is registered as {cls!r}, not a model class')
    return cls


def make_lzu_builder(registry) -> Callable:
    """The ``LZU`` model type of a framework's ``MODELS`` registry: ``LZU(base, **kwargs)`` builds ``LZU<base>``.

    ``base`` (a name or a class) is looked up in ``registry`` (the
    framework's ``MODELS``); a scoped name like ``'mmdet.ATSS'`` reaches a
    sibling registry, and the model is then built in that scope (as with
    ``_scope_='mmdet'``: its sub-modules are looked up there too). The other
    arguments go to the LZU class (the base's arguments plus ``lzu``).
    """

    def LZU(base: Union[str, type], **kwargs):  # noqa: N802  (the registered type name)
        """Build the LZU version of the registered model ``base`` (see :func:`lzu_model_class`).

        Raises:
            KeyError: ``base`` is not registered.
            TypeError: ``base`` cannot be made an LZU model (the reason is in the message).
        """
        scope = registry.split_scope_key(base)[0] if isinstance(base, str) else None
        if scope is None or scope == registry.scope:
            return lzu_model_class(_resolve(registry, base))(**kwargs)
        # 'mmdet.ATSS' from another scope: built as with _scope_='mmdet' (its sub-modules are mmdet's too)
        with registry.switch_scope_and_registry(scope) as scoped:
            return lzu_model_class(_resolve(scoped, base))(**kwargs)

    LZU.__module__ = __name__
    return LZU


def register_lzu(registry) -> None:
    """Register the ``LZU`` model type in ``registry`` (a framework's ``MODELS``); idempotent."""
    if 'LZU' not in registry.module_dict:
        registry.register_module(name='LZU', module=make_lzu_builder(registry))


def register_alias(registry, base: type, name: Optional[str] = None) -> type:
    """Register ``lzu_model_class(base)`` in ``registry`` under ``name`` (default ``LZU<base>``); idempotent.

    Raises:
        KeyError: ``name`` is registered to another class.
    """
    cls = lzu_model_class(base)
    name = name or cls.__name__
    known = registry.module_dict.get(name)
    if known is None:
        registry.register_module(name=name, module=cls)
    elif known is not cls:
        raise KeyError(f'{name} is already registered in {registry.scope!r} MODELS as {known!r}, not the LZU class '
                       f'of {base.__name__}; choose another name')
    return cls


__all__ = ['Family', 'FAMILIES', 'REFUSED', 'register_family', 'refuse', 'refusal', 'lzu_model_class',
           'make_lzu_builder', 'register_lzu', 'register_alias']
