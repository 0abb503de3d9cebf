"""Config-level LZU settings for the tools: one LZ warp per experiment, data overrides, short runs.

Works on mmengine ``Config`` objects (or plain dicts) after they are parsed,
so that ``--cfg-options`` reach every place that uses them:

* :func:`merge_cfg_options` merges ``--cfg-options`` and then resolves a
  top-level ``lzu_zoom = dict(saliency=..., grid_shape=..., separable=...,
  attraction_fwhm=..., anti_crop=...)`` into every fixed-saliency zoom
  transform of every pipeline and into the model's ``lzu`` dict. Configs
  expand ``lzu_zoom`` into their pipelines when the file is parsed, so
  without this step ``--cfg-options lzu_zoom.saliency=FILE`` would change
  nothing. A config whose pipelines (or model) disagree about the warp is
  refused with a ``ValueError`` naming the places.
* :func:`set_saliency` is the ``--saliency FILE`` flag of the tools.
* :func:`override_data` points every dataloader and evaluator at another
  data folder / annotation file (``--data-root`` / ``--ann-file``).
* :func:`short_run` makes any train loop a few-iteration run
  (``--max-iters``) and :func:`without_pretrained` drops pretrained weights.

Only config dicts are read and written (no framework import), so the module
serves MMDetection, MMSegmentation and MMDetection3D configs alike.
"""
import copy
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

#: The LZ warp parameters shared by the zoom transforms (:class:`lzu_mm.common.LZZoomMixin`) and ``model.lzu``.
LZ_KEYS = ('saliency', 'grid_shape', 'separable', 'attraction_fwhm', 'anti_crop')
#: Defaults of the zoom transforms and :func:`lzu_mm.common.build_lzu_warp` for the optional keys.
LZ_DEFAULTS = dict(separable=True, attraction_fwhm=13., anti_crop=True)
#: The top-level config key of an experiment's LZ warp.
TOP_KEY = 'lzu_zoom'
#: Top-level config keys whose LZ sites a training run uses (tools/train.py); the other tools run the test pipeline.
USED_BY_TRAINING = ('train_dataloader', 'val_dataloader', 'test_dataloader', 'model')
USED_BY_TESTING = ('test_dataloader', 'model')
#: Dataloaders and evaluators that :func:`override_data` changes.
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
EVALUATORS = ('val_evaluator', 'test_evaluator')

Path = Tuple  # a location in the config: keys and list indices


def _root(cfg):
    """The dict behind an mmengine ``Config`` (or the dict itself)."""
    return cfg._cfg_dict if hasattr(cfg, '_cfg_dict') else cfg


def _fmt(path: Path) -> str:
    return '.'.join(str(p) for p in path)


def _normalise(key: str, value):
    if key == 'grid_shape' and value is not None:
        return tuple(int(v) for v in value)
    if key == 'attraction_fwhm' and value is not None:
        return float(value)
    if key in ('separable', 'anti_crop') and value is not None:
        return bool(value)
    if key == 'saliency' and value is not None:
        return str(value)
    return value


def _lz_values(node: dict) -> dict:
    """The LZ parameters of a zoom transform / ``model.lzu`` dict, defaults filled in."""
    return {k: _normalise(k, node.get(k, LZ_DEFAULTS.get(k))) for k in LZ_KEYS}


def _is_zoom_transform(node) -> bool:
    return isinstance(node, dict) and 'type' in node and 'saliency' in node and 'grid_shape' in node


def find_lz_sites(cfg) -> Dict[Path, dict]:
    """Every place of ``cfg`` that defines an LZ warp, in config order.

    Sites are the fixed-saliency zoom transforms (dicts with ``type``,
    ``saliency`` and ``grid_shape``, anywhere: pipelines, wrapped datasets,
    test-time augmentation) and every ``lzu`` dict inside ``model`` (the
    model-side warp; ``lzu=None`` is no site).

    Returns:
        ``{path: dict}``; the dicts are the config's own (edit in place).
    """
    sites: Dict[Path, dict] = {}

    def visit(node, path):
        if isinstance(node, dict):
            if _is_zoom_transform(node):
                sites[path] = node
            for key, value in node.items():
                if path and path[0] == 'model' and key == 'lzu' and isinstance(value, dict):
                    sites[path + (key, )] = value
                else:
                    visit(value, path + (key, ))
        elif isinstance(node, (list, tuple)):
            for i, value in enumerate(node):
                visit(value, path + (i, ))

    root = _root(cfg)
    for key, value in root.items():
        if key != TOP_KEY:
            visit(value, (key, ))
    return sites


def lz_snapshot(cfg) -> dict:
    """The LZ parameters of ``cfg`` (top-level ``lzu_zoom`` and every site), to compare after overrides."""
    top = _root(cfg).get(TOP_KEY)
    return dict(top=None if not isinstance(top, dict) else {k: _normalise(k, v) for k, v in top.items()},
                sites={p: _lz_values(s) for p, s in find_lz_sites(cfg).items()})


def _disagreement(key: str, values: Dict[Path, object]) -> str:
    """``key=A in path1, path2; key=B in path3``: the places grouped by value."""
    groups: Dict[object, List[str]] = {}
    for path, value in values.items():
        groups.setdefault(value, []).append(_fmt(path))
    return '; '.join(f'{key}={v!r} in {", ".join(paths)}' for v, paths in groups.items())


def resolve_lzu_zoom(cfg, before: Optional[dict] = None,
                     used: Sequence[str] = USED_BY_TRAINING) -> Optional[dict]:
    """Make every zoom transform and ``model.lzu`` of ``cfg`` use the experiment's LZ warp, in place.

    The sites (:func:`find_lz_sites`) under the top-level keys in ``used``
    (the dataloaders a tool runs, and ``model``) must agree about each LZ
    parameter (``saliency``, ``grid_shape``, ``separable``,
    ``attraction_fwhm``, ``anti_crop``); the resolved value is then written
    into *every* site, also those a tool does not run (e.g. the ``train_pipeline``
    variable of a config file).

    With a top-level ``lzu_zoom`` dict, its keys are the experiment's warp.
    ``before`` (:func:`lz_snapshot` of the config as parsed, before
    ``--cfg-options``) tells which side an override changed:

    * ``lzu_zoom.<key>`` changed: written into every site; a site changed to
      another value by the same overrides is a conflict.
    * only sites changed (e.g. ``--cfg-options
      test_dataloader.dataset.pipeline.1.saliency=F``): the used sites must
      agree, and their value is copied into ``lzu_zoom`` and every other site.
    * nothing changed: the used sites must equal ``lzu_zoom``.

    Without a top-level ``lzu_zoom`` the used sites must agree with each other.

    Args:
        cfg: mmengine ``Config`` (or dict), after ``merge_from_dict``.
        before: the snapshot taken before the overrides (None: nothing was overridden).
        used: top-level config keys whose sites the caller runs
            (:data:`USED_BY_TRAINING`, :data:`USED_BY_TESTING`).

    Returns:
        The resolved warp parameters (``dict`` of :data:`LZ_KEYS`), or None
        when no used site has an LZ warp (uniform resize only).

    Raises:
        ValueError: used sites that disagree about a parameter (the places are
            named, grouped by value), conflicting overrides, or ``lzu_zoom``
            that is not a dict or has unknown keys.
    """
    root = _root(cfg)
    sites = find_lz_sites(cfg)
    active = {p: s for p, s in sites.items() if p[0] in used}
    top = root.get(TOP_KEY)
    if top is not None and not isinstance(top, dict):
        raise ValueError(f'{TOP_KEY} must be a dict of LZ warp parameters {LZ_KEYS}, got {type(top).__name__}')
    if top is not None:
        unknown = set(top) - set(LZ_KEYS)
        if unknown:
            raise ValueError(f'{TOP_KEY} has unknown keys {sorted(unknown)}; expected a subset of {LZ_KEYS}')
    now = {p: _lz_values(s) for p, s in active.items()}
    old_top = (before or {}).get('top') or {}
    old_sites = (before or {}).get('sites', {})
    for key in LZ_KEYS:
        values = {p: v[key] for p, v in now.items()}
        if top is not None and key in top:
            value = _normalise(key, top[key])
            edited = {p: v for p, v in values.items() if p in old_sites and old_sites[p][key] != v}
            if before is not None and old_top.get(key) != value:  # lzu_zoom.<key> overridden
                clash = {p: v for p, v in edited.items() if v != value}
                if clash:
                    raise ValueError(f'conflicting overrides of the LZ warp: {TOP_KEY}.{key}={value!r} but '
                                     f'{_disagreement(key, clash)}; set {TOP_KEY}.{key} only')
            elif edited:  # only sites overridden
                if len(set(values.values())) > 1:
                    raise ValueError(f'the pipelines / model disagree about the LZ warp after the overrides: '
                                     f'{_disagreement(key, values)}; set {TOP_KEY}.{key} (e.g. --cfg-options '
                                     f'{TOP_KEY}.{key}=...) to change every one of them')
                value = next(iter(edited.values()))
                top[key] = value
            elif any(v != value for v in values.values()):
                raise ValueError(f'the config disagrees with itself about the LZ warp: {TOP_KEY}.{key}={value!r} '
                                 f'but {_disagreement(key, values)}; expand {TOP_KEY} into its zoom transforms')
        elif values:
            if len(set(values.values())) > 1:
                raise ValueError(f'the pipelines / model of this config disagree about the LZ warp: '
                                 f'{_disagreement(key, values)}; give every zoom transform (and model.lzu) the '
                                 f'same {key}, e.g. through a top-level {TOP_KEY} dict')
            value = next(iter(values.values()))
        else:
            continue
        for site in sites.values():
            if key in site or value != LZ_DEFAULTS.get(key):
                site[key] = value
    if not active:
        return None
    return _lz_values(next(iter(active.values())))


def set_saliency(cfg, saliency: str, required: bool = True) -> int:
    """The tools' ``--saliency FILE``: the experiment's saliency file, in place.

    Sets ``lzu_zoom.saliency`` when the config has a top-level ``lzu_zoom``
    (then :func:`resolve_lzu_zoom` spreads it), and the ``saliency`` of every
    zoom transform and ``model.lzu`` directly.

    Returns:
        The number of sites changed (0 for a uniform config when not ``required``).

    Raises:
        ValueError: ``required`` and the config has no LZ warp.
    """
    root = _root(cfg)
    if isinstance(root.get(TOP_KEY), dict):
        root[TOP_KEY]['saliency'] = str(saliency)
    sites = find_lz_sites(cfg)
    if not sites and required:
        raise ValueError('--saliency: this config has no LZ warp (no fixed-saliency zoom transform, no model.lzu); '
                         'it resizes uniformly')
    for site in sites.values():
        site['saliency'] = str(saliency)
    return len(sites)


def merge_cfg_options(cfg, cfg_options: Optional[dict] = None, saliency: Optional[str] = None,
                      saliency_required: bool = True, used: Sequence[str] = USED_BY_TESTING) -> Optional[dict]:
    """``cfg.merge_from_dict(cfg_options)``, ``--saliency``, then :func:`resolve_lzu_zoom`, in place.

    The order makes ``--cfg-options lzu_zoom.saliency=FILE`` (or any other
    ``lzu_zoom.*`` key) and ``--saliency FILE`` reach every zoom transform
    and the model; ``--saliency`` and a different ``lzu_zoom.saliency`` in
    ``cfg_options`` are a conflict (``ValueError``). ``used``: see
    :func:`resolve_lzu_zoom` (tools that only test: :data:`USED_BY_TESTING`).

    Returns:
        The resolved LZ warp parameters, or None for a uniform config.
    """
    before = lz_snapshot(cfg)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if saliency is not None:
        top = _root(cfg).get(TOP_KEY)
        if isinstance(top, dict) and before['top'] is not None and \
                _normalise('saliency', top.get('saliency')) not in (before['top'].get('saliency'), str(saliency)):
            raise ValueError(f'--saliency {saliency} and --cfg-options {TOP_KEY}.saliency={top.get("saliency")} '
                             'disagree; give one of them')
        set_saliency(cfg, saliency, required=saliency_required)
        # the sites were set from the flag: compare against the flag, not against the file's value
        before = dict(before, sites={p: dict(v, saliency=str(saliency)) for p, v in before['sites'].items()})
    return resolve_lzu_zoom(cfg, before, used)


# ----------------------------------------------------------------------------------------------- data overrides
def _innermost_dataset(loader: dict) -> Optional[dict]:
    """The dataset dict of a dataloader, through wrappers (``RepeatDataset``, ``ClassBalancedDataset``, ...)."""
    ds = loader.get('dataset') if isinstance(loader, dict) else None
    while isinstance(ds, dict) and 'dataset' in ds and 'ann_file' not in ds:
        ds = ds['dataset']
    if isinstance(ds, dict) and 'datasets' in ds:
        raise ValueError('--data-root / --ann-file: concatenated datasets (ConcatDataset) are not supported; set '
                         'each dataset with --cfg-options')
    return ds if isinstance(ds, dict) else None


def _evaluators(cfg, name: str) -> List[dict]:
    ev = _root(cfg).get(name)
    if ev is None:
        return []
    items = ev if isinstance(ev, (list, tuple)) else [ev]
    return [e for e in items if isinstance(e, dict)]


#: Evaluators that need the full dataset (database tables beside the info file) -> a subset-capable equivalent.
SUBSET_EVALUATORS = {'NuScenesMetric': 'NuScenesSubsetMetric'}


def override_data(cfg, data_root: str, ann_file: Optional[str] = None, check: bool = True) -> List[str]:
    """Train, validate and test on one data folder: the tools' ``--data-root DIR [--ann-file FILE]``, in place.

    Every dataloader's dataset (``train_dataloader``, ``val_dataloader``,
    ``test_dataloader``; through dataset wrappers) becomes the *test*
    dataset's layout under ``data_root``: ``data_root=DIR``, the test
    dataset's ``data_prefix`` and ``ann_file`` -- or ``ann_file=FILE``
    (relative to ``DIR``, as OpenMMLab datasets read it). This is the
    short-run recipe: one small folder in the test split's layout serves
    every stage. Evaluators follow: ``data_root`` keys become ``DIR``,
    ``ann_file`` keys ``DIR/FILE``; ``NuScenesMetric``, which needs the
    nuScenes database tables, becomes ``NuScenesSubsetMetric`` (scores any
    subset of an info file, :mod:`lzu_mm.mmdet3d.metrics`).

    Args:
        cfg: mmengine ``Config`` (or dict).
        data_root: the data folder.
        ann_file: annotation / info / split file relative to ``data_root``
            (or absolute); None keeps the test dataset's.
        check: raise if ``data_root`` or the annotation file does not exist.

    Returns:
        Human-readable lines describing every change (the tools print them).

    Raises:
        FileNotFoundError: ``check`` and a missing folder / file.
        ValueError: the config has no dataloader with a dataset.
    """
    root = _root(cfg)
    if check and not osp.isdir(data_root):
        raise FileNotFoundError(f'--data-root {data_root!r} is not a directory')
    datasets = {name: _innermost_dataset(root[name]) for name in LOADERS if isinstance(root.get(name), dict)}
    datasets = {k: v for k, v in datasets.items() if v is not None}
    if not datasets:
        raise ValueError('--data-root: the config has no train/val/test dataloader with a dataset')
    reference = datasets.get('test_dataloader') or datasets.get('val_dataloader') or next(iter(datasets.values()))
    ann = ann_file if ann_file is not None else reference.get('ann_file', '')
    prefix = copy.deepcopy(reference.get('data_prefix'))
    if check and ann and not osp.isfile(osp.join(data_root, ann)):
        raise FileNotFoundError(f'--ann-file: {osp.join(data_root, ann)!r} does not exist (ann_file is relative to '
                                '--data-root, as for OpenMMLab datasets)')
    changes = []
    for name, ds in datasets.items():
        ds['data_root'] = data_root
        ds['ann_file'] = ann
        if prefix is not None:
            ds['data_prefix'] = copy.deepcopy(prefix)
        changes.append(f'{name}.dataset: data_root={data_root!r} ann_file={ann!r}'
                       + (' data_prefix=<the test dataset\'s>' if prefix is not None else ''))
    full_ann = ann if osp.isabs(ann) else osp.join(data_root, ann)
    for name in EVALUATORS:
        for ev in _evaluators(cfg, name):
            kind = str(ev.get('type', ''))
            if kind in SUBSET_EVALUATORS:
                ev['type'] = SUBSET_EVALUATORS[kind]
                changes.append(f'{name}: {kind} -> {ev["type"]} ({kind} needs the full dataset\'s database tables)')
            if 'data_root' in ev:
                ev['data_root'] = data_root
                changes.append(f'{name} ({ev["type"]}): data_root={data_root!r}')
            if 'ann_file' in ev and ann:
                ev['ann_file'] = full_ann
                changes.append(f'{name} ({ev["type"]}): ann_file={full_ann!r}')
    return changes


# ------------------------------------------------------------------------------------------------ short runs
def _is_pretrained(init_cfg) -> bool:
    items = init_cfg if isinstance(init_cfg, (list, tuple)) else [init_cfg]
    return any(isinstance(i, dict) and i.get('type') == 'Pretrained' for i in items)


def without_pretrained(node):
    """A copy of a (model) config with every ``pretrained`` key and ``Pretrained`` init set to None (offline)."""
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == 'pretrained':
                out[key] = None
            elif key == 'init_cfg' and _is_pretrained(value):
                out[key] = None
            else:
                out[key] = without_pretrained(value)
        return out
    if isinstance(node, (list, tuple)):
        return type(node)(without_pretrained(v) for v in node)
    return node


def pretrained_options(cfg) -> List[str]:
    """``--cfg-options`` strings that drop the config's pretrained weights (``load_from`` and model inits)."""
    opts = ['load_from=None'] if _root(cfg).get('load_from') else []

    def visit(node, path):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == 'pretrained' and value is not None:
                    opts.append(f'{_fmt(path + (key, ))}=None')
                elif key == 'init_cfg' and _is_pretrained(value):
                    opts.append(f'{_fmt(path + (key, ))}=None')
                else:
                    visit(value, path + (key, ))

    visit(_root(cfg).get('model', {}), ('model', ))
    return opts


def short_run(cfg, max_iters: int) -> List[str]:
    """Make the config a ``max_iters``-iteration training run with validation and a checkpoint at the end, in place.

    * Iteration-based loops (``IterBasedTrainLoop``, mmseg's schedules):
      ``max_iters``, ``val_interval`` and the checkpoint interval become
      ``max_iters``.
    * Epoch-based loops (mmdet, mmdet3d): one epoch over the first
      ``max_iters x batch_size`` training samples (the dataset's
      ``indices``), validated and checkpointed after it. (Setting
      ``train_cfg.max_iters`` on an epoch-based loop is a ``TypeError`` in
      mmengine.)

    Also logs every iteration. Returns the changes as readable lines.

    Raises:
        ValueError: ``max_iters < 1`` or a config without ``train_cfg``.
    """
    if int(max_iters) < 1:
        raise ValueError(f'--max-iters must be >= 1, got {max_iters}')
    max_iters = int(max_iters)
    root = _root(cfg)
    train_cfg = root.get('train_cfg')
    if not isinstance(train_cfg, dict):
        raise ValueError('--max-iters: the config has no train_cfg')
    loop = str(train_cfg.get('type', ''))
    by_epoch = 'max_epochs' in train_cfg or 'Epoch' in loop or train_cfg.get('by_epoch', False)
    hooks = root.setdefault('default_hooks', {})
    changes = []
    if by_epoch:
        train_cfg['max_epochs'] = 1
        train_cfg['val_interval'] = 1
        train_cfg['val_begin'] = 1
        loader = root['train_dataloader']
        batch = int(loader.get('batch_size', 1))
        ds = _innermost_dataset(loader)
        if ds is None:
            raise ValueError('--max-iters: the train dataloader has no dataset')
        ds['indices'] = max_iters * batch
        changes.append(f'train_cfg: 1 epoch over the first {max_iters * batch} samples ({max_iters} iterations of '
                       f'batch {batch}); validation after it')
        if isinstance(hooks.get('checkpoint'), dict):
            hooks['checkpoint']['interval'] = 1
    else:
        train_cfg['max_iters'] = max_iters
        train_cfg['val_interval'] = max_iters
        changes.append(f'train_cfg: {max_iters} iterations, validation after the last one')
        if isinstance(hooks.get('checkpoint'), dict):
            hooks['checkpoint']['interval'] = max_iters
    if isinstance(hooks.get('logger'), dict):
        hooks['logger']['interval'] = 1
    # schedulers that end after the short run are left as they are: mmengine clips them to the run
    return changes


def resolve_relative_outputs(cfg, work_dir: str, keys: Sequence[str] = ('output_dir', )) -> List[str]:
    """Evaluator output folders given relative (e.g. ``output_dir='format_results'``) go under ``work_dir``.

    Each run then keeps its formatted predictions (and e.g. the centred
    ground-truth crops of :class:`lzu_mm.mmseg.CenterCropCityscapesMetric`)
    in its own work dir instead of a folder shared by all runs.
    """
    changes = []
    for name in EVALUATORS:
        for ev in _evaluators(cfg, name):
            for key in keys:
                value = ev.get(key)
                if isinstance(value, str) and value and not osp.isabs(value):
                    ev[key] = osp.join(work_dir, value)
                    changes.append(f'{name} ({ev.get("type")}): {key}={ev[key]!r}')
    return changes


# ---------------------------------------------------------------------------------------------- tool arguments
def add_lzu_arguments(parser, data: bool = True) -> None:
    """Add ``--saliency`` (and ``--data-root`` / ``--ann-file``) to a tool's ``argparse`` parser."""
    parser.add_argument('--saliency', help='saliency file of the LZ warp, for every zoom transform and model.lzu '
                        '(the same as --cfg-options lzu_zoom.saliency=FILE)')
    if data:
        parser.add_argument('--data-root', help="train, validate and test on this data folder (every dataloader "
                            "and evaluator, in the test dataset's layout)")
        parser.add_argument('--ann-file', help="annotation / info / split file relative to --data-root (default: "
                            "the test dataset's)")


def prepare_tool_cfg(cfg, args, config_path: str, used: Sequence[str] = USED_BY_TESTING):
    """What tools/train.py and tools/test.py do to a parsed config, in place; returns it.

    ``used``: the dataloaders the tool runs (:data:`USED_BY_TRAINING` for
    training, :data:`USED_BY_TESTING` for testing), see :func:`resolve_lzu_zoom`.

    ``--cfg-options`` and ``--saliency`` (:func:`merge_cfg_options`),
    ``--data-root`` / ``--ann-file`` (:func:`override_data`, printing each
    change), the work dir (``--work-dir``, else ``work_dirs/<config name>``)
    and evaluator outputs given relative to it (:func:`resolve_relative_outputs`).

    Raises:
        ValueError: ``--ann-file`` without ``--data-root``, and the errors of
            the functions above.
    """
    merge_cfg_options(cfg, getattr(args, 'cfg_options', None), getattr(args, 'saliency', None), used=used)
    data_root, ann_file = getattr(args, 'data_root', None), getattr(args, 'ann_file', None)
    if ann_file and not data_root:
        raise ValueError('--ann-file needs --data-root (the file is relative to the data folder)')
    if data_root:
        for line in override_data(cfg, data_root, ann_file):
            print(f'--data-root: {line}')
    if getattr(args, 'work_dir', None) is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])
    resolve_relative_outputs(cfg, cfg.work_dir)
    return cfg
