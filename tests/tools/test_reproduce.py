"""tools/reproduce: the paper's numbers, collation from hand-made work dirs, resumable runs, Slurm scripts.

The work dirs here are built by hand in the layout the tools write
(``<config>/test/<timestamp>/<timestamp>.json`` as mmengine's ``tools/test.py``
dumps it, ``<config>/benchmark/lzu_benchmark.json``), so collation is checked
without training anything; the smoke runs of whole tables are in the report /
README, too slow for the suite.
"""
import csv
import importlib.util
import json
import os
import os.path as osp
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT, shared_path

REPRODUCE = osp.join(REPO_ROOT, 'tools', 'reproduce')
NUS = 'NuScenes metric/pred_instances_3d_NuScenes/'


def _module(name: str):
    if REPRODUCE not in sys.path:
        sys.path.insert(0, REPRODUCE)
    spec = importlib.util.spec_from_file_location(name, osp.join(REPRODUCE, f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tables = _module('paper_tables')
collate = _module('collate')
reproduce = _module('reproduce')


# ----------------------------------------------------------------------------------------- the paper's numbers
def _paper_lines():
    with open(shared_path('..', 'papers', 'lzu.txt')) as f:
        return f.read().split('\n')


def _floats(text: str):
    return [float(x) for x in re.findall(r'\d+\.\d+|\d+', re.sub(r'</?b>', '', text))]


def test_paper_numbers_match_the_paper_text():
    """Every value of paper_numbers.csv for Tables 1, 2 and 5 re-read from the paper's text."""
    lines = _paper_lines()
    paper = collate.load_paper_numbers()
    # Table 1: "<scale>\t<method>\tAP ... Lat" lines
    t1 = {}
    for line in lines:
        f = line.split('\t')
        if len(f) == 9 and f[0] in tables.SCALES:
            method = {'Uniform': 'uniform', 'LZU, fixed': 'lzu-fixed', 'LZU, adaptive': 'lzu-adaptive',
                      'FOVEA [22]': 'fovea'}[f[1]]
            row = f'{f[0]}/{method}'
            if row in t1:  # the second "0.5x LZU, adaptive" line is the "w/o cascade sal." row
                row = '0.5x/lzu-adaptive-no-cascade'
            t1[row] = [float(x) for x in f[2:]]
    assert len(t1) == 14
    for row, values in t1.items():
        for col, v in zip(['AP', 'AP50', 'AP75', 'APS', 'APM', 'APL', 'Lat'], values):
            assert paper[(1, row, col)]['value'] == v, (row, col)
    # Table 2: the "To" grids, uniform (left) and LZU (right), 2D first then 3D
    grids = [_floats(line) for line in lines if re.match(r'^(0\.25x|0\.5x|0\.75x|1x)\t[\d.]+\t', line)]
    assert len(grids) == 8
    for k, (task, lines4) in enumerate((('det', grids[:4]), ('mono3d', grids[4:]))):
        for to, values in zip(tables.SCALES, lines4):
            uniform, lzu = values[1:5], values[6:10]  # "<to> a b c d <to> e f g h"
            for fr, u, z in zip(tables.SCALES, uniform, lzu):
                assert paper[(2, f'{task}/uniform/to-{to}', f'from-{fr}')]['value'] == u
                assert paper[(2, f'{task}/lzu-fixed/to-{to}', f'from-{fr}')]['value'] == z
    # Table 5: four "Uniform LZU, fixed" lines of pairs, in the row order 0.25x .. 1x
    start = next(i for i, line in enumerate(lines) if line.startswith('Scale\tMethod\tNDS'))
    for scale, line in zip(tables.SCALES, lines[start + 1:start + 5]):
        cells = line.split('\t')[2:]
        for col, cell in zip(['NDS', 'mAP', 'mATE', 'mASE', 'mAOE', 'mAVE', 'mAAE', 'Lat'], cells):
            if not cell:  # missing in the extraction: taken from Table 2 (From 1x)
                assert paper[(5, f'{scale}/uniform', col)]['source'].startswith('Table 2')
                continue
            u, z = _floats(cell)
            assert paper[(5, f'{scale}/uniform', col)]['value'] == u
            assert paper[(5, f'{scale}/lzu-fixed', col)]['value'] == z
    # Table 5 NDS = Table 2's 3D "From 1x" column (the same models)
    for scale in tables.SCALES:
        for method in ('uniform', 'lzu-fixed'):
            assert paper[(5, f'{scale}/{method}', 'NDS')]['value'] == \
                paper[(2, f'mono3d/{method}/to-{scale}', 'from-1x')]['value']


def test_every_paper_number_has_a_cell_and_every_config_exists():
    cells = {(t.id, r.id, c.name) for t in tables.all_tables() for r in t.rows for c in t.columns}
    assert set(collate.load_paper_numbers()) <= cells
    for t in tables.all_tables():
        for r in t.rows:
            for config in [r.config] + [x.config for x in r.tests]:
                assert config is None or osp.isfile(osp.join(REPO_ROOT, config)), config


# ---------------------------------------------------------------------------------- hand-made work dirs
def write_test_json(run_dir: str, test: str, stamp: str, metrics: dict) -> str:
    """What tools/test.py leaves: <run>/<test>/<timestamp>/<timestamp>.json (plus a vis_data scalars file)."""
    path = osp.join(run_dir, test, stamp, f'{stamp}.json')
    os.makedirs(osp.join(osp.dirname(path), 'vis_data'), exist_ok=True)
    with open(path, 'w') as f:
        json.dump(metrics, f)
    with open(osp.join(osp.dirname(path), 'vis_data', f'{stamp}.json'), 'w') as f:
        f.write(json.dumps(dict(metrics, step=1)) + '\n')
    return path


def write_benchmark(run_dir: str, forward: float, added: float = 0.0, device: str = 'cpu') -> None:
    os.makedirs(osp.join(run_dir, 'benchmark'), exist_ok=True)
    entry = dict(device=device, forward_ms=dict(median=forward), added_ms=added, latency_ms=forward + added / 2)
    with open(osp.join(run_dir, 'benchmark', 'lzu_benchmark.json'), 'w') as f:
        json.dump(dict(results=[entry]), f)


def nus_metrics(nds: float, **extra) -> dict:
    out = {NUS + k: 0.5 for k in ('mAP', 'mATE', 'mASE', 'mAOE', 'mAVE', 'mAAE')}
    out.update({NUS + 'NDS': nds}, **{NUS + k: v for k, v in extra.items()})
    return out


@pytest.fixture
def table5_work_root(tmp_path):
    """Table 5 with: 0.25x both rows tested and timed, 0.5x uniform trained but not tested, the rest untouched."""
    root = str(tmp_path / 'work')
    t5 = tables.TABLE5
    uni, lzu = (osp.join(root, t5.row(f'0.25x/{m}').run) for m in ('uniform', 'lzu-fixed'))
    write_test_json(uni, 'test', '20260101_000000', nus_metrics(0.100))  # an older result ...
    write_test_json(uni, 'test', '20260102_000000', nus_metrics(0.218, mAP=0.114))  # ... and the newest
    write_test_json(lzu, 'test', '20260101_000000', nus_metrics(0.25, mAP=0.13))
    write_test_json(lzu, 'test', '20260103_000000', {'other/key': 1.0})  # newer, but not this table's metrics
    write_benchmark(uni, forward=50.0)
    write_benchmark(lzu, forward=60.0, added=0.4)
    half = osp.join(root, t5.row('0.5x/uniform').run, 'train')
    os.makedirs(half)
    with open(osp.join(half, collate.DONE), 'w') as f:
        json.dump(dict(checkpoint=osp.join(half, 'epoch_12.pth'), smoke=False), f)
    with open(osp.join(half, 'last_checkpoint'), 'w') as f:
        f.write(osp.join(half, 'epoch_12.pth'))
    return root


def test_collation_reads_mmengine_json_and_reports_missing_rows(table5_work_root, tmp_path):
    out = str(tmp_path / 'tables')
    [result] = collate.collate_tables(['5'], table5_work_root, out, log=lambda *a: None)
    rows = {r['row'].id: r for r in result['rows']}
    assert [r['row'].id for r in result['rows']] == [r.id for r in tables.TABLE5.rows]  # the paper's order
    cell = rows['0.25x/uniform']['cells']['NDS']
    assert cell['ours'] == pytest.approx(21.8) and cell['paper'] == 21.8 and cell['diff'] == pytest.approx(0)
    assert cell['ours_from'].endswith(osp.join('20260102_000000', '20260102_000000.json'))  # the newest result
    assert rows['0.25x/lzu-fixed']['cells']['mAP']['ours'] == pytest.approx(13.0)
    assert rows['0.25x/lzu-fixed']['cells']['mAP']['diff'] == pytest.approx(13.0 - 13.1)
    # latency: uniform = its forward; LZU = the uniform forward + its added zoom/unzoom (paper protocol)
    assert rows['0.25x/uniform']['cells']['Lat']['ours'] == pytest.approx(50.0)
    assert rows['0.25x/lzu-fixed']['cells']['Lat']['ours'] == pytest.approx(50.4)
    assert rows['0.25x/lzu-fixed']['cells']['Lat']['diff'] is None  # CPU vs the paper's GPU
    statuses = {r['row'].id: r['status'] for r in result['missing']}
    assert statuses == {'0.5x/uniform': 'not tested', '0.5x/lzu-fixed': 'not trained',
                        '0.75x/uniform': 'not trained', '0.75x/lzu-fixed': 'not trained',
                        '1x/uniform': 'not trained', '1x/lzu-fixed': 'not trained'}
    assert not result['smoke']
    md = open(osp.join(out, 'table5.md')).read()
    assert '| 0.25x | Uniform | 21.8 / 21.8 (+0.0) | 11.4 / 11.4 (+0.0) |' in md
    assert 'Missing rows (6 of 8)' in md and '* 0.5x Uniform (`0.5x/uniform`): not tested' in md
    with open(osp.join(out, 'table5.csv')) as f:
        records = list(csv.DictReader(f))
    assert len(records) == 8 * 8
    nds = next(r for r in records if r['row'] == '0.25x/lzu-fixed' and r['column'] == 'NDS')
    assert float(nds['ours']) == pytest.approx(25.0) and float(nds['paper']) == 23.4
    assert float(nds['difference']) == pytest.approx(1.6) and nds['status'] == 'ok'
    assert next(r for r in records if r['row'] == '1x/uniform')['status'] == 'not trained'


def test_rows_without_config_are_reported_and_table4_is_derived(tmp_path):
    root = str(tmp_path / 'work')
    for crop, (u, z) in (('64x64', (26.0, 27.3)), ('128x128', (40.0, 42.0))):
        for method, miou in (('uniform', u), ('lzu-fixed', z)):
            run = osp.join(root, tables.TABLE3.row(f'{crop}/{method}').run)
            classes = {f'IoU.{name}': 50.0 for _, name in tables.CITYSCAPES_COLUMNS}
            write_test_json(run, 'test', '20260101_000000', dict(mIoU=miou, aAcc=90.0, **classes))
    results = collate.collate_tables(['1', '3', '4'], root, str(tmp_path / 'tables'), log=lambda *a: None)
    t1, t3, t4 = results
    fovea = next(r for r in t1['missing'] if r['row'].id == '0.5x/fovea')  # has a config, not run here
    assert not fovea['status'].startswith('no config') and fovea['cells']['AP']['paper'] == 24.9
    assert all(r['row'].config is not None for r in t1['missing'])  # FOVEA and adaptive rows have configs now
    es = next(r for r in t4['missing'] if r['row'].id == 'es')  # prior work the paper quotes: reported, no config
    assert es['status'].startswith('no config')
    assert len(t1['missing']) == len(tables.TABLE1.rows)  # nothing was run: every row reported, none dropped
    lzu = next(r for r in t4['rows'] if r['row'].id == 'lzu-fixed')['cells']
    assert lzu['64x64']['ours'] == pytest.approx(27.3) and lzu['64x64 rel%']['ours'] == pytest.approx(5.0)
    assert lzu['128x128 rel%']['ours'] == pytest.approx(5.0) and lzu['256x256']['ours'] is None
    assert next(r for r in t3['rows'] if r['row'].id == '64x64/uniform')['status'].startswith('incomplete: no bench')


def test_rerun_skips_finished_rows(table5_work_root, capsys):
    """The driver continues where it stopped: tested rows and trained runs are skipped, the rest is planned."""
    code = reproduce.main(['5', '--work-root', table5_work_root, '--dry-run', '--rows', '0.25x/uniform',
                           '0.5x/uniform', '0.75x/uniform'])
    out = capsys.readouterr().out
    assert code == 0
    block = dict(re.findall(r'\[Table 5\] (\S+)\n((?:  .*\n)+)', out))
    assert 'train, test: skip (results exist)' in block['0.25x/uniform']
    assert 'benchmark: skip' in block['0.25x/uniform']
    assert 'tools/train.py' not in block['0.25x/uniform'] and 'tools/test.py' not in block['0.25x/uniform']
    half = block['0.5x/uniform']
    assert 'train: skip (done:' in half and 'tools/train.py' not in half
    assert re.search(r'tools/test\.py \S+0\.5x\.py \S+epoch_12\.pth --work-dir \S+/test', half)
    assert 'tools/analysis_tools/benchmark_lzu.py' in half
    fresh = block['0.75x/uniform']
    assert 'tools/train.py configs/lzu_fcos3d/fcos3d_r50-caffe-dcn_fpn_head-gn_8xb2-1x_nus-mono3d-0.75x.py' in fresh
    assert '--resume' not in fresh


def test_interrupted_training_resumes_and_modes_do_not_mix(tmp_path, capsys):
    root = str(tmp_path / 'work')
    train = osp.join(root, tables.TABLE5.row('1x/uniform').run, 'train')
    os.makedirs(train)
    with open(osp.join(train, 'last_checkpoint'), 'w') as f:
        f.write(osp.join(train, 'epoch_5.pth'))
    reproduce.main(['5', '--work-root', root, '--dry-run', '--rows', '1x/uniform', '--launcher', 'pytorch',
                    '--gpus', '8'])
    assert re.search(r'bash tools/dist_train\.sh \S+-1x\.py 8 --work-dir \S+ --resume', capsys.readouterr().out)
    with open(osp.join(train, collate.DONE), 'w') as f:
        json.dump(dict(smoke=True), f)
    with pytest.raises(SystemExit, match='holds a smoke run'):
        reproduce.main(['5', '--work-root', root, '--dry-run', '--rows', '1x/uniform'])


# ------------------------------------------------------------------------------------------ launchers, lr
def _bash(args, env=None):
    return subprocess.run(['bash', *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          env=dict(os.environ, **(env or {})))


@pytest.mark.parametrize('script', ['slurm_train.sh', 'slurm_test.sh', 'dist_train.sh', 'dist_test.sh'])
def test_launch_scripts_parse(script):
    proc = _bash(['-n', f'tools/{script}'])
    assert proc.returncode == 0, proc.stderr


def test_slurm_dry_run_prints_the_srun_line():
    env = dict(DRY_RUN='1', GPUS='16', GPUS_PER_NODE='8', CPUS_PER_TASK='4',
               SRUN_ARGS='--quotatype=auto --time=1:00:00')
    proc = _bash(['tools/slurm_train.sh', 'gpu', 'lzu_t1', 'configs/x.py', 'work_dirs/x', '--auto-scale-lr',
                  '--cfg-options', 'lzu_zoom.saliency=a b.pkl'], env)
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.strip()
    assert line.startswith('srun -p gpu --job-name=lzu_t1 --gres=gpu:8 --ntasks=16 --ntasks-per-node=8 '
                           '--cpus-per-task=4 --kill-on-bad-exit=1 --quotatype=auto --time=1:00:00 python -u ')
    assert line.endswith('tools/train.py configs/x.py --work-dir=work_dirs/x --launcher=slurm --auto-scale-lr '
                         '--cfg-options lzu_zoom.saliency=a\\ b.pkl')
    proc = _bash(['tools/slurm_test.sh', 'gpu', 'lzu_t', 'configs/x.py', 'ckpt.pth', '--work-dir', 'w'],
                 dict(DRY_RUN='1', GPUS='2'))
    assert proc.stdout.strip().startswith('srun -p gpu --job-name=lzu_t --gres=gpu:2 --ntasks=2 --ntasks-per-node=2')
    assert proc.stdout.strip().endswith('tools/test.py configs/x.py ckpt.pth --launcher=slurm --work-dir w')
    proc = _bash(['tools/slurm_train.sh', 'gpu'])
    assert proc.returncode == 2 and 'usage' in proc.stderr


def test_reproduce_plans_slurm_jobs(tmp_path, capsys):
    reproduce.main(['3', '--work-root', str(tmp_path), '--dry-run', '--rows', '64x64/lzu-fixed', '--launcher',
                    'slurm', '--partition', 'gpu', '--gpus', '4', '--auto-scale-lr'])
    out = capsys.readouterr().out
    assert re.search(r'GPUS=4 bash tools/slurm_train\.sh gpu lzu_pspnet\S+ configs/lzu_pspnet/\S+64x64\.py \S+/train '
                     r'--auto-scale-lr', out)
    assert re.search(r'GPUS=4 bash tools/slurm_test\.sh gpu \S+ \S+ .*best_mIoU_iter_\*\.pth', out)
    assert re.search(r'srun -p gpu \S+ --gres=gpu:1 --ntasks=1 \S+python\S* tools/analysis_tools/benchmark_lzu\.py',
                     out)


@pytest.mark.parametrize('family,config,base', [
    ('mmdet', 'configs/lzu_retinanet/retinanet_r50_fpn_lzu-fixed_3e_argoverse-hd-0.5x.py', 16),  # 8 GPUs x 2
    ('mmseg', 'configs/lzu_pspnet/pspnet_r50-fpn_lzu-fixed_4xb2-80k_cityscapes-64x64.py', 8),  # 4 GPUs x 2
])
def test_auto_scale_lr_scales_as_mmengine_documents(family, config, base, tmp_path):
    """lr x (world size x batch per GPU) / base_batch_size, with base_batch_size the paper's total batch."""
    pytest.importorskip(family)
    from mmengine.runner import Runner
    spec = importlib.util.spec_from_file_location('train_tool', osp.join(REPO_ROOT, 'tools', 'train.py'))
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    config = osp.join(REPO_ROOT, config)
    lrs = {}
    for flag in ([], ['--auto-scale-lr']):
        cfg = train.build_cfg(train.parse_args([config, '--work-dir', str(tmp_path / str(len(flag))), *flag,
                                                '--cfg-options', 'train_dataloader.batch_size=3',
                                                'model.backbone.init_cfg=None', 'model.pretrained=None'
                                                if family == 'mmseg' else 'load_from=None']))
        assert cfg.auto_scale_lr.base_batch_size == base and cfg.auto_scale_lr.enable == bool(flag)
        runner = Runner.from_cfg(cfg)
        optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
        runner.scale_lr(optim_wrapper, runner.auto_scale_lr)  # what Runner.train() does before the schedulers
        lrs[bool(flag)] = [g['lr'] for g in optim_wrapper.param_groups]
    assert lrs[False][0] == pytest.approx(0.01)
    assert lrs[True] == pytest.approx([lr * 3 / base for lr in lrs[False]])  # 1 process x 3 images


def test_fcos3d_base_batch_is_the_papers_16():
    pytest.importorskip('mmdet3d')
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(REPO_ROOT, tables.fcos3d('0.5x', True)))
    assert cfg.auto_scale_lr.base_batch_size == 16 == 8 * cfg.train_dataloader.batch_size  # "batch size of 16"


def test_adaptive_latency_is_the_fixed_rows_plus_the_per_frame_extra(tmp_path):
    """Table 1 adaptive rows: uniform forward + fixed added (LZU fixed row) + benchmark_adaptive's added."""
    root = str(tmp_path / 'work')
    t1 = tables.TABLE1
    write_benchmark(osp.join(root, t1.row('0.5x/uniform').run), forward=50.0)
    write_benchmark(osp.join(root, t1.row('0.5x/lzu-fixed').run), forward=53.0, added=2.0)
    adaptive = osp.join(root, t1.row('0.5x/lzu-adaptive').run, 'benchmark')
    os.makedirs(adaptive)
    with open(osp.join(adaptive, 'lzu_benchmark.json'), 'w') as f:  # what benchmark_adaptive.py --json writes
        json.dump(dict(results=[dict(scale=0.5, device='cpu', added_ms=dict(median=1.5, q1=1.4, q3=1.6))]), f)
    collator = collate.Collator(root)
    assert collator.latency(t1, t1.row('0.5x/lzu-fixed'))[0] == pytest.approx(52.0)
    assert collator.latency(t1, t1.row('0.5x/lzu-adaptive'))[0] == pytest.approx(53.5)
    assert collator.latency(t1, t1.row('0.5x/lzu-adaptive-no-cascade')) == (None, None)  # not benchmarked
