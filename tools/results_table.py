"""Print the README's headline table (markdown) from data/results/*.json: all sites replaced, each method at the run's k.

python tools/results_table.py            # prints the table
"""
import json, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def table(results_dir=ROOT / 'data' / 'results') -> str:
    lines = ['| model (task) | dense | method, k | all blocks replaced | vs dense | MACs/token/block |',
             '|---|---|---|---|---|---|']
    for p in sorted(Path(results_dir).glob('*.json')):
        r = json.loads(p.read_text())
        if 'task' not in r: continue
        dense_macs = max(t['dense_macs'] for t in r['token_errors'])
        for t in (t for t in r['task'] if t['scope'] == 'all'):
            lines.append(f"| {r['config']['model']} ({r['config']['dataset']} {r['metric']}) | {r['dense']:.4f} | "
                         f"{t['name'].rsplit('_k', 1)[0]}, {t['k']} | {t['value']:.4f} | {t['relative_to_dense']:.3f} | "
                         f"{t['macs']:,} ({dense_macs:,}) |")
    return '\n'.join(lines)


if __name__ == '__main__':
    print(table(*sys.argv[1:]))
