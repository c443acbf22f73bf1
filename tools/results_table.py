"""Print the README's headline table (markdown) from the study results in data/results/study_*.json.

python tools/results_table.py            # prints the table

One line per model and method at the study's k (every MLP block replaced at once), plus the controls and baselines,
so the table always shows T-MLP beside what it must beat.
"""
import json, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
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


if __name__ == '__main__':
    print(table(*sys.argv[1:]))
