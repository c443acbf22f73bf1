"""Print the README's headline table (markdown) from the study results in data/results/study_*.json.

python tools/results_table.py            # the README headline (one line per model)
python tools/results_table.py --full     # every row at the study's k

One line per model and method at the study's k (every MLP block replaced at once), plus the controls and baselines,
so the table always shows T-MLP beside what it must beat.
"""
import json, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOWER_IS_BETTER = {'perplexity'}   # metrics where a smaller value is better (relative_to_dense > 1 is worse)
SHOWN = ('taylor_o0', 'taylor_o1', 'taylor_o2', 'lstsq_o1', 'gated', 'lowrank', 'refined', 'k1_tangent', 'global_linear',
         'svd', 'int8')


def _shown(r, k):
    if r['method'] == 'gated': return r.get('k') == k
    if r['method'].startswith('lowrank'): return r.get('k') == k
    if r['method'] in ('k1_tangent', 'global_linear', 'int8'): return True
    return r['method'] in SHOWN and r.get('k') == k


def table(results_dir=ROOT / 'data' / 'results') -> str:
    lines = ['| model (task) | method | k | all MLP blocks replaced | vs dense | MAC ratio | notes |',
             '|---|---|---|---|---|---|---|']
    for p in sorted(Path(results_dir).glob('study_*.json')):
        r = json.loads(p.read_text())
        d, k = r['dense'], r['settings']['k']
        lines.append(f"| **{r['settings']['model']}** ({r['config']['dataset']} {d['metric']}) | dense | | "
                     f"**{d['value']:.4f}** | 1 | 1x | {d['macs']:,} MACs/token |")
        for row in r['rows']:
            if row['method'] == 'dense' or not _shown(row, k): continue
            notes = ', '.join(f"{n} {row[n]:.2f}" for n in ('routed', 'recall') if row.get(n) is not None)
            lines.append(f"| | {row['method']} | {row.get('k') or ''} | {row['value']:.4f} | "
                         f"{row['relative_to_dense']:.3f} | {row['mac_ratio']:.1f}x | {notes} |")
    return '\n'.join(lines)


def _cell(row):
    return f"{row['value']:.4g} ({row['mac_ratio']:.1f}x)" if row else 'n/a'


def headline(results_dir=ROOT / 'data' / 'results') -> str:
    "One line per model: T-MLP at the study's k beside its controls and the baselines at matched MACs."
    lines = ['| model (task, metric) | dense | Taylor order 1 | Taylor order 2 | lstsq | best fitted variant (best metric at >= 4x) | '
             'one global linear map | truncated SVD, same MACs as lstsq | int8 (torchao) |', '|---|---|---|---|---|---|---|---|---|']
    for p in sorted(Path(results_dir).glob('study_*.json')):
        r = json.loads(p.read_text())
        d, k = r['dense'], r['settings']['k']
        rows = {x['key']: x for x in r['rows']}
        fitted = [x for x in r['rows'] if x['family'] == 'fitted' and x.get('k') == k and x['mac_ratio'] >= 4]
        best = (min if d['metric'] in LOWER_IS_BETTER else max)(fitted, key=lambda x: x['value'], default=None)
        lines.append(f"| {r['settings']['model']} ({r['config']['dataset']}, {d['metric']}) | {d['value']:.4g} | "
                     f"{_cell(rows.get(f'taylor_o1|k={k}'))} | {_cell(rows.get(f'taylor_o2|k={k}'))} | "
                     f"{_cell(rows.get(f'lstsq_o1|k={k}'))} | "
                     + (f"{best['method']}: {_cell(best)}" if best else 'n/a') + " | "
                     f"{_cell(rows.get('global_linear'))} | {_cell(rows.get(f'svd|k={k}'))} | {_cell(rows.get('int8'))} |")
    return '\n'.join(lines)


if __name__ == '__main__':
    args = [a for a in sys.argv[1:] if a != '--full']
    print(table(*args) if '--full' in sys.argv else headline(*args))
