"""Collate a paper table from work dirs: ours, the paper's and the difference, in the paper's layout.

    python tools/reproduce/collate.py TABLE [TABLE ...] [--work-root work_dirs/reproduce] [--out-dir DIR]
        [--device cuda|cpu]

TABLE is 1-5 (see ``paper_tables.py``). For every row it reads mmengine's own
outputs -- the metrics JSON that ``tools/test.py`` writes
(``<work root>/<config name>/<test>/<timestamp>/<timestamp>.json``, the newest
one that holds the row's metric keys) and ``lzu_benchmark.json`` of
``benchmark_lzu.py`` for the latency column -- never the text logs. Writes
``<out-dir>/table<N>.md`` (cells ``ours / paper (ours - paper)``, rows in the
paper's order, and a list of the missing rows with the reason) and
``table<N>.csv`` (one line per row and column: ours, paper, difference, the
paper number's source, the row's status). Rows without a config, not trained
or not tested are reported, never dropped. Runs made by ``reproduce.py
--smoke`` are marked as smoke (numbers from 2 iterations on sample data).
"""
import argparse
import csv
import glob
import json
import math
import os
import os.path as osp
import sys
from typing import Dict, List, Optional

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))

from paper_tables import PAPER_NUMBERS, REPO_ROOT, TABLES, Row, Table, table_slug  # noqa: E402

#: marker written by reproduce.py into a run's train / test dir when the stage finished
DONE = 'reproduce_done.json'
BENCHMARK_JSON = 'lzu_benchmark.json'


def load_paper_numbers(path: str = PAPER_NUMBERS) -> Dict[tuple, dict]:
    """``{(table, row, column): dict(value, source)}`` from ``paper_numbers.csv``."""
    out = {}
    with open(path, newline='') as f:
        for rec in csv.DictReader(f):
            key = (int(rec['table']), rec['row'], rec['column'])
            if key in out:
                raise ValueError(f'{path}: duplicate entry {key}')
            out[key] = dict(value=float(rec['value']), source=rec['source'])
    return out


def read_json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def test_results(test_dir: str, keys: List[str]) -> Optional[dict]:
    """The newest ``<timestamp>/<timestamp>.json`` of a ``tools/test.py`` work dir holding all ``keys``, else None."""
    found = []
    for path in glob.glob(osp.join(test_dir, '*', '*.json')):
        stamp = osp.basename(osp.dirname(path))
        if osp.splitext(osp.basename(path))[0] != stamp:
            continue  # only mmengine's <timestamp>/<timestamp>.json (not vis_data/ scalars)
        try:
            data = read_json(path)
        except (json.JSONDecodeError, OSError):
            continue
        if isinstance(data, dict) and all(k in data for k in keys):
            found.append((stamp, path, data))
    if not found:
        return None
    stamp, path, data = max(found)
    return dict(path=path, metrics=data)


test_results.__test__ = False  # not a pytest test


def run_meta(run_dir: str) -> List[dict]:
    """The ``reproduce_done.json`` markers of a run (train and tests)."""
    return [read_json(p) for p in glob.glob(osp.join(run_dir, '*', DONE))]


def benchmark(run_dir: str, device: Optional[str] = None) -> Optional[dict]:
    """The ``lzu_benchmark.json`` entry of a run (CUDA preferred unless ``device`` is given), else None."""
    path = osp.join(run_dir, 'benchmark', BENCHMARK_JSON)
    if not osp.isfile(path):
        return None
    results = read_json(path)['results']
    if device:
        results = [r for r in results if r['device'].split(':')[0] == device]
    results.sort(key=lambda r: r['device'].startswith('cuda'), reverse=True)
    return results[0] if results else None


class Collator:
    """Reads the work root once per table and answers ``ours(table, row, column)``."""

    def __init__(self, work_root: str, device: Optional[str] = None):
        self.work_root = work_root
        self.device = device
        self.paper = load_paper_numbers()
        self._cache: Dict[int, dict] = {}

    def run_dir(self, row: Row) -> str:
        return osp.join(self.work_root, row.run)

    def row_values(self, table: Table, row: Row) -> dict:
        """``dict(values={column: ours}, status=str, sources={column: path}, smoke=bool, device=str)``."""
        if row.derive is not None:
            values = row.derive(self.lookup)
            return dict(values=values, status='ok' if all(v is not None for v in values.values()) else
                        'incomplete: the rows it is computed from are missing',
                        sources={}, smoke=self._derived_smoke(), device=None)
        if row.config is None:
            return dict(values={}, status=f'no config: {row.note}', sources={}, smoke=False, device=None)
        if not osp.isfile(osp.join(REPO_ROOT, row.config)):
            return dict(values={}, status=f'no config: {row.config} does not exist', sources={}, smoke=False,
                        device=None)
        run_dir = self.run_dir(row)
        values, sources, missing, device = {}, {}, [], None
        for test in row.tests:
            columns = [c for c in table.columns if not c.latency and c.test == test.name]
            if not columns:
                continue
            res = test_results(osp.join(run_dir, test.name), [c.key for c in columns])
            if res is None:
                missing.append(test.name)
                continue
            for c in columns:
                v = res['metrics'][c.key]
                values[c.name] = None if v is None else float(v) * c.scale
                sources[c.name] = res['path']
        for c in table.columns:
            if c.latency:
                lat, device = self.latency(table, row)
                if lat is None:
                    missing.append('benchmark')
                else:
                    values[c.name] = lat
                    sources[c.name] = osp.join(run_dir, 'benchmark', BENCHMARK_JSON)
        if not values:
            trained = osp.isfile(osp.join(run_dir, 'train', DONE)) or osp.isfile(osp.join(run_dir, 'train',
                                                                                          'last_checkpoint'))
            status = 'not tested' if trained else 'not trained'
        elif missing:
            status = 'incomplete: no ' + ', '.join(missing)
        else:
            status = 'ok'
        smoke = any(m.get('smoke') for m in run_meta(run_dir))
        return dict(values=values, status=status, sources=sources, smoke=smoke, device=device)

    def latency(self, table: Table, row: Row):
        """(ms, device): uniform rows their forward time; LZU rows the uniform row's forward + their added time."""
        own = benchmark(self.run_dir(row), self.device)
        if own is None:
            return None, None
        if row.adaptive:  # benchmark_adaptive.py's per-frame extra on top of the fixed-LZU row's latency
            base, device = self.latency(table, table.row(row.latency_base))
            added = own['added_ms']['median']
            return (None, None) if base is None else (base + added, device)
        if row.latency_base is None:  # a uniform model / FOVEA: its own end-to-end time
            return own['latency_ms'], own['device']
        base = benchmark(self.run_dir(table.row(row.latency_base)), own['device'].split(':')[0])
        if base is None:  # no uniform timing: the LZU model's own end-to-end time
            return own['latency_ms'], own['device']
        return base['forward_ms']['median'] + own['added_ms'], own['device']

    def _table(self, table_id: int) -> dict:
        if table_id not in self._cache:
            self._cache[table_id] = {}
            for table in TABLES[str(table_id)]:
                for row in table.rows:
                    self._cache[table_id][row.id] = self.row_values(table, row)
        return self._cache[table_id]

    def lookup(self, table_id: int, row_id: str, column: str) -> Optional[float]:
        return self._table(table_id).get(row_id, {}).get('values', {}).get(column)

    def _derived_smoke(self) -> bool:
        return any(v['smoke'] for t in self._cache.values() for v in t.values())

    def collate(self, table: Table) -> dict:
        """Every row (paper order) with ours / paper / difference per column, the missing rows, smoke flag."""
        rows = []
        for row in table.rows:
            res = self.row_values(table, row)
            cells = {}
            for c in table.columns:
                paper = self.paper.get((table.id, row.id, c.name))
                ours = res['values'].get(c.name)
                diff = None if ours is None or paper is None or math.isnan(ours) else ours - paper['value']
                if c.latency and not str(res['device'] or '').startswith('cuda'):
                    diff = None  # the paper timed on a GPU: no difference against a CPU time
                cells[c.name] = dict(ours=ours, paper=None if paper is None else paper['value'], diff=diff,
                                     source=None if paper is None else paper['source'],
                                     ours_from=res['sources'].get(c.name))
            rows.append(dict(row=row, status=res['status'], smoke=res['smoke'], device=res['device'], cells=cells))
        missing = [r for r in rows if r['status'] != 'ok']
        return dict(table=table, rows=rows, missing=missing, smoke=any(r['smoke'] for r in rows))


def _fmt(v: Optional[float], digits: int = 1) -> str:
    if v is None:
        return '—'
    if isinstance(v, float) and math.isnan(v):
        return 'nan'
    return f'{v:.{digits}f}'


def _cell(cell: dict) -> str:
    ours, paper, diff = cell['ours'], cell['paper'], cell['diff']
    text = f'{_fmt(ours)} / {_fmt(paper)}'
    if diff is not None:
        text += f' ({diff:+.1f})'
    return text


def to_markdown(result: dict) -> str:
    table: Table = result['table']
    lines = [f'### {table.title}', '']
    if result['smoke']:
        lines += ['**SMOKE RUN**: "ours" comes from 2 training iterations of randomly initialised models on the '
                  'sample data in `../shared/data` (not the paper\'s datasets): it checks the workflow, the numbers '
                  'mean nothing.', '']
    lines += ['Cells: ours / paper (ours − paper); — = not available.', '']
    head = list(table.label_columns) + [c.name for c in table.columns]
    lines.append('| ' + ' | '.join(head) + ' |')
    lines.append('|' + '---|' * len(head))
    for r in result['rows']:
        label = list(r['row'].label)
        lines.append('| ' + ' | '.join(label + [_cell(r['cells'][c.name]) for c in table.columns]) + ' |')
    devices = sorted({r['device'] for r in result['rows'] if r['device']})
    notes = list(table.notes)
    if devices:
        notes.append(f'Our latency measured on: {", ".join(devices)}'
                     + (' (no difference shown against the paper\'s GPU times).' if 'cpu' in devices else '.'))
    if any(c['ours'] is not None and math.isnan(c['ours']) for r in result['rows'] for c in r['cells'].values()):
        notes.append('nan: the class occurs neither in the predictions nor in the ground truth of the evaluated '
                     'images.')
    sources = sorted({c['source'] for r in result['rows'] for c in r['cells'].values() if c['source']})
    if sources:
        notes.append('Paper numbers: ' + '; '.join(sources) + ' (tools/reproduce/paper_numbers.csv).')
    lines += [''] + [f'* {n}' for n in notes]
    if result['missing']:
        lines += ['', f'Missing rows ({len(result["missing"])} of {len(result["rows"])}):', '']
        lines += [f'* {" ".join(r["row"].label)} (`{r["row"].id}`): {r["status"]}' for r in result['missing']]
    return '\n'.join(lines) + '\n'


def write_csv(result: dict, path: str) -> None:
    table: Table = result['table']
    with open(path, 'w', newline='') as f:
        w = csv.writer(f, lineterminator='\n')
        w.writerow(['table', 'row', 'label', 'column', 'ours', 'paper', 'difference', 'paper_source', 'status',
                    'smoke', 'ours_from'])
        for r in result['rows']:
            for c in table.columns:
                cell = r['cells'][c.name]
                w.writerow([table.id, r['row'].id, ' '.join(r['row'].label), c.name,
                            '' if cell['ours'] is None else f"{cell['ours']:.4f}",
                            '' if cell['paper'] is None else cell['paper'],
                            '' if cell['diff'] is None else f"{cell['diff']:.4f}", cell['source'] or '', r['status'],
                            int(r['smoke']), cell['ours_from'] or ''])


def collate_tables(table_ids: List[str], work_root: str, out_dir: str, device: Optional[str] = None,
                   log=print) -> List[dict]:
    """Collate ``table_ids`` ('1'..'5') from ``work_root`` into ``out_dir``; returns the collated results."""
    os.makedirs(out_dir, exist_ok=True)
    collator = Collator(work_root, device)
    results = []
    for tid in table_ids:
        if tid not in TABLES:
            raise ValueError(f'unknown table {tid!r}; expected one of {sorted(TABLES)}')
        for table in TABLES[tid]:
            result = collator.collate(table)
            md, csv_path = (osp.join(out_dir, table_slug(table) + ext) for ext in ('.md', '.csv'))
            with open(md, 'w') as f:
                f.write(to_markdown(result))
            write_csv(result, csv_path)
            done = len(result['rows']) - len(result['missing'])
            log(f'{table_slug(table)}: {done}/{len(result["rows"])} rows complete'
                f'{" (SMOKE)" if result["smoke"] else ""} -> {md}, {csv_path}')
            for r in result['missing']:
                log(f'  missing: {r["row"].id}: {r["status"]}')
            results.append(dict(result, markdown=md, csv=csv_path))
    return results


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Collate paper tables (ours / paper / difference) from work dirs')
    parser.add_argument('tables', nargs='+', help='table numbers: 1 2 3 4 5')
    parser.add_argument('--work-root', default='work_dirs/reproduce', help='where reproduce.py wrote the runs')
    parser.add_argument('--out-dir', help='where to write table<N>.md / .csv (default: WORK_ROOT/tables)')
    parser.add_argument('--device', help='latency from this device of lzu_benchmark.json (default: cuda if timed)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    return collate_tables(args.tables, args.work_root, args.out_dir or osp.join(args.work_root, 'tables'),
                          args.device)


if __name__ == '__main__':
    main()
