"""Streaming least squares from sufficient statistics: equal to the in-memory fit, from collections, resumable; the
fit_scale benchmark's quick mode runs."""
import json, subprocess, sys
from pathlib import Path

import pytest
import torch

from taylormlp.adapt import site_from_path
from taylormlp.collect import collect
from taylormlp.stream import (LstsqStatistics, ShardSource, accumulate, fit_streaming, lowrank_from_statistics,
                              solve_lstsq)
from taylormlp.taylor import LinearActLinear, TaylorMLP, expand
from taylormlp.variants import LowRankTaylorMLP

ROOT = Path(__file__).resolve().parents[1]

@pytest.fixture(scope='module')
def problem():
    torch.manual_seed(3)
    block = LinearActLinear(torch.nn.Linear(24, 64), torch.nn.GELU(), torch.nn.Linear(64, 10)).eval()
    x = torch.randn(5000, 24) + torch.randn(12, 24).repeat_interleave(417, 0)[:5000] * 2
    with torch.no_grad(): y = block(x)
    return block, x, y, x[torch.randperm(5000)[:12]].clone()

@pytest.mark.parametrize('order', [1, 2])
def test_equals_in_memory_fit(problem, order):
    block, x, y, centres = problem
    source = ShardSource.from_tensors(x, y, rows_per_shard=1234)        # shards and chunks split every cluster
    stats = accumulate(source, centres, order=order)
    stats_small_chunks = LstsqStatistics(centres, 10, order, chunk_rows=333)
    for i in range(len(source)): stats_small_chunks.update(*source.read(i))
    torch.testing.assert_close(stats.gram, stats_small_chunks.gram, rtol=1e-12, atol=1e-9)
    ref = TaylorMLP.fit(block, x, centres=centres, order=order, coefficients='lstsq', ridge=1e-2)
    got = solve_lstsq(stats, expand(block, centres, order=order), ridge=1e-2)
    for name in ('slopes', 'intercepts', 'hessian_diags'):
        torch.testing.assert_close(getattr(got, name), getattr(ref, name), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got(x), ref(x), rtol=1e-4, atol=1e-5)
    assert got.meta['n_fit'] == ref.meta['n_fit'] == 5000
    # the statistics' size does not depend on the number of tokens
    assert stats.nbytes == 8 * 12 * (order * 24 + 1) * (order * 24 + 1 + 10)

def test_lowrank_and_empty_clusters(problem):
    block, x, y, centres = problem
    far = torch.cat([centres, torch.full((2, 24), 1e3)])                 # two centres no token is nearest to
    stats = accumulate(ShardSource.from_tensors(x, y, rows_per_shard=2000), far)
    assert (stats.counts[-2:] == 0).all()
    got = solve_lstsq(stats, expand(block, far, order=1))
    ref = TaylorMLP.fit(block, x, centres=far, coefficients='lstsq')
    torch.testing.assert_close(got(x), ref(x), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got.slopes[-2:], expand(block, far[-2:], order=1).jacobians)   # tangent kept
    low = lowrank_from_statistics(got, stats, 4)
    torch.testing.assert_close(low(x), LowRankTaylorMLP.from_taylor(got, 4, x)(x), rtol=1e-4, atol=1e-4)

def test_from_collections_with_and_without_outputs(problem, tmp_path):
    block, x, y, centres = problem
    model = torch.nn.Sequential(torch.nn.Identity(), block).eval()
    batches = [(x[i:i + 500],) for i in range(0, 5000, 500)]
    site = site_from_path(model, '1')
    collect(model, [site], batches[:6], tmp_path / 'rank0', shard_tokens=800, progress=False)   # two "ranks"
    collect(model, [site], batches[6:], tmp_path / 'rank1', shard_tokens=800, progress=False, keep_outputs=False)
    source = ShardSource.from_collection([tmp_path / 'rank0', tmp_path / 'rank1'], '1')
    assert source.n_rows == 5000 and source.read(len(source) - 1)[1] is None
    with pytest.raises(ValueError, match='no recorded outputs'):
        accumulate(ShardSource.from_collection(tmp_path / 'rank1', '1'), centres)
    got = fit_streaming(block, source, centres=centres)                   # evaluates the block where outputs are missing
    ref = TaylorMLP.fit(block, x, centres=centres, coefficients='lstsq')
    torch.testing.assert_close(got(x), ref(x), rtol=1e-4, atol=1e-5)
    got_k = fit_streaming(block, source, k=12, clustering='torch', sample_per_centre=100, lloyd_passes=1,
                          checkpoint=tmp_path / 'ckpt')
    assert (tmp_path / 'ckpt' / 'centres.safetensors').exists() and got_k.k == 12
    again = fit_streaming(block, source, k=12, checkpoint=tmp_path / 'ckpt')   # resumes: same centres, no new pass
    torch.testing.assert_close(again.centres, got_k.centres)
    torch.testing.assert_close(again(x), got_k(x))
    with pytest.raises(ValueError, match='k=12 centres but k=8'):
        fit_streaming(block, source, k=8, checkpoint=tmp_path / 'ckpt')

def test_bad_inputs(problem):
    block, x, y, centres = problem
    stats = LstsqStatistics(centres, 10, order=1)
    with pytest.raises(ValueError, match='cannot raise'): stats.restrict(2)
    with pytest.raises(ValueError, match='expected d_out=10'): stats.update(x, y[:, :3])
    with pytest.raises(ValueError, match='orders 0, 1 and 2'): LstsqStatistics(centres, 10, order=3)
    with pytest.raises(ValueError, match='pass k'): fit_streaming(block, ShardSource.from_tensors(x, y))
    with pytest.raises(ValueError, match='sequential'):
        from unittest import mock
        with mock.patch('taylormlp.stream.world', return_value=(0, 2)):
            fit_streaming(block, ShardSource.from_tensors(x, y), k=4, clustering='online')

def test_fit_scale_quick(tmp_path):
    "Smoke run of benchmarks/fit_scale.py --quick (synthetic, 1 and 2 processes): rows with every field."
    out = tmp_path / 'fit_scale.json'
    done = subprocess.run([sys.executable, str(ROOT / 'benchmarks/fit_scale.py'), '--quick', '--task', 'lstsq',
                           '--out', str(out), '--work', str(tmp_path / 'work')], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    rows = results['rows']
    assert [(r['task'], r['processes']) for r in rows] == [('lstsq', 1), ('lstsq', 2)]
    for r in rows:
        for key in ('backend', 'd', 'k', 'n_tokens', 'seconds', 'tokens_per_s', 'peak_rss_bytes', 'isa', 'threads',
                    'load_avg_1m', 'data'):
            assert key in r, key
        assert r['n_fit'] == r['n_tokens'] == 20000 and r['tokens_per_s'] > 0
    assert rows[1]['max_abs_diff_vs_1_process'] <= 1e-3 * rows[1]['output_scale']
    assert {p['n_tokens'] for p in results['projection']['rows']} == {10**8, 10**9}
