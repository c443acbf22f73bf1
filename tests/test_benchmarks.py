"""The benchmark scripts run end to end on tiny settings and write what the speed page reads (no timing asserted)."""
import importlib.util, json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f'bench_{name}', ROOT / 'benchmarks' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

def test_speed_benchmark_smoke(tmp_path):
    speed = load_script('speed')
    out = tmp_path / 'speed.json'
    result = speed.main(['--quick', '--shapes', 'CIFAR VGG16 head', 'MiniLM MLP', '--ks', '16', '--batch', '64',
                         '--variants', 'order 1', 'order 2 diag', speed.LOW_RANK, '--out', str(out)])
    saved = json.loads(out.read_text())
    assert saved['rows'] and saved['targets'] and saved['command'].startswith('python benchmarks/speed.py')
    got = {(r['shape'], r['variant'], r['regime'], r['route']) for r in saved['rows']}
    cpp = speed.load_extension() is not None
    for regime in (speed.BATCH1, speed.BATCHN):
        assert ('MiniLM MLP', 'order 2 diag', regime, 'TaylorMLP.forward') in got
        assert ('MiniLM MLP', speed.LOW_RANK, regime, 'eager') in got
        assert (('MiniLM MLP', speed.LOW_RANK, regime, 'cpp') in got) == cpp
    # the CIFAR head's 10-wide output leaves rank 1: skipped with its reason, not timed
    assert not any(r['shape'] == 'CIFAR VGG16 head' and r['variant'] == speed.LOW_RANK for r in saved['rows'])
    assert any(s['shape'] == 'CIFAR VGG16 head' and 'rank 1' in s['reason'] for s in saved['skipped'])
    import torch
    for r in saved['rows']:
        assert r['efficiency'] == pytest.approx(r['speed_ratio'] / r['mac_ratio'])
        # the threads each row was timed on (torch.utils.benchmark.Timer would use one unless told)
        assert r['threads'] == (1 if r['regime'] == speed.BATCH1 else torch.get_num_threads())
        # the traffic floor: the row's table bytes over the bandwidth measured on its threads
        bandwidth = saved['hardware']['stream_bandwidth_gb_s'][str(r['threads'])]
        mean = (bandwidth['start'] + bandwidth['end']) / 2 * 1e9
        assert r['traffic_floor_seconds'] == pytest.approx(r['traffic_bytes'] / mean, rel=0.01)
        assert r['efficiency_at_floor'] == pytest.approx(r['dense_seconds'] / r['traffic_floor_seconds'] / r['mac_ratio'])
        assert r['seconds'] > 0 and r['dense_seconds'] > 0
    # float16 tables: a C++ route beside the float32 one for the affine variants, with its accuracy cost and the
    # targets evaluated again with it allowed
    half = [r for r in saved['rows'] if r['route'] == speed.CPP16]
    assert bool(half) == cpp
    for r in half:
        assert r['table_dtype'] == 'float16' and r['variant'] != speed.LOW_RANK and 0 < r['half_error'] < 1e-2
        twin = next(t for t in saved['rows'] if t['route'] == 'cpp' and
                    all(t[f] == r[f] for f in ('shape', 'k', 'variant', 'regime')))
        assert r['tmlp_bytes'] < twin['tmlp_bytes'] and r['traffic_ratio'] > twin['traffic_ratio']
    assert all(r['table_dtype'] == 'float32' and r['half_error'] is None for r in saved['rows'] if r not in half)
    assert any('float16 tables allowed' in t['target'] for t in saved['targets']) == cpp
    assert all(x['best']['table_dtype'] == 'float32'
               for x in speed.best_rows(saved['rows'], speed.BATCHN).values() if 'best' in x)
    low = next(r for r in saved['rows'] if r['variant'] == speed.LOW_RANK)
    rank = speed.low_rank_of(384, 384)
    assert low['tmlp_macs'] == 16 * 384 + rank * (384 + 384)
    # every (shape, k, variant) has a default-path row (what model(x) runs) for the speed page
    for regime in (speed.BATCH1, speed.BATCHN):
        assert all('forward' in slot for slot in speed.best_rows(saved['rows'], regime).values())

def test_fit_cost_smoke(tmp_path):
    "The fit-cost script on tiny random blocks: every stage reports time, CPU time and peak memory (no timing asserted)."
    fit_cost = load_script('fit_cost')
    out = tmp_path / 'fit_cost.json'
    result = fit_cost.main(['--mode', 'synthetic', '--blocks', '1', '--k', '4', '--n', '300', '--max-iter', '2',
                            '--work', str(tmp_path / 'work'), '--out', str(out)])
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(result)) and saved['mode'] == 'synthetic'
    assert [s['stage'] for s in saved['stages']] == ['cluster', 'expand', 'expand', 'fit']
    for s in saved['stages']:
        assert s['seconds'] > 0 and s['cpu_seconds'] >= 0 and s['peak_rss_mb'] >= s['rss_after_imports_mb'] > 0
        assert len(s['per_block']) == 1
    expand2 = saved['stages'][2]
    assert expand2['order'] == 2 and expand2['table_bytes'] == expand2['expected_table_bytes_per_block']
    # the real-model mode says why it cannot run, or nothing when it can
    reason = fit_cost.minilm_unavailable()
    assert reason is None or 'STS-B' in reason or 'MiniLM' in reason
