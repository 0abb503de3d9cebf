"""Reproduce a paper table: train and test every row's config, benchmark its latency, collate ours vs the paper.

    python tools/reproduce/reproduce.py TABLE [TABLE ...] [--work-root work_dirs/reproduce] [--rows ROW_ID ...]
        [--launcher none|pytorch|slurm] [--gpus N] [--partition P] [--job-prefix lzu]
        [--smoke] [--dry-run] [--skip-benchmark] [--benchmark-repeat 10] [--out-dir DIR] [--estimate]

TABLE is 1-5 (``paper_tables.py``: Table 2 tests the Table 1 / 5 models, Table
4 is computed from Table 3). For each row, in order:

1. **train** its config (``tools/train.py``, or ``tools/dist_train.sh`` /
   ``tools/slurm_train.sh`` with ``--launcher pytorch`` / ``slurm`` and
   ``--gpus``) into ``<work root>/<config name>/train``; an interrupted run
   resumes (``--resume``); a finished one is skipped;
2. **test** the checkpoint (the last one; Table 3: the best mini-val one) with
   each of the row's test configs (``tools/test.py`` / ``dist_test.sh`` /
   ``slurm_test.sh``) into ``<config name>/<test>``, skipped when that
   directory already holds the results;
3. **benchmark** the latency with ``tools/analysis_tools/benchmark_lzu.py``
   (adaptive rows: ``benchmark_adaptive.py``, the per-frame cost added to
   their LZU-fixed row's; tables with a latency column), skipped when done;
4. **collate** the tables (``collate.py``): ``<out-dir>/table<N>.md`` and ``.csv``.

Re-running the same command continues where it stopped. A failing row is
reported and the next one runs; the exit status is 1 if any row failed.
``--dry-run`` prints the commands (and the rows it would skip) without running
anything. ``--estimate`` prints the GPU-hours each row needs, estimated from
the schedule and the per-image latency (``lzu_benchmark.json`` on a GPU if
present, else the paper's latency column; an estimate, not a measurement).

``--smoke`` checks the whole workflow on CPU in minutes: 2 training
iterations per config (``--max-iters 2``), no pretrained weights, the sample
data in ``../shared/data`` (``--data-root`` / ``--ann-file``): nuScenes for
Table 5 and Table 2 (3D), the Cityscapes image for Table 3 (boundary saliency
over its ``val`` split), and for Table 1 / Table 2 (2D) an Argoverse-HD-format
set built from the nuScenes images (``tools/misc/nuscenes_to_argoverse_hd.py``,
KDE saliency from ``tools/saliency/box_kde_saliency.py``); the benchmark with
1 repetition on the CPU. Its tables are marked as smoke.
"""
import argparse
import glob
import json
import os
import os.path as osp
import shlex
import subprocess
import sys
import time
from typing import Dict, List, Optional

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

from collate import DONE, BENCHMARK_JSON, Collator, collate_tables, load_paper_numbers, test_results  # noqa: E402
from paper_tables import REPO_ROOT, TABLES, Row, Table  # noqa: E402

sys.path.insert(1, REPO_ROOT)  # lzu_mm of this checkout (smoke runs read the configs' LZ warp)

SHARED_DATA = osp.normpath(osp.join(REPO_ROOT, '..', 'shared', 'data'))
#: approximate dataset sizes for --estimate when the annotation files are absent: (train images, test images)
DATASET_IMAGES = {
    'argoverse': (39384, 15062),  # Argoverse-HD train / val frames (approximate; counted from the json if present)
    'nuscenes': (28130 * 6, 6019 * 6),  # nuScenes trainval: 28130 / 6019 samples x 6 cameras
    'cityscapes': (2975 - 500, 500 + 10 * 500),  # train minus mini-val; val + 10 mini-val evaluations
}
#: a training step costs about 3 forward passes (forward + backward), per image
TRAIN_COST = 3.0


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train, test and collate the paper\'s tables')
    parser.add_argument('tables', nargs='+', choices=sorted(TABLES), help='table numbers')
    parser.add_argument('--work-root', default='work_dirs/reproduce', help='where the runs go')
    parser.add_argument('--rows', nargs='+', help='only these row ids (e.g. 0.5x/lzu-fixed)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none',
                        help='none: tools/train.py; pytorch: tools/dist_train.sh; slurm: tools/slurm_train.sh')
    parser.add_argument('--gpus', type=int, default=1, help='processes / GPUs per run (pytorch, slurm)')
    parser.add_argument('--partition', help='Slurm partition (--launcher slurm)')
    parser.add_argument('--job-prefix', default='lzu', help='Slurm job name prefix')
    parser.add_argument('--auto-scale-lr', action='store_true', help='pass --auto-scale-lr to training (when '
                        'GPUS x batch differs from the paper\'s total batch)')
    parser.add_argument('--smoke', action='store_true', help='2 iterations per config on the sample data (CPU)')
    parser.add_argument('--dry-run', action='store_true', help='print the commands, run nothing')
    parser.add_argument('--skip-benchmark', action='store_true', help='no latency benchmark')
    parser.add_argument('--benchmark-repeat', type=int, default=10, help='timed runs of benchmark_lzu.py')
    parser.add_argument('--out-dir', help='where the tables go (default: WORK_ROOT/tables)')
    parser.add_argument('--estimate', action='store_true', help='print the estimated GPU-hours and exit')
    args = parser.parse_args(argv)
    if args.launcher == 'slurm' and not args.partition:
        parser.error('--launcher slurm needs --partition')
    return args


def expand(table_ids: List[str]) -> List[str]:
    """Tables to run, in order: Table 4 is computed from Table 3."""
    out = []
    for tid in table_ids:
        for need in (['3'] if tid == '4' else []) + [tid]:
            if need not in out:
                out.append(need)
    return out


class Reproducer:
    """Runs the rows of tables (see the module docstring)."""

    def __init__(self, args, log=print):
        self.args = args
        self.log = log
        self.work_root = osp.abspath(args.work_root)
        self.failed: List[str] = []
        self.done_runs: Dict[tuple, bool] = {}
        self._smoke_data: Dict[str, dict] = {}

    # ------------------------------------------------------------------ commands
    def run_cmd(self, cmd: List[str], log_path: str, env: Optional[dict] = None) -> bool:
        line = ' '.join(shlex.quote(c) for c in cmd)
        if env:
            line = ' '.join(f'{k}={shlex.quote(v)}' for k, v in env.items()) + ' ' + line
        if self.args.dry_run:
            self.log(f'    $ {line}')
            return True
        os.makedirs(osp.dirname(log_path), exist_ok=True)
        start = time.time()
        full_env = dict(os.environ, PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get('PYTHONPATH', ''))
        full_env.update(env or {})
        with open(log_path, 'w') as f:
            f.write(f'$ {line}\n')
            f.flush()
            proc = subprocess.run(cmd, cwd=REPO_ROOT, env=full_env, stdout=f, stderr=subprocess.STDOUT)
        self.log(f'    {"ok" if proc.returncode == 0 else "FAILED"} in {time.time() - start:.0f} s '
                 f'(rc {proc.returncode}, output: {log_path})')
        return proc.returncode == 0

    def _tool(self, kind: str, config: str, work_dir: str, checkpoint: Optional[str], job: str) -> tuple:
        """(command, env) of tools/train.py or tools/test.py through the chosen launcher."""
        a = self.args
        if a.launcher == 'none':
            cmd = [sys.executable, f'tools/{kind}.py', config] + ([checkpoint] if checkpoint else [])
            return cmd + ['--work-dir', work_dir], None
        if a.launcher == 'pytorch':
            cmd = ['bash', f'tools/dist_{kind}.sh', config] + ([checkpoint] if checkpoint else []) + [str(a.gpus)]
            return cmd + ['--work-dir', work_dir], None
        env = dict(GPUS=str(a.gpus))
        if kind == 'train':
            return ['bash', 'tools/slurm_train.sh', a.partition, job, config, work_dir], env
        return ['bash', 'tools/slurm_test.sh', a.partition, job, config, checkpoint, '--work-dir', work_dir], env

    # ---------------------------------------------------------------- smoke data
    def smoke_data(self, family: str) -> dict:
        """data_root / ann_file / saliency of the sample data of a dataset family (built once per work root)."""
        if family in self._smoke_data:
            return self._smoke_data[family]
        out = osp.join(self.work_root, 'smoke_data')
        py = sys.executable
        if family == 'nuscenes':
            data = dict(data_root=osp.join(SHARED_DATA, 'nuscenes'), ann_file='nuscenes_infos_mini.pkl',
                        saliency=osp.join(SHARED_DATA, 'lzu_official', 'nuscenes_fixed_saliency.pkl'))
        elif family == 'cityscapes':
            data = dict(data_root=osp.join(SHARED_DATA, 'cityscapes'), ann_file=None,
                        saliency=osp.join(out, 'cityscapes_boundary_32x32.pkl'))
            if not osp.isfile(data['saliency']):
                self.run_cmd([py, 'tools/saliency/boundary_saliency.py', data['data_root'], data['saliency'],
                              '--split', 'val'], osp.join(out, 'cityscapes_saliency.log'))
        elif family == 'argoverse':
            root = osp.join(out, 'argoverse-hd')
            data = dict(data_root=root, ann_file='Argoverse-HD/annotations/val.json',
                        saliency=osp.join(root, 'kde-sd_train_31x51.pkl'))
            if not osp.isfile(osp.join(root, data['ann_file'])):
                self.run_cmd([py, 'tools/misc/nuscenes_to_argoverse_hd.py', osp.join(SHARED_DATA, 'nuscenes'), root],
                             osp.join(out, 'argoverse_hd.log'))
            if not osp.isfile(data['saliency']):
                self.run_cmd([py, 'tools/saliency/box_kde_saliency.py',
                              osp.join(root, 'Argoverse-HD', 'annotations', 'train.json'), data['saliency'],
                              '--grid-shape', '31', '51'], osp.join(out, 'argoverse_saliency.log'))
        else:
            raise ValueError(f'no smoke data for dataset family {family!r}')
        if not osp.isdir(data['data_root']):
            raise SystemExit(f'--smoke needs the sample data at {data["data_root"]} (../shared/data)')
        self._smoke_data[family] = data
        return data

    def smoke_saliency(self, table: Table, config: str) -> List[str]:
        """``['--saliency', FILE]`` of the sample data for an LZU config, ``[]`` for a uniform one."""
        from mmengine.config import Config

        from lzu_mm.common.config import find_lz_sites
        if not find_lz_sites(Config.fromfile(osp.join(REPO_ROOT, config))):
            return []
        return ['--saliency', self.smoke_data(table.family)['saliency']]

    def smoke_args(self, table: Table, config: str, train: bool) -> tuple:
        """``(tool arguments, --cfg-options)``: data, saliency, weights and length overrides of a smoke run."""
        from mmengine.config import Config

        from lzu_mm.common.config import pretrained_options
        data = self.smoke_data(table.family)
        cfg = Config.fromfile(osp.join(REPO_ROOT, config))
        args = ['--data-root', data['data_root']] + (['--ann-file', data['ann_file']] if data['ann_file'] else [])
        args += self.smoke_saliency(table, config)
        if train:
            return args + ['--max-iters', '2'], pretrained_options(cfg)
        options = []
        if cfg.get('default_scope') in ('mmdet', 'mmdet3d'):  # random weights score below the configs' thresholds
            options = ['model.test_cfg.score_thr=0.0', 'model.test_cfg.max_per_img=20']
        return args, options

    # -------------------------------------------------------------------- stages
    def checkpoint(self, table: Table, train_dir: str) -> Optional[str]:
        if table.checkpoint == 'last':
            path = osp.join(train_dir, 'last_checkpoint')
            if not osp.isfile(path):
                return None
            with open(path) as f:
                return f.read().strip() or None
        found = sorted(glob.glob(osp.join(train_dir, table.checkpoint)), key=osp.getmtime)
        return found[-1] if found else None

    def _check_mode(self, stage_dir: str) -> None:
        marker = osp.join(stage_dir, DONE)
        if osp.isfile(marker):
            with open(marker) as f:
                smoke = bool(json.load(f).get('smoke'))
            if smoke != self.args.smoke:
                raise SystemExit(f'{stage_dir} holds a {"smoke" if smoke else "full"} run; use another --work-root '
                                 f'for {"smoke" if self.args.smoke else "full"} runs')

    def _mark(self, stage_dir: str, **info) -> None:
        if self.args.dry_run:
            return
        os.makedirs(stage_dir, exist_ok=True)
        with open(osp.join(stage_dir, DONE), 'w') as f:
            json.dump(dict(info, smoke=self.args.smoke, time=time.strftime('%Y-%m-%d %H:%M:%S')), f, indent=2)

    def train(self, table: Table, row: Row) -> Optional[str]:
        """Train the row's config unless done; returns the checkpoint to test (None on failure)."""
        run_dir = osp.join(self.work_root, row.run)
        train_dir = osp.join(run_dir, 'train')
        self._check_mode(train_dir)
        if osp.isfile(osp.join(train_dir, DONE)):
            ckpt = self.checkpoint(table, train_dir)
            self.log(f'  train: skip (done: {ckpt})')
            return ckpt
        if self.done_runs.get(('train', row.run)) is not None:
            return self.checkpoint(table, train_dir) or '<checkpoint>'
        extra, options = [], []
        if self.args.smoke:
            extra, options = self.smoke_args(table, row.config, train=True)
        if osp.isfile(osp.join(train_dir, 'last_checkpoint')):
            extra.append('--resume')  # an interrupted run continues
        if self.args.auto_scale_lr:
            extra.append('--auto-scale-lr')
        cmd, env = self._tool('train', row.config, train_dir, None, f'{self.args.job_prefix}_{row.run}')
        cmd = cmd + extra + (['--cfg-options', *options] if options else [])
        self.log(f'  train {row.config}')
        ok = self.run_cmd(cmd, osp.join(run_dir, 'train.log'), env)
        self.done_runs[('train', row.run)] = ok
        if not ok:
            return None
        ckpt = self.checkpoint(table, train_dir)
        if self.args.dry_run:
            return ckpt or f'<{table.checkpoint} checkpoint of {train_dir}>'
        if ckpt is None:
            self.log(f'  train: finished but no checkpoint matching {table.checkpoint!r} in {train_dir}')
            return None
        self._mark(train_dir, config=row.config, checkpoint=ckpt, command=cmd)
        return ckpt

    def pending_tests(self, table: Table, row: Row) -> List[str]:
        """Names of the row's tests whose results (the table's metric keys) are not in their work dir yet."""
        run_dir = osp.join(self.work_root, row.run)
        pending = []
        for test in row.tests:
            keys = [c.key for c in table.columns if not c.latency and c.test == test.name]
            if keys and test_results(osp.join(run_dir, test.name), keys) is None:
                pending.append(test.name)
        return pending

    def test(self, table: Table, row: Row, checkpoint: str) -> bool:
        ok = True
        run_dir = osp.join(self.work_root, row.run)
        pending = self.pending_tests(table, row)
        for test in row.tests:
            test_dir = osp.join(run_dir, test.name)
            self._check_mode(test_dir)
            if test.name not in pending:
                if any(not c.latency and c.test == test.name for c in table.columns):
                    self.log(f'  {test.name}: skip (results in {test_dir})')
                continue
            config = test.config or row.config
            extra, options = [], list(test.options)
            if self.args.smoke:
                extra, smoke_options = self.smoke_args(table, config, train=False)
                options += smoke_options
            cmd, env = self._tool('test', config, test_dir, checkpoint, f'{self.args.job_prefix}_{row.run}_{test.name}')
            cmd = cmd + extra + (['--cfg-options', *options] if options else [])
            self.log(f'  {test.name} {config}')
            if self.run_cmd(cmd, osp.join(run_dir, f'{test.name}.log'), env):
                self._mark(test_dir, config=config, checkpoint=checkpoint, command=cmd)
            else:
                ok = False
        return ok

    def benchmark(self, table: Table, row: Row) -> bool:
        if self.args.skip_benchmark or not any(c.latency for c in table.columns):
            return True
        run_dir = osp.join(self.work_root, row.run)
        bench_dir = osp.join(run_dir, 'benchmark')
        if osp.isfile(osp.join(bench_dir, BENCHMARK_JSON)):
            self.log(f'  benchmark: skip (done: {bench_dir})')
            return True
        if self.done_runs.get(('benchmark', row.run)) is not None:
            return self.done_runs[('benchmark', row.run)]
        if row.adaptive:  # the per-frame cost adaptive saliency adds (its LZU-fixed row gives the rest)
            scale = row.label[0].rstrip('x')
            cmd = [sys.executable, 'tools/analysis_tools/benchmark_adaptive.py', row.config, '--scales', scale,
                   '--json', osp.join(bench_dir, BENCHMARK_JSON)]
        else:
            cmd = [sys.executable, 'tools/analysis_tools/benchmark_lzu.py', row.config, '--work-dir', bench_dir]
        if self.args.smoke:
            cmd += ([] if row.adaptive else self.smoke_saliency(table, row.config)) + \
                ['--warmup', '0', '--repeat', '1', '--device', 'cpu']
        else:
            cmd += ['--warmup', '3', '--repeat', str(self.args.benchmark_repeat)]
        if self.args.launcher == 'slurm':  # one GPU, batch size 1
            cmd = ['srun', '-p', self.args.partition, f'--job-name={self.args.job_prefix}_{row.run}_bench',
                   '--gres=gpu:1', '--ntasks=1'] + cmd
        self.log(f'  benchmark {row.config}')
        ok = self.run_cmd(cmd, osp.join(run_dir, 'benchmark.log'))
        self.done_runs[('benchmark', row.run)] = ok
        return ok

    def run_row(self, table: Table, row: Row) -> None:
        self.log(f'[Table {table.id}] {row.id}')
        if row.derive is not None:
            self.log('  computed from other tables')
            return
        if row.config is None or not osp.isfile(osp.join(REPO_ROOT, row.config)):
            self.log(f'  missing: {row.note or row.config}')
            return
        ok = True
        if self.pending_tests(table, row):
            ckpt = self.train(table, row)
            if ckpt is None:
                self.failed.append(row.id)
                return
            ok = self.test(table, row, ckpt)
        else:  # every test has its results: the checkpoint is not needed again
            self.log('  train, test: skip (results exist)')
        ok = self.benchmark(table, row) and ok
        if not ok:
            self.failed.append(row.id)

    def run(self, table_ids: List[str]) -> int:
        for tid in expand(table_ids):
            for table in TABLES[tid]:
                for row in table.rows:
                    if self.args.rows and row.id not in self.args.rows:
                        continue
                    self.run_row(table, row)
        if not self.args.dry_run:
            collate_tables(table_ids if '4' not in table_ids else expand(table_ids), self.work_root,
                           self.args.out_dir or osp.join(self.work_root, 'tables'), log=self.log)
        if self.failed:
            self.log(f'failed rows: {", ".join(self.failed)}')
        return 1 if self.failed else 0


# ------------------------------------------------------------------------------------------------------ estimate
def _count_images(ann_path: str) -> Optional[int]:
    if not osp.isfile(ann_path):
        return None
    if ann_path.endswith('.json'):
        with open(ann_path) as f:
            return len(json.load(f)['images'])
    if ann_path.endswith('.txt'):
        with open(ann_path) as f:
            return sum(1 for line in f if line.strip())
    return None


def estimate_row(table: Table, row: Row, collator: Collator, paper: dict) -> dict:
    """GPU-hours of one row: (training images x 3 + test images) x per-image forward latency."""
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(REPO_ROOT, row.config))
    n_train, n_test = DATASET_IMAGES[table.family]
    ds = cfg.train_dataloader.dataset
    counted = _count_images(osp.join(REPO_ROOT, ds.get('data_root', ''), ds.get('ann_file', '')))
    n_train = counted or n_train
    if 'max_epochs' in cfg.train_cfg:
        images = n_train * cfg.train_cfg.max_epochs
        schedule = f'{cfg.train_cfg.max_epochs} epochs x {n_train} images'
    else:
        batch = cfg.auto_scale_lr.base_batch_size
        images = cfg.train_cfg.max_iters * batch
        schedule = f'{cfg.train_cfg.max_iters} iterations x {batch} images'
    ms, source = None, None
    lat = collator.latency(table, row)[0] if any(c.latency for c in table.columns) else None
    bench = collator.latency(table, row)[1] if lat is not None else None
    if lat is not None and bench and bench.startswith('cuda'):
        ms, source = lat, f'benchmark_lzu.py on {bench}'
    elif (table.id, row.id, 'Lat') in paper:
        ms, source = paper[(table.id, row.id, 'Lat')]['value'], 'the paper\'s latency (RTX 2080 Ti)'
    hours = None if ms is None else (images * TRAIN_COST + n_test) * ms / 3.6e6
    return dict(row=row.id, config=row.config, schedule=schedule, train_images=images, test_images=n_test, ms=ms,
                ms_source=source, gpu_hours=hours)


def estimate(table_ids: List[str], work_root: str, log=print) -> List[dict]:
    collator, paper = Collator(work_root), load_paper_numbers()
    out, seen = [], set()
    for tid in expand(table_ids):
        for table in TABLES[tid]:
            for row in table.rows:
                if row.config is None or row.run in seen or not osp.isfile(osp.join(REPO_ROOT, row.config)):
                    continue
                seen.add(row.run)
                est = estimate_row(table, row, collator, paper)
                out.append(est)
                hours = 'n/a (no GPU latency: run benchmark_lzu.py on a GPU)' if est['gpu_hours'] is None else \
                    f"{est['gpu_hours']:.1f} GPU-h ({est['ms']:.1f} ms/image, {est['ms_source']})"
                log(f"Table {table.id} {row.id}: {est['schedule']}, {est['test_images']} evaluated images: {hours}")
    total = sum(e['gpu_hours'] for e in out if e['gpu_hours'] is not None)
    log(f'total (rows with a latency): {total:.1f} GPU-hours -- an estimate: training step = {TRAIN_COST:g} '
        'forward passes per image at batch 1, data loading and evaluation overheads not counted')
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.estimate:
        estimate(args.tables, args.work_root)
        return 0
    return Reproducer(args).run(args.tables)


if __name__ == '__main__':
    sys.exit(main())
