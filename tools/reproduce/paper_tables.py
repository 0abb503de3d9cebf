"""The paper's tables as runs: which config trains and tests each row, and where each column's number comes from.

LZU (Thavamani et al., CVPR 2023), Tables 1-5. A :class:`Row` is one line of
a table: the config that is trained (``config``, shared by every table that
uses it: one training run per config), the tests run on its checkpoint
(:class:`Test`: the config tested, ``--cfg-options``) and the column of each
test's result. Columns read mmengine's JSON output of ``tools/test.py``
(``<run>/<test>/<timestamp>/<timestamp>.json``) under a metric key, scaled to
the paper's units; the latency column reads ``benchmark_lzu.py``'s
``lzu_benchmark.json``. A row without a config (prior work the paper quotes)
is kept and reported missing. The paper's own numbers are in
``paper_numbers.csv`` next to this file (table, row, column, value, source).

Layout of a work root (``tools/reproduce/reproduce.py --work-root``)::

    <work root>/<config name>/train/                training work dir (checkpoints, logs)
    <work root>/<config name>/<test name>/          a tools/test.py work dir (<timestamp>/<timestamp>.json)
    <work root>/<config name>/benchmark/            lzu_benchmark.json
"""
import os.path as osp
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PAPER_NUMBERS = osp.join(osp.dirname(osp.abspath(__file__)), 'paper_numbers.csv')

SCALES = ('0.25x', '0.5x', '0.75x', '1x')
#: (w, h) of each scale of Argoverse-HD's 1920x1200 and nuScenes' 1600x900 frames
ARGOVERSE_SIZES = {'0.25x': (480, 300), '0.5x': (960, 600), '0.75x': (1440, 900), '1x': (1920, 1200)}
NUSCENES_SIZES = {'0.25x': (400, 225), '0.5x': (800, 450), '0.75x': (1200, 675), '1x': (1600, 900)}


@dataclass
class Column:
    """A column of a paper table.

    Attributes:
        name: the column in ``paper_numbers.csv`` (e.g. ``'AP'``).
        key: metric key in ``tools/test.py``'s JSON (None: latency, see ``latency``).
        scale: multiplies our value into the paper's units (COCO AP 0-1 -> %).
        test: which of the row's tests gives it (default ``'test'``).
        latency: the column is the latency from ``lzu_benchmark.json`` (ms).
        lower_is_better: for the reader (errors, latency).
    """
    name: str
    key: Optional[str] = None
    scale: float = 1.0
    test: str = 'test'
    latency: bool = False
    lower_is_better: bool = False


@dataclass
class Test:
    """One ``tools/test.py`` run on a row's checkpoint: ``<run dir>/<name>/``."""
    name: str = 'test'
    config: Optional[str] = None  # default: the row's config
    options: Tuple[str, ...] = ()  # --cfg-options


@dataclass
class Row:
    """A line of a table.

    Attributes:
        id: the row in ``paper_numbers.csv`` (e.g. ``'0.5x/lzu-fixed'``).
        label: what the table's first columns show (e.g. ``('0.5x', 'LZU, fixed')``).
        config: the trained config (repository-relative), None when there is none.
        tests: the tests of its checkpoint (default: one ``Test()``).
        latency_base: row id of the uniform model whose forward time the
            added zoom + unzoom is added to (the paper's protocol, §5.1).
        derive: for rows computed from other tables (Table 4): ``f(lookup)
            -> {column: value}`` with ``lookup(table, row, column)``.
        note: why the row has no config / is not ours.
        adaptive: the latency is that of ``latency_base`` (LZU fixed at the
            same scale) plus the per-frame cost adaptive saliency adds
            (``benchmark_adaptive.py``: KDE, LZ grid, zoom and unzoom grids).
    """
    id: str
    label: Tuple[str, ...]
    config: Optional[str] = None
    tests: List[Test] = field(default_factory=lambda: [Test()])
    latency_base: Optional[str] = None
    derive: Optional[Callable] = None
    note: str = ''
    adaptive: bool = False

    @property
    def run(self) -> Optional[str]:
        """Run directory name: the trained config's name."""
        return None if self.config is None else osp.splitext(osp.basename(self.config))[0]

    def test(self, name: str) -> Test:
        return next(t for t in self.tests if t.name == name)


@dataclass
class Table:
    """A paper table: its columns, rows and how its checkpoints are chosen."""
    id: int
    title: str
    label_columns: Tuple[str, ...]
    columns: List[Column]
    rows: List[Row]
    family: str = ''  # 'argoverse', 'cityscapes', 'nuscenes' (smoke data), '' for derived tables
    checkpoint: str = 'last'  # 'last' (last_checkpoint) or a glob in the train dir (e.g. best_mIoU_iter_*.pth)
    notes: Tuple[str, ...] = ()

    def row(self, row_id: str) -> Row:
        return next(r for r in self.rows if r.id == row_id)


# ------------------------------------------------------------------------------------------------------- Table 1
def retinanet(scale: str, lzu: bool) -> str:
    return f"configs/lzu_retinanet/retinanet_r50_fpn{'_lzu-fixed' if lzu else ''}_3e_argoverse-hd-{scale}.py"


COCO = [Column('AP', 'coco/bbox_mAP', 100), Column('AP50', 'coco/bbox_mAP_50', 100),
        Column('AP75', 'coco/bbox_mAP_75', 100), Column('APS', 'coco/bbox_mAP_s', 100),
        Column('APM', 'coco/bbox_mAP_m', 100), Column('APL', 'coco/bbox_mAP_l', 100)]


def retinanet_adaptive(scale: str, variant: str = '') -> str:
    return f'configs/lzu_retinanet/retinanet_r50_fpn_lzu-adaptive{variant}_3e_argoverse-hd-{scale}.py'


TABLE1_ROWS = []
for _s in SCALES:
    TABLE1_ROWS.append(Row(f'{_s}/uniform', (_s, 'Uniform'), retinanet(_s, False)))
    if _s == '0.5x':  # FOVEA with its fixed "KDE SD" saliency, as the paper's Table 1 baseline (0.5x only)
        # latency: FOVEA's own end to end (zoom + detector on the zoomed image + box unwarping); no feature unzoom
        TABLE1_ROWS.append(Row('0.5x/fovea', (_s, 'FOVEA'), 'configs/lzu_retinanet/retinanet_r50_fpn_fovea-fixed_3e_'
                               'argoverse-hd-0.5x.py'))
    TABLE1_ROWS.append(Row(f'{_s}/lzu-fixed', (_s, 'LZU, fixed'), retinanet(_s, True), latency_base=f'{_s}/uniform'))
    # adaptive: online test (frames in order, the previous frame's detections); latency: LZU fixed + the per-frame
    # saliency, grid, zoom grid and inversion
    TABLE1_ROWS.append(Row(f'{_s}/lzu-adaptive', (_s, 'LZU, adaptive'), retinanet_adaptive(_s),
                           latency_base=f'{_s}/lzu-fixed', adaptive=True))
    if _s == '0.5x':
        TABLE1_ROWS.append(Row('0.5x/lzu-adaptive-no-cascade', (_s, 'LZU, adaptive w/o cascade sal.'),
                               retinanet_adaptive(_s, '-no-cascade'), latency_base=f'{_s}/lzu-fixed', adaptive=True))
TABLE1 = Table(
    1, 'Table 1. 2D object detection, RetinaNet R50-FPN on Argoverse-HD', ('Scale', 'Method'),
    COCO + [Column('Lat', latency=True, lower_is_better=True)], TABLE1_ROWS, family='argoverse',
    notes=('AP in %, COCO-style (mmdet CocoMetric on Argoverse-HD val).',
           'Lat: ms per image at batch 1; LZU rows = the uniform model\'s forward time + the added zoom and unzoom '
           '(the paper\'s protocol, §5.1); adaptive rows add the per-frame saliency, grid and inversion '
           '(benchmark_adaptive.py); FOVEA: its own end-to-end time. The paper timed on one RTX 2080 Ti.'))

# ------------------------------------------------------------------------------------------------------- Table 2
FROM_CONFIGS = {  # (task, lzu, to-scale) -> the config that tests the to-scale model on input resized first
    ('det', False, '0.5x'): 'configs/lzu_retinanet/retinanet_r50_fpn_3e_argoverse-hd-0.5x_from-0.25x.py',
    ('det', False, '1x'): 'configs/lzu_retinanet/retinanet_r50_fpn_3e_argoverse-hd-1x_from-0.25x.py',
    ('det', True, '0.5x'): 'configs/lzu_retinanet/retinanet_r50_fpn_lzu-fixed_3e_argoverse-hd-0.5x_from-0.25x.py',
    ('det', True, '1x'): 'configs/lzu_retinanet/retinanet_r50_fpn_lzu-fixed_3e_argoverse-hd-1x_from-0.25x.py',
    ('mono3d', False, '0.5x'):
    'configs/lzu_fcos3d/fcos3d_r50-caffe-dcn_fpn_head-gn_8xb2-1x_nus-mono3d-0.5x_from-0.25x.py',
    ('mono3d', False, '1x'):
    'configs/lzu_fcos3d/fcos3d_r50-caffe-dcn_fpn_head-gn_8xb2-1x_nus-mono3d-1x_from-0.25x.py',
    ('mono3d', True, '0.5x'):
    'configs/lzu_fcos3d/fcos3d_r50-caffe-dcn_fpn_head-gn_lzu-fixed_8xb2-1x_nus-mono3d-0.5x_from-0.25x.py',
    ('mono3d', True, '1x'):
    'configs/lzu_fcos3d/fcos3d_r50-caffe-dcn_fpn_head-gn_lzu-fixed_8xb2-1x_nus-mono3d-1x_from-0.25x.py',
}


def fcos3d(scale: str, lzu: bool) -> str:
    variant = '_lzu-fixed' if lzu else ''
    return f'configs/lzu_fcos3d/fcos3d_r50-caffe-dcn_fpn_head-gn{variant}_8xb2-1x_nus-mono3d-{scale}.py'


def _table2(task: str) -> Table:
    det = task == 'det'
    sizes = ARGOVERSE_SIZES if det else NUSCENES_SIZES
    key, scale = ('coco/bbox_mAP', 100) if det else ('NuScenes metric/pred_instances_3d_NuScenes/NDS', 100)
    columns = [Column(f'from-{s}', key, scale, test=f'test_from-{s}') for s in SCALES]
    rows = []
    for lzu in (False, True):
        method = 'lzu-fixed' if lzu else 'uniform'
        for to in SCALES:
            label = ('LZU' if lzu else 'Uniform', to)
            from_config = FROM_CONFIGS.get((task, lzu, to))
            if from_config is None:
                rows.append(Row(f'{task}/{method}/to-{to}', label,
                                note=f'no "_from-0.25x" config for a {to} model (configs exist for 0.5x and 1x)'))
                continue
            # the from-0.25x configs' first test step (pipeline.1) is the Resize to the "from" scale
            tests = [Test(f'test_from-{s}', from_config, ('test_dataloader.dataset.pipeline.1.scale=({},{})'.format(
                *sizes[s]), )) for s in SCALES]
            config = retinanet(to, lzu) if det else fcos3d(to, lzu)
            rows.append(Row(f'{task}/{method}/to-{to}', label, config, tests))
    return rows, columns


_DET_ROWS, _DET_COLUMNS = _table2('det')
_M3D_ROWS, _M3D_COLUMNS = _table2('mono3d')
TABLE2_DET = Table(
    2, 'Table 2 (2D detection). AP of the Table 1 models tested on input first resampled "from" one scale, then '
    'resized / zoomed "to" the model\'s scale', ('Resampling', 'To'), _DET_COLUMNS, _DET_ROWS, family='argoverse',
    notes=('Columns: the scale the input is first resized to (from-1x = the original frame, i.e. Table 1).', ))
TABLE2_MONO3D = Table(
    2, 'Table 2 (monocular 3D detection). NDS of the Table 5 models tested on input first resampled "from" one '
    'scale', ('Resampling', 'To'), _M3D_COLUMNS, _M3D_ROWS, family='nuscenes',
    notes=('Columns: the scale the input is first resized to (from-1x = the original frame, i.e. Table 5).', ))

# ------------------------------------------------------------------------------------------------------- Table 3
#: paper column -> mmseg's Cityscapes class name
CITYSCAPES_COLUMNS = (('road', 'road'), ('swalk', 'sidewalk'), ('build', 'building'), ('wall', 'wall'),
                      ('fence', 'fence'), ('pole', 'pole'), ('tlight', 'traffic light'), ('sign', 'traffic sign'),
                      ('veg', 'vegetation'), ('terr', 'terrain'), ('sky', 'sky'), ('person', 'person'),
                      ('rider', 'rider'), ('car', 'car'), ('truck', 'truck'), ('bus', 'bus'), ('train', 'train'),
                      ('mbike', 'motorcycle'), ('bike', 'bicycle'))
CROPS = ('64x64', '128x128', '256x256', '512x512')


def pspnet(size: str, lzu: bool) -> str:
    return f"configs/lzu_pspnet/pspnet_r50-fpn{'_lzu-fixed' if lzu else ''}_4xb2-80k_cityscapes-{size}.py"


TABLE3 = Table(
    3, 'Table 3. Semantic segmentation, PSPNet R50-FPN on the centred Cityscapes crop', ('Crop size', 'Method'),
    [Column('mIoU', 'mIoU')] + [Column(paper, f'IoU.{name}') for paper, name in CITYSCAPES_COLUMNS] +
    [Column('Lat', latency=True, lower_is_better=True)],
    [Row(f'{c}/{m}', (c, label), pspnet(c, m == 'lzu-fixed'), latency_base=f'{c}/uniform' if m != 'uniform' else None)
     for c in CROPS for m, label in (('uniform', 'Uniform'), ('lzu-fixed', 'LZU, fixed'))],
    family='cityscapes', checkpoint='best_mIoU_iter_*.pth',
    notes=('IoU in %, on Cityscapes val at the crop\'s full resolution (ClasswiseIoUMetric), with the best '
           'mini-val checkpoint (§5.2).',
           'Lat: ms per image at batch 1 (LZU rows: uniform forward + added zoom and unzoom).'))


# ------------------------------------------------------------------------------------------------------- Table 4
def _relative(crop: str):
    def derive(lookup) -> Dict[str, Optional[float]]:
        uni, lzu = lookup(3, f'{crop}/uniform', 'mIoU'), lookup(3, f'{crop}/lzu-fixed', 'mIoU')
        rel = None if uni in (None, 0) or lzu is None else 100 * (lzu - uni) / uni
        return {crop: lzu, f'{crop} rel%': rel}
    return derive


def _table4_lzu(lookup):
    out = {}
    for crop in CROPS[:3]:
        out.update(_relative(crop)(lookup))
    return out


def _table4_uniform(lookup):
    return {crop: lookup(3, f'{crop}/uniform', 'mIoU') for crop in CROPS[:3]}


PRIOR = 'prior work, quoted by the paper (not reproduced here)'
TABLE4 = Table(
    4, 'Table 4. mIoU and change relative to the uniform baseline (from Table 3)', ('Method', ),
    [Column(c) for crop in CROPS[:3] for c in (crop, f'{crop} rel%')],
    [Row('uniform-theirs', ('Uniform (theirs)', ), note=PRIOR),
     Row('uniform-ours', ('Uniform (ours)', ), derive=_table4_uniform),
     Row('es', ('ES', ), note=PRIOR), Row('lds', ('LDS', ), note=PRIOR),
     Row('lzu-fixed', ('LZU, fixed', ), derive=_table4_lzu)],
    notes=('Computed from Table 3 (run Table 3 first); rel% = (LZU - uniform) / uniform.', ))

# ------------------------------------------------------------------------------------------------------- Table 5
NUS = 'NuScenes metric/pred_instances_3d_NuScenes/'
TABLE5 = Table(
    5, 'Table 5. Monocular 3D detection, FCOS3D R50-DCN on nuScenes', ('Scale', 'Method'),
    [Column('NDS', NUS + 'NDS', 100), Column('mAP', NUS + 'mAP', 100)] +
    [Column(m, NUS + m, 100, lower_is_better=True) for m in ('mATE', 'mASE', 'mAOE', 'mAVE', 'mAAE')] +
    [Column('Lat', latency=True, lower_is_better=True)],
    [Row(f'{s}/{m}', (s, label), fcos3d(s, m == 'lzu-fixed'), latency_base=f'{s}/uniform' if m != 'uniform' else None)
     for s in SCALES for m, label in (('uniform', 'Uniform'), ('lzu-fixed', 'LZU, fixed'))],
    family='nuscenes',
    notes=('All metrics x100 as in the paper (mATE etc. are errors: lower is better).',
           'Lat: ms per image at batch 1 (LZU rows: uniform forward + added zoom and unzoom).'))

#: table id -> the tables printed for it (Table 2 has a 2D and a 3D part)
TABLES: Dict[str, List[Table]] = {
    '1': [TABLE1],
    '2': [TABLE2_DET, TABLE2_MONO3D],
    '3': [TABLE3],
    '4': [TABLE4],
    '5': [TABLE5],
}


def table_slug(table: Table) -> str:
    """File name stem of a table's outputs: ``table1``, ``table2_det``, ``table2_mono3d``, ..."""
    if table is TABLE2_DET:
        return 'table2_det'
    if table is TABLE2_MONO3D:
        return 'table2_mono3d'
    return f'table{table.id}'


def all_tables() -> List[Table]:
    return [t for tables in TABLES.values() for t in tables]
