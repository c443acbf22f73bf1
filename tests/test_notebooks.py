"""The six stage notebooks run headless under papermill (through the CLI) on small parameters, and their saved
results say what the method promises: reproduction at the expansion points, order 1 beating order 0 on held-out
inputs, and error growing with the distance to the expansion point."""
import json, os, subprocess, sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
PARAMS = dict(model='digits_vit', ks='4,16', k=16, fit_samples=600, eval_samples=200, max_tokens=6000, seed=0)


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp('run') / 'digits_vit'
    args = [sys.executable, '-m', 'taylormlp.pipeline', 'run', 'all', '--out', str(out), '--timeout', '900']
    for n, v in PARAMS.items(): args += ['-p', n, str(v)]
    proc = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, f"CLI failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert 'Executed notebooks:' in proc.stdout and 'Results:' in proc.stdout
    return out


def test_every_stage_notebook_executed(run_dir):
    from taylormlp.pipeline import NOTEBOOKS
    for nb in NOTEBOOKS.values():
        data = json.loads((run_dir / 'notebooks' / nb).read_text())
        errors = [o for c in data['cells'] if c['cell_type'] == 'code' for o in c.get('outputs', [])
                  if o.get('output_type') == 'error']
        assert not errors, f"{nb} has error outputs"
        plots = [o for c in data['cells'] if c['cell_type'] == 'code' for o in c.get('outputs', [])
                 if 'application/vnd.plotly.v1+json' in o.get('data', {})]
        assert plots, f"{nb} produced no plotly figure"
    for stage in ('data', 'adapt', 'weights', 'collect', 'cluster', 'validate'):
        assert (run_dir / f'{stage}.json').exists()


def test_saved_expansion_reproduces_the_block_at_its_centres(run_dir):
    from taylormlp.pipeline import RunConfig, load_run_model, select_sites
    from taylormlp.taylor import TaylorMLP
    cfg = RunConfig(out_dir=str(run_dir), **{n: v for n, v in PARAMS.items()})
    model = load_run_model(cfg)
    sites = select_sites(model)
    assert sites
    for s in sites:
        for order in (0, 1, 2):
            tm = TaylorMLP.load(run_dir / 'expansions' / s.name / f'taylor_o{order}_k16.safetensors', site=s.name,
                                d_in=s.d_in)
            with torch.no_grad():
                torch.testing.assert_close(tm(tm.centres), s.function(tm.centres), rtol=1e-4, atol=1e-4)


def test_order_one_beats_order_zero_and_error_grows_with_distance(run_dir):
    r = json.loads((run_dir / 'validate.json').read_text())
    rows = {(t['site'], t['name']): t for t in r['token_errors']}
    sites = {t['site'] for t in r['token_errors']}
    for site in sites:
        for k in (4, 16):
            o0, o1 = rows[(site, f'taylor_o0_k{k}')], rows[(site, f'taylor_o1_k{k}')]
            assert o1['mean_rel_error'] < o0['mean_rel_error'], (site, k, o0, o1)
            assert o1['distance_error_rho'] > 0.2, (site, k, o1['distance_error_rho'])
        assert rows[(site, 'taylor_o1_k16')]['mean_rel_error'] < rows[(site, 'taylor_o1_k4')]['mean_rel_error']


def test_task_results_are_complete_and_honest(run_dir):
    r = json.loads((run_dir / 'validate.json').read_text())
    assert 0.8 < r['dense'] <= 1.0, "the embedded digits ViT should be a real classifier"
    scopes = {t['scope'] for t in r['task']}
    assert 'all' in scopes and len(scopes) == len(r['sites']) + 1
    for t in r['task']:
        assert 0 <= t['value'] <= 1 and 0 <= t['agreement'] <= 1
    assert r['provenance']['seed'] == 0 and r['provenance']['torch'] == torch.__version__
