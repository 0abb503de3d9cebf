"""The README's quick-start blocks, run verbatim: train -> test -> demo per framework on the real samples.

Each block is the fenced ``bash`` block after a ``<!-- readme-test: NAME -->``
marker in README.md. The test changes paths only -- ``../shared/data`` (the
samples beside the repository) and the repository's own ``configs/``,
``tools/``, ``demo/`` become absolute -- runs the block with ``bash -e`` in a
temporary folder (where ``work_dirs/`` then lands) and checks that every
stage finished and wrote its outputs. ``test_readme_commands_are_tested_or_marked``
keeps the rest of the README honest: every other shell block says what it needs.
"""
import csv
import glob
import json
import os
import os.path as osp
import re
import subprocess
import sys
import time

from tests.conftest import REPO_ROOT, SHARED_DATA, shared_path

README = osp.join(REPO_ROOT, 'README.md')
BLOCK = re.compile(r'<!-- readme-test: ([\w-]+) -->\s*\n```bash\n(.*?)\n```', re.S)
FENCE = re.compile(r'((?:<!--[^\n]*-->\s*\n)?)```(bash|sh|shell)\n(.*?)\n```', re.S)
#: what a README shell block that no test runs must say about itself: what it needs, or that it is a synopsis
NEEDS = re.compile(r'^\s*# (needs the full dataset|needs a GPU|needs a Slurm cluster|needs about [\d-]+ minutes'
                   r'|usage)\b', re.M)
#: blocks run by CI itself (.ci/run) rather than by a test
CI_BLOCKS = {'ci'}
#: blocks the tests below run
RUN_HERE = {'quick-fcos3d', 'quick-pspnet', 'quick-retinanet', 'demo-warp', 'reproduce-smoke'}
#: repository paths in the README's commands (relative to the repository root)
REPO_PATHS = re.compile(r'(?<![\w./-])(configs|tools|demo)/')


def readme_blocks() -> dict:
    with open(README) as f:
        return dict(BLOCK.findall(f.read()))


def run_block(name: str, tmp_path) -> str:
    """Run README block ``name`` in ``tmp_path``; returns its output.

    The README's commands are written for the repository root as the working
    directory; the test runs them in ``tmp_path`` instead (so ``work_dirs/``
    lands there) with two substitutions: the repository's ``configs/``,
    ``tools/`` and ``demo/`` paths and ``../shared/data`` become absolute.
    """
    assert name in RUN_HERE, name
    block = readme_blocks()[name]
    shared_path()  # skip without the samples
    script = REPO_PATHS.sub(lambda m: osp.join(REPO_ROOT, m.group(1)) + '/', block)
    script = script.replace('../shared/data', osp.normpath(SHARED_DATA))
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore', PYTHONPATH=REPO_ROOT)
    env['PATH'] = osp.dirname(sys.executable) + os.pathsep + env.get('PATH', '')
    start = time.time()
    proc = subprocess.run(['bash', '-euo', 'pipefail', '-c', script], cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=1200)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, f'README block {name} failed (rc {proc.returncode}):\n{out[-8000:]}'
    print(f'README block {name}: {time.time() - start:.0f} s')
    return out


def test_metrics(test_dir: str) -> dict:
    """The metrics tools/test.py wrote (mmengine's ``<timestamp>/<timestamp>.json``)."""
    files = glob.glob(osp.join(test_dir, '*', '*.json'))
    assert len(files) == 1, files
    with open(files[0]) as f:
        return json.load(f)


test_metrics.__test__ = False  # a helper, not a test


def check_demo(demo_dir: str, with_predictions: bool = True) -> dict:
    for name in ('panels.png', 'zoomed.png', 'unzoomed.png', 'magnification.npy', 'summary.json'):
        assert osp.isfile(osp.join(demo_dir, name)), name
    with open(osp.join(demo_dir, 'summary.json')) as f:
        summary = json.load(f)
    assert summary['warp_from'] == 'pipeline' and summary['mean_magnification'] > 0
    if with_predictions:
        assert 'predictions' in summary
    return summary


def run_quickstart(name: str, tmp_path, checkpoint: str):
    """Run README block ``quick-<name>``; check training (checkpoint, validation), test and demo outputs.

    Returns:
        ``(work_dir, test metrics, demo summary)``.
    """
    log = run_block(f'quick-{name}', tmp_path)
    work = str(tmp_path / 'work_dirs' / f'quick_{name}')
    assert osp.isfile(osp.join(work, checkpoint)), os.listdir(work)
    assert re.search(r'(Epoch|Iter)\(val\)', log), 'validation did not run at the end of training'
    dumped = open(glob.glob(osp.join(work, '*.py'))[0]).read()  # the config the Runner used
    assert 'nuscenes_infos_val.pkl' not in dumped and "ann_file='Argoverse-HD/annotations/train.json'" not in dumped
    summary = check_demo(osp.join(work, 'demo'))
    assert summary['predictions']['score_thr'] == 0.3  # the demo's default, reported with what it hid
    return work, test_metrics(osp.join(work, 'test')), summary


def test_quickstart_fcos3d(tmp_path):
    _, metrics, _ = run_quickstart('fcos3d', tmp_path, 'epoch_1.pth')
    assert 0 <= metrics['NuScenes metric/pred_instances_3d_NuScenes/NDS'] <= 1


def test_quickstart_pspnet(tmp_path):
    work, metrics, _ = run_quickstart('pspnet', tmp_path, 'iter_2.pth')
    assert glob.glob(osp.join(work, 'best_mIoU_iter_2.pth'))
    assert 0 <= metrics['mIoU'] <= 100 and 'averageScoreCategories' in metrics
    crops = glob.glob(osp.join(work, 'test', 'format_results', 'gt', '*_gtFine_labelIds.png'))
    assert len(crops) == 1, 'the centred gtFine crops are kept in <work_dir>/format_results/gt'
    assert osp.isfile(osp.join(work, 'boundary_32x32.png'))


def test_quickstart_retinanet(tmp_path):
    _, metrics, _ = run_quickstart('retinanet', tmp_path, 'epoch_1.pth')
    assert 0 <= metrics['coco/bbox_mAP'] <= 1


def test_readme_commands_are_tested_or_marked():
    """Every shell block of the README is run by a test (marker) or says what it needs (full dataset / GPU)."""
    with open(README) as f:
        text = f.read()
    marked = set(readme_blocks())
    assert RUN_HERE <= marked, f'README blocks missing: {RUN_HERE - marked}'
    assert marked <= RUN_HERE | CI_BLOCKS, f'README blocks marked but run by no test: {marked - RUN_HERE - CI_BLOCKS}'
    unmarked = []
    for marker, _, body in FENCE.findall(text):
        if 'readme-test:' in marker or NEEDS.search(body):
            continue
        unmarked.append(body.strip().splitlines()[0])
    assert not unmarked, ('README shell blocks neither run by a test (<!-- readme-test: NAME -->) nor marked '
                          f'"# needs the full dataset / a GPU / about N minutes" or "# usage": {unmarked}')


def test_demo_default_output_under_work_dirs(tmp_path):
    """The demo example without --out-dir writes under work_dirs/lzu_demo/<image name>/, not into the repository."""
    run_block('demo-warp', tmp_path)
    outs = glob.glob(str(tmp_path / 'work_dirs' / 'lzu_demo' / '*'))
    assert len(outs) == 1 and osp.basename(outs[0]).endswith('CAM_FRONT__1532402927612460'), outs
    summary = check_demo(outs[0], with_predictions=False)
    assert 0.99 < summary['mean_magnification'] < 1.01  # anti-crop: samples conserved (README)


def test_reproduce_smoke_rows(tmp_path):
    """tools/reproduce/reproduce.py --smoke: train -> test -> benchmark -> collate, two real rows of Table 3."""
    run_block('reproduce-smoke', tmp_path)
    tables = tmp_path / 'work_dirs' / 'reproduce_smoke' / 'tables'
    md = (tables / 'table3.md').read_text()
    assert '**SMOKE RUN**' in md and 'Missing rows (6 of 8)' in md
    with open(tables / 'table3.csv') as f:
        records = list(csv.DictReader(f))
    for row in ('64x64/uniform', '64x64/lzu-fixed'):  # every "ours" cell of the two rows came from the run
        cells = [r for r in records if r['row'] == row]
        assert len(cells) == 21 and all(c['ours'] and c['smoke'] == '1' for c in cells), cells
    t4 = (tables / 'table4.md').read_text()
    assert re.search(r'\| LZU, fixed \| [\d.]+ / 26\.7 \([+-][\d.]+\) \| -?[\d.]+ / 1\.1', t4), t4
