"""Accuracy-latency Pareto plots from work directories (paper Figure 7).

    python tools/analysis_tools/plot_pareto.py WORK_DIR [WORK_DIR ...] --out pareto.png
        [--task det|seg|3d] [--metric REGEX] [--cost ms|gflops] [--device cpu|cuda] [--labels ...]

Each work dir contributes one point:

* its **cost** from ``lzu_benchmark.json``, written there by
  ``tools/analysis_tools/benchmark_lzu.py CONFIG --work-dir DIR``: the
  end-to-end latency in ms (``latency_ms``), or ``gflops`` (written with
  ``--flops``);
* its **accuracy** from mmengine's logs in the work dir: the
  ``<timestamp>/<timestamp>.json`` of a ``tools/test.py`` run, or the
  per-evaluation JSON lines of ``<timestamp>/vis_data/*.json`` of a training
  run (the last value wins).

Defaults per task (Figure 7): detection -- COCO-style box AP (``bbox_mAP``,
drawn in %) vs ms; segmentation -- ``mIoU`` (%) vs GFLOPs; 3-D -- ``NDS`` vs
ms. Points are grouped into the uniform-downsampling and the LZU series
(joined in order of cost, as the scales of one method), and the
Pareto-optimal points over all of them (no other point is at least as cheap
and at least as accurate, and strictly better in one) are ringed and joined
by the frontier.
"""
import argparse
import glob
import json
import os.path as osp
import re
import sys
from typing import List, Optional, Sequence

BENCHMARK_JSON = 'lzu_benchmark.json'

#: task -> (metric regex, axis label, scale to % if the value is a fraction, default cost)
TASKS = {
    'det': (r'(^|/)bbox_mAP$', 'AP (%)', True, 'ms'),
    'seg': (r'(^|/)mIoU$', 'mIoU (%)', True, 'gflops'),
    '3d': (r'(^|/)NDS$', 'NDS', False, 'ms'),
}
SCOPE_TO_TASK = {'mmdet': 'det', 'mmseg': 'seg', 'mmdet3d': '3d'}


def _json_records(path: str) -> List[dict]:
    """The dicts of a JSON file or a JSON-lines file (mmengine writes both)."""
    with open(path) as f:
        text = f.read()
    try:
        data = json.loads(text)
        return [data] if isinstance(data, dict) else [d for d in data if isinstance(d, dict)]
    except json.JSONDecodeError:
        out = []
        for line in text.splitlines():
            line = line.strip()
            if line:
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(rec, dict):
                    out.append(rec)
        return out


def read_metric(work_dir: str, pattern: str) -> Optional[float]:
    """The last value of the first metric key matching ``pattern`` in the work dir's mmengine JSON logs."""
    files = [p for p in glob.glob(osp.join(work_dir, '**', '*.json'), recursive=True)
             if osp.basename(p) != BENCHMARK_JSON]
    files.sort(key=lambda p: (osp.getmtime(p), p))
    regex = re.compile(pattern)
    value = None
    for path in files:
        for rec in _json_records(path):
            for key, val in rec.items():
                if regex.search(str(key)) and isinstance(val, (int, float)):
                    value = float(val)
    return value


def read_benchmark(work_dir: str, device: Optional[str] = None) -> dict:
    """The ``lzu_benchmark.json`` entry of a work dir (CUDA preferred unless ``device`` is given)."""
    path = osp.join(work_dir, BENCHMARK_JSON)
    if not osp.isfile(path):
        raise SystemExit(f'{work_dir}: no {BENCHMARK_JSON}; run tools/analysis_tools/benchmark_lzu.py CONFIG '
                         f'--work-dir {work_dir} first')
    with open(path) as f:
        results = json.load(f)['results']
    if device is not None:
        results = [r for r in results if r['device'].split(':')[0] == device]
        if not results:
            raise SystemExit(f'{path}: no timing on device {device!r}')
    results.sort(key=lambda r: r['device'].startswith('cuda'), reverse=True)
    return results[0]


def pareto_optimal(costs: Sequence[float], scores: Sequence[float]) -> List[bool]:
    """True for the points that no other point dominates (cost <= and score >=, one strictly)."""
    flags = []
    for i, (c, s) in enumerate(zip(costs, scores)):
        dominated = any((c2 <= c and s2 >= s and (c2 < c or s2 > s)) for j, (c2, s2) in enumerate(zip(costs, scores))
                        if j != i)
        flags.append(not dominated)
    return flags


def collect(work_dirs: Sequence[str], task: Optional[str], metric: Optional[str], cost: Optional[str],
            device: Optional[str], labels: Optional[Sequence[str]]) -> dict:
    points = []
    for k, wd in enumerate(work_dirs):
        bench = read_benchmark(wd, device)
        t = task or SCOPE_TO_TASK.get(bench.get('task'))
        if t not in TASKS:
            raise SystemExit(f'{wd}: cannot tell the task (benchmark task {bench.get("task")!r}); pass --task')
        pattern, ylabel, to_percent, default_cost = TASKS[t]
        pattern = metric or pattern
        value = read_metric(wd, pattern)
        if value is None:
            raise SystemExit(f'{wd}: no metric matching {pattern!r} in its mmengine JSON logs (run tools/test.py '
                             f'with --work-dir {wd})')
        if to_percent and value <= 1.0 and not metric:
            value *= 100
        c = cost or default_cost
        if c == 'gflops':
            x = bench.get('gflops')
            if x is None:
                raise SystemExit(f'{wd}: {BENCHMARK_JSON} has no GFLOPs; rerun benchmark_lzu.py with --flops')
        else:
            x = bench['latency_ms']
        xlabel = 'GFLOPs' if c == 'gflops' else f"latency (ms, {bench['device']})"
        points.append(dict(work_dir=wd, label=labels[k] if labels else bench.get('name', osp.basename(wd)),
                           task=t, cost=float(x), score=value, lzu=bool(bench.get('lzu')), device=bench['device'],
                           ylabel=metric or ylabel, xlabel=xlabel))
    if len({p['task'] for p in points}) > 1:
        raise SystemExit(f'work dirs mix tasks {sorted({p["task"] for p in points})}; plot one task at a time')
    flags = pareto_optimal([p['cost'] for p in points], [p['score'] for p in points])
    for p, f in zip(points, flags):
        p['pareto'] = f
    return dict(points=points)


def plot(data: dict, out: str, title: Optional[str] = None) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    points = data['points']
    fig = Figure(figsize=(6.4, 4.8))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for lzu, color, marker, name in ((False, 'tab:blue', 'o', 'uniform downsampling'), (True, 'tab:red', 's', 'LZU')):
        series = sorted((p for p in points if p['lzu'] == lzu), key=lambda p: p['cost'])
        if not series:
            continue
        ax.plot([p['cost'] for p in series], [p['score'] for p in series], marker=marker, color=color, label=name)
        mid = (min(q['cost'] for q in points) + max(q['cost'] for q in points)) / 2
        for p in series:  # labels point inwards so they stay inside the figure
            right = p['cost'] > mid
            ax.annotate(p['label'], (p['cost'], p['score']), fontsize=6, xytext=(-4 if right else 4, 4),
                        textcoords='offset points', ha='right' if right else 'left')
    front = sorted((p for p in points if p['pareto']), key=lambda p: p['cost'])
    ax.plot([p['cost'] for p in front], [p['score'] for p in front], ls='--', color='k', lw=0.8, zorder=1,
            label='Pareto frontier')
    ax.scatter([p['cost'] for p in front], [p['score'] for p in front], s=160, facecolors='none', edgecolors='k',
               linewidths=1.2, zorder=3, label='Pareto-optimal')
    ax.ticklabel_format(axis='both', style='plain', useOffset=False)
    ax.margins(x=0.3, y=0.15)  # room for the point labels
    ax.set_xlabel(points[0]['xlabel'])
    ax.set_ylabel(points[0]['ylabel'])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or f"{ {'det': 'Detection', 'seg': 'Segmentation', '3d': '3-D detection'}[points[0]['task']]}: "
                 'accuracy vs cost', fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    return out


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Figure 7-style accuracy-cost Pareto plot from work dirs')
    parser.add_argument('work_dirs', nargs='+', help='work dirs with mmengine metric logs and lzu_benchmark.json')
    parser.add_argument('--out', required=True, help='output PNG')
    parser.add_argument('--task', choices=sorted(TASKS), help='default: from the benchmark JSON')
    parser.add_argument('--metric', help='regex of the metric key (default per task: bbox_mAP, mIoU, NDS)')
    parser.add_argument('--cost', choices=['ms', 'gflops'], help='x axis (default: ms; GFLOPs for segmentation)')
    parser.add_argument('--device', help='use timings of this device (default: cuda if timed, else cpu)')
    parser.add_argument('--labels', nargs='+', help='one label per work dir (default: config names)')
    parser.add_argument('--title', help='plot title')
    args = parser.parse_args(argv)
    if args.labels and len(args.labels) != len(args.work_dirs):
        parser.error(f'--labels needs one label per work dir ({len(args.work_dirs)}), got {len(args.labels)}')
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    data = collect(args.work_dirs, args.task, args.metric, args.cost, args.device, args.labels)
    plot(data, args.out, args.title)
    for p in data['points']:
        print(f"{p['label']}: {p['ylabel']} {p['score']:.3f} at {p['cost']:.2f} {p['xlabel']}"
              f"{'  (Pareto-optimal)' if p['pareto'] else ''}")
    print(f'wrote {args.out}')
    return data


if __name__ == '__main__':
    sys.exit(main() and 0)
