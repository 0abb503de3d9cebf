"""Self-contained LZU checkpoints: the fixed saliency maps (and their LZ parameters) travel with the weights.

A config with a fixed saliency names a dataset-derived file (e.g.
``data/Argoverse/Argoverse-HD/saliency/kde-sd_train_31x51.pkl``), which a
machine that only runs inference does not have. Training through
``tools/train.py`` adds :class:`LZUCheckpointHook`, which stores every fixed
saliency the config uses in each checkpoint, as the *warp record*::

    checkpoint['meta']['lzu_warps'] = dict(
        version=1,
        saliency={<path as in the config>: <float32 tensor [1, 1, h, w]>, ...},
        sites=[dict(where=<config key, e.g. 'test_dataloader.dataset.pipeline.1'>, type=<transform type or 'lzu'>,
                    saliency=<path>, grid_shape=(h, w), separable=bool, attraction_fwhm=float,
                    anti_crop=bool, align_corners=bool), ...])

The same object is also put into the state dict's own metadata
(``checkpoint['state_dict']._metadata['']['lzu_warps']``, the per-module
metadata PyTorch and mmengine save with every state dict and hand to
``Module._load_from_state_dict`` when loading): it reaches the model in every
loading path -- mmengine's ``load_checkpoint`` (``mmdet.apis.init_detector``,
``mmseg.apis.init_model``, ``mmdet3d.apis.init_model``, the ``*Inferencer``
classes, ``Runner.load_checkpoint``) and plain ``model.load_state_dict`` --
without any change to those APIs. Pickled only once (same object), loads with
``torch.load(weights_only=True)`` (tensors, strings, numbers, tuples).

Loading (:meth:`lzu_mm.common.LZUMixin._load_from_state_dict`, or
:func:`register_checkpoint_warps` called with a checkpoint path, as
``tools/test.py`` and ``demo/lzu_demo.py`` do before building anything) puts
the maps into a **process-wide registry** keyed by the path. From then on
:func:`lzu_mm.ops.load_saliency` answers a request for a *missing* file with
the checkpoint's map, so the zoom transforms of the test pipeline (built after
the model by the frameworks' inference APIs) and a model-side warp (built
before the weights are loaded: it is completed when they are) work without
the file.

Mismatches (decision: **warnings, the config wins**): the config decides the
warp, as it decides the architecture; the checkpoint only fills in a missing
file. When the file exists *and* differs from the checkpoint's map, the file
is used and a ``UserWarning`` names both; when the config's LZ parameters
(grid shape, separable, attraction FWHM, anti-crop, pixel convention) for a
recorded saliency differ from every recorded use of it, or the config zooms
with a saliency the last loaded checkpoint does not record, a
``UserWarning`` says so. A missing file that no checkpoint carries stays a
``FileNotFoundError`` (for a model-side warp, whose checkpoint may still
come: when a checkpoint without it is loaded, in ``before_train`` of
:class:`LZUCheckpointHook`, or at the first forward pass).

Risks of the process-wide registry: a later checkpoint that stores a
*different* map under the same path replaces the earlier one (with a
warning), so two models of one process must not rely on two different maps
under one path name; lookups fall back to a unique file-name match when the
exact path is unknown (e.g. the config was dumped with an absolute path). Call
:func:`clear_checkpoint_warps` to forget everything.
"""
import hashlib
import os
import os.path as osp
import warnings
from typing import Dict, List, Optional, Union

import torch
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from lzu_mm.ops import load_saliency
from lzu_mm.ops.saliency import MISSING_SALIENCY_RESOLVERS

#: Key of the warp record in ``checkpoint['meta']`` and in the state dict's root metadata.
RECORD_KEY = 'lzu_warps'
RECORD_VERSION = 1
#: The LZ parameters recorded per use of a saliency (and their defaults, as the zoom transforms and ``model.lzu``).
LZ_PARAMS = dict(separable=True, attraction_fwhm=13., anti_crop=True, align_corners=False)

_registry: Dict[str, dict] = {}  # normalised path -> dict(saliency=tensor, source=str, sites=[...])
_last: Dict[str, object] = dict(source=None, paths=())  # the last registered checkpoint (for messages)


def _key(path) -> str:
    return osp.normpath(os.fspath(path))


def _digest(saliency: torch.Tensor) -> str:
    return hashlib.sha1(saliency.detach().to(torch.float32).contiguous().numpy().tobytes()).hexdigest()[:12]


def _plain(obj):
    """A config node as plain dicts / lists (mmengine ``ConfigDict`` included)."""
    if hasattr(obj, 'to_dict'):
        obj = obj.to_dict()
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _lz_params(given: dict) -> dict:
    """The LZ parameters of a zoom config, defaults filled in, as plain bools / floats."""
    return {k: type(d)(d if given.get(k) is None else given[k]) for k, d in LZ_PARAMS.items()}


def _site(node: dict, where: str) -> dict:
    return dict(where=where, type=str(node.get('type', 'lzu')), saliency=str(node['saliency']),
                grid_shape=tuple(int(v) for v in node['grid_shape']), **_lz_params(node))


def config_saliency_sites(cfg) -> List[dict]:
    """Every use of a fixed saliency *file* in a config: zoom transforms, ``model.lzu``, top-level ``lzu_zoom``.

    A use is a dict with a ``saliency`` string other than ``'uniform'`` and a
    ``grid_shape``, anywhere in the config (pipelines of every dataloader and
    dataset wrapper, TTA pipelines, ``model.lzu``).

    Returns:
        ``[dict(where, type, saliency, grid_shape, separable, attraction_fwhm, anti_crop, align_corners)]``.
    """
    sites = []

    def walk(node, where):
        if isinstance(node, dict):
            sal = node.get('saliency')
            if isinstance(sal, str) and sal != 'uniform' and node.get('grid_shape') is not None:
                sites.append(_site(node, where))
            for k, v in node.items():
                walk(v, f'{where}.{k}' if where else str(k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f'{where}.{i}')

    walk(_plain(cfg), '')
    return sites


def warp_record(cfg) -> Optional[dict]:
    """The warp record of a config (see the module docstring), or ``None`` when it uses no saliency file.

    Each saliency is read as the transforms read it (:func:`lzu_mm.ops.load_saliency`: from the file, or from a
    loaded checkpoint when the file is missing, e.g. when fine-tuning from an LZU checkpoint). A saliency that cannot
    be read is left out with a warning (a zoom that uses it fails when it is built, long before a checkpoint is
    saved; an unused entry, e.g. a top-level ``lzu_zoom`` no transform takes, must not stop the training).
    """
    sites, maps = [], {}
    for site in config_saliency_sites(cfg):
        path = site['saliency']
        if path not in maps:
            try:
                maps[path] = load_saliency(path, site['grid_shape']).clone()
            except (OSError, ValueError) as exc:
                warnings.warn(f'LZUCheckpointHook: {site["where"]}: {exc}; not stored in the checkpoint')
                maps[path] = None
        if maps[path] is not None:
            sites.append(site)
    maps = {k: v for k, v in maps.items() if v is not None}
    return dict(version=RECORD_VERSION, saliency=maps, sites=sites) if maps else None


def attach_warp_record(checkpoint: dict, record: Optional[dict]) -> dict:
    """Put ``record`` into ``checkpoint['meta']`` and the root metadata of ``checkpoint['state_dict']``."""
    if record is None:
        return checkpoint
    checkpoint.setdefault('meta', {})[RECORD_KEY] = record
    state_dict = checkpoint.get('state_dict')
    if state_dict is not None:
        metadata = getattr(state_dict, '_metadata', None)
        if metadata is None:
            from collections import OrderedDict
            metadata = state_dict._metadata = OrderedDict()
        metadata[''] = dict(metadata.get('', {}), **{RECORD_KEY: record})
    return checkpoint


@HOOKS.register_module()
class LZUCheckpointHook(Hook):
    """Store the config's fixed saliency maps and LZ parameters in every checkpoint (self-contained inference).

    ``tools/train.py`` adds it to ``custom_hooks``; add ``dict(type='LZUCheckpointHook')`` yourself when training
    otherwise. Writes the record of :func:`warp_record` (``runner.cfg``) in ``before_save_checkpoint``; a config
    without saliency files writes nothing. Low priority: runs after hooks that swap the state dict (EMA).

    Also, in ``before_train`` (after ``load_from`` / resume): a model-side saliency file that was missing when the
    model was built and that no loaded checkpoint brought raises its ``FileNotFoundError`` before the first
    iteration (the model defers it, as an inference API loads the checkpoint after building the model).
    """

    priority = 'VERY_LOW'

    def __init__(self) -> None:
        self._record = None
        self._read = False

    def before_train(self, runner) -> None:
        model = runner.model.module if hasattr(runner.model, 'module') else runner.model
        missing = getattr(model, '_lzu_missing', None)
        if missing is not None:
            raise FileNotFoundError(f'{type(model).__name__}: {missing} (model.lzu.saliency), and the checkpoint '
                                    'loaded by load_from / resume (if any) does not store it')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if not self._read:  # the files do not change during a run: read them once
            self._record, self._read = warp_record(runner.cfg), True
        attach_warp_record(checkpoint, self._record)


# ---------------------------------------------------------------------------------------------- loading side
def _record_of(source) -> Optional[dict]:
    """The warp record in a checkpoint dict, a state dict (its metadata) or a record itself."""
    if isinstance(source, dict) and 'saliency' in source and 'version' in source:
        return source
    if isinstance(source, dict):
        meta = source.get('meta') or {}
        if isinstance(meta, dict) and RECORD_KEY in meta:
            return meta[RECORD_KEY]
        state_dict = source.get('state_dict', source)
        root = (getattr(state_dict, '_metadata', None) or {}).get('', {})
        return root.get(RECORD_KEY)
    return None


def read_checkpoint_warps(checkpoint: Union[str, dict]) -> Optional[dict]:
    """The warp record of a checkpoint (a path, or a loaded checkpoint / state dict); ``None`` if it has none."""
    if isinstance(checkpoint, (str, os.PathLike)):
        from mmengine.runner.checkpoint import _load_checkpoint

        from .checkpoint import allow_mmengine_checkpoints
        allow_mmengine_checkpoints()
        checkpoint = _load_checkpoint(os.fspath(checkpoint), map_location='cpu')
    return _record_of(checkpoint)


def register_checkpoint_warps(checkpoint: Union[str, dict], source: Optional[str] = None) -> List[str]:
    """Make the saliency maps a checkpoint stores resolvable by their config paths (process-wide).

    Args:
        checkpoint: a checkpoint path, a loaded checkpoint, a state dict or a
            warp record.
        source: a name for messages (default: the path, or ``'checkpoint'``).

    Returns:
        The registered saliency paths (empty when the checkpoint has no record).

    Warns:
        UserWarning: a saliency file exists and differs from the checkpoint's
            map (the file is used); a path registered earlier with a different
            map is replaced.
    """
    if source is None:
        source = os.fspath(checkpoint) if isinstance(checkpoint, (str, os.PathLike)) else 'checkpoint'
    record = read_checkpoint_warps(checkpoint)
    if not record:
        return []
    if record.get('version', RECORD_VERSION) > RECORD_VERSION:
        warnings.warn(f'LZU checkpoint {source}: warp record version {record["version"]} is newer than this '
                      f'lzu_mm ({RECORD_VERSION}); reading it as version {RECORD_VERSION}')
    paths = []
    for path, saliency in record.get('saliency', {}).items():
        saliency = load_saliency(torch.as_tensor(saliency))
        key = _key(path)
        sites = [s for s in record.get('sites', []) if _key(s['saliency']) == key]
        old = _registry.get(key)
        if old is not None and _digest(old['saliency']) != _digest(saliency):
            warnings.warn(f'LZU checkpoint {source} stores another saliency under {path!r} than {old["source"]} '
                          'loaded earlier in this process; the later one is used for a missing file from now on')
        _registry[key] = dict(saliency=saliency, source=source, sites=sites, path=str(path))
        if osp.isfile(path):
            _warn_if_file_differs(path, saliency, source)
        paths.append(str(path))
    _last.update(source=source, paths=tuple(paths))
    return paths


def _warn_if_file_differs(path: str, saliency: torch.Tensor, source: str) -> None:
    try:
        on_disk = load_saliency(path)
    except (ValueError, OSError) as exc:
        warnings.warn(f'saliency file {path!r} cannot be read ({exc}); LZU checkpoint {source} stores it')
        return
    if on_disk.shape != saliency.shape or not torch.allclose(on_disk, saliency, rtol=1e-5, atol=1e-8):
        if on_disk.shape != saliency.shape:
            diff = f'shape {tuple(on_disk.shape[-2:])} vs {tuple(saliency.shape[-2:])}'
        else:
            diff = f'max |difference| {float((on_disk - saliency).abs().max()):.3g}'
        warnings.warn(f'saliency file {path!r} differs from the saliency LZU checkpoint {source} was trained with '
                      f'({diff}); the file is used, as the config names it. To zoom as in training, remove or '
                      'restore the file (a missing file is read from the checkpoint).')


def resolve_missing_saliency(path) -> Optional[torch.Tensor]:
    """The registered map for ``path`` (exact normalised path, else a unique file-name match), or ``None``.

    A file-name match (a config that names the file under another directory
    than training did) is used with a ``UserWarning`` naming both paths.
    """
    entry = _registry.get(_key(path))
    if entry is None:
        same_name = [(k, e) for k, e in _registry.items() if osp.basename(k) == osp.basename(_key(path))]
        if len(same_name) != 1:
            return None
        recorded, entry = same_name[0]
        warnings.warn(f'saliency file {os.fspath(path)!r} does not exist; using the saliency that LZU checkpoint '
                      f'{entry["source"]} stores for {recorded!r} (the same file name)')
    return entry['saliency']


def check_config_warp(saliency, grid_shape, where: str, **params) -> None:
    """Warn when a zoom's saliency / LZ parameters differ from what the loaded checkpoint recorded.

    Args:
        saliency: the config's saliency path.
        grid_shape: its ``(h, w)``.
        where: what zooms (for the message), e.g. ``'FixedSaliencyZoom'``.
        **params: ``separable``, ``attraction_fwhm``, ``anti_crop``, ``align_corners``.
    """
    if not isinstance(saliency, (str, os.PathLike)) or saliency == 'uniform' or not _registry:
        return
    entry = _registry.get(_key(saliency))
    if entry is None:
        if _last['paths'] and not osp.isfile(saliency):
            return  # FileNotFoundError follows, naming the file
        if _last['paths']:
            warnings.warn(f'{where} zooms with saliency {os.fspath(saliency)!r}, but the last loaded LZU checkpoint '
                          f'({_last["source"]}) was trained with {list(_last["paths"])}')
        return
    mine = dict(grid_shape=tuple(int(v) for v in grid_shape), **_lz_params(params))
    recorded = [{k: s[k] for k in mine} for s in entry['sites']]
    if recorded and all(any(r[k] != v for k, v in mine.items()) for r in recorded):
        warnings.warn(f'{where}: the LZ parameters for saliency {os.fspath(saliency)!r} ({mine}) differ from those '
                      f'LZU checkpoint {entry["source"]} was trained with ({recorded[0]}); the config\'s are used')


def clear_checkpoint_warps() -> None:
    """Forget every registered checkpoint saliency (tests; a process that switches models)."""
    _registry.clear()
    _last.update(source=None, paths=())


if resolve_missing_saliency not in MISSING_SALIENCY_RESOLVERS:
    MISSING_SALIENCY_RESOLVERS.append(resolve_missing_saliency)
