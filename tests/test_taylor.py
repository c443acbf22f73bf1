"""Property-based and integration tests of the expansion engine and TaylorMLP (taylormlp.taylor)."""
import os, signal, subprocess, sys, textwrap, time
from pathlib import Path

import pytest
import torch
from torch import nn
from hypothesis import given, settings, strategies as st, HealthCheck

from taylormlp.taylor import TaylorMLP, Expansion, LinearActLinear, expand, assign, multiply_adds

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _block(d_in, d_out, hidden, act, seed):
    torch.manual_seed(seed)
    return LinearActLinear(nn.Linear(d_in, hidden), act(), nn.Linear(hidden, d_out)).double()


dims = st.integers(1, 7)
acts = st.sampled_from([nn.GELU, nn.Tanh, nn.SiLU, nn.ReLU])


@SETTINGS
@given(d_in=dims, d_out=dims, k=st.integers(1, 6), n=st.integers(1, 40), seed=st.integers(0, 10**6))
def test_affine_block_is_exact_at_order_one(d_in, d_out, k, n, seed):
    torch.manual_seed(seed)
    affine = nn.Linear(d_in, d_out).double()
    centres = torch.randn(k, d_in, dtype=torch.float64)
    model = TaylorMLP.from_expansion(expand(affine, centres, order=1))
    x = 5 * torch.randn(n, d_in, dtype=torch.float64)
    torch.testing.assert_close(model(x), affine(x).detach(), rtol=1e-9, atol=1e-9)


@SETTINGS
@given(d_in=dims, d_out=dims, k=st.integers(1, 6), order=st.sampled_from([0, 1, 2]), act=acts,
       seed=st.integers(0, 10**6))
def test_reproduces_block_at_expansion_points(d_in, d_out, k, order, act, seed):
    block = _block(d_in, d_out, 9, act, seed)
    centres = torch.randn(k, d_in, dtype=torch.float64)
    model = TaylorMLP.from_expansion(expand(block, centres, order=order))
    torch.testing.assert_close(model(centres), block(centres).detach(), rtol=1e-9, atol=1e-9)


@SETTINGS
@given(d_in=dims, d_out=dims, k=st.integers(2, 8), order=st.sampled_from([0, 1, 2]), act=acts,
       seed=st.integers(0, 10**6))
def test_permutation_of_centres_changes_nothing(d_in, d_out, k, order, act, seed):
    block = _block(d_in, d_out, 9, act, seed)
    e = expand(block, torch.randn(k, d_in, dtype=torch.float64), order=order)
    perm = torch.randperm(k)
    permuted = Expansion(*(None if t is None else t[perm] for t in (e.centres, e.values, e.jacobians, e.hessian_diags)))
    x = torch.randn(50, d_in, dtype=torch.float64)
    torch.testing.assert_close(TaylorMLP.from_expansion(permuted)(x), TaylorMLP.from_expansion(e)(x))


@SETTINGS
@given(n=st.integers(1, 300), split=st.integers(1, 299), order=st.sampled_from([0, 1, 2]), seed=st.integers(0, 10**6))
def test_batch_size_invariance_and_grouped_equals_naive(n, split, order, seed):
    block = _block(6, 4, 16, nn.GELU, seed)
    e = expand(block, torch.randn(12, 6, dtype=torch.float64), order=order)
    grouped = TaylorMLP.from_expansion(e, gather_bytes=0)         # always the per-cluster path
    gathered = TaylorMLP.from_expansion(e, gather_bytes=2**40)    # always the per-token gather path
    x = torch.randn(n, 6, dtype=torch.float64)
    y, index, _ = grouped(x, return_assignment=True)
    torch.testing.assert_close(y, e(x, index))                    # naive per-token reference
    torch.testing.assert_close(gathered(x), y)
    s = min(split, n)
    torch.testing.assert_close(torch.cat([grouped(x[:s]), grouped(x[s:])]) if s < n else grouped(x), y)


@SETTINGS
@given(n=st.integers(1, 500), k=st.integers(1, 50), chunk=st.integers(1, 64), seed=st.integers(0, 10**6))
def test_assign_matches_cdist(n, k, chunk, seed):
    g = torch.Generator().manual_seed(seed)
    x, c = torch.randn(n, 5, generator=g, dtype=torch.float64), torch.randn(k, 5, generator=g, dtype=torch.float64)
    index, distance = assign(x, c, chunk_size=chunk)
    ref = torch.cdist(x, c)
    torch.testing.assert_close(distance, ref.min(1).values)
    assert (ref.gather(1, index[:, None]).squeeze(1) - ref.min(1).values).abs().max() < 1e-9


def test_lstsq_fit_with_huge_ridge_falls_back_to_tangent():
    block = _block(5, 3, 12, nn.GELU, 0).float()
    x = torch.randn(500, 5)
    taylor = TaylorMLP.fit(block, x, k=4, seed=0)
    shrunk = TaylorMLP.fit(block, x, k=4, centres=taylor.centres, coefficients='lstsq', ridge=1e9)
    torch.testing.assert_close(shrunk.slopes, taylor.slopes, rtol=1e-3, atol=1e-4)


def test_fit_is_deterministic():
    block = _block(5, 3, 12, nn.GELU, 0).float()
    x = torch.randn(800, 5)
    a, b = (TaylorMLP.fit(block, x, k=6, order=2, seed=3) for _ in range(2))
    for n in ('centres', 'slopes', 'intercepts', 'hessian_diags'):
        assert torch.equal(getattr(a, n), getattr(b, n)), n



def test_assigner_hook_replaces_the_exact_search(tmp_path):
    block = _block(5, 3, 12, nn.GELU, 0).float()
    x = torch.randn(300, 5)
    tm = TaylorMLP.fit(block, x, k=6, order=2)
    y, index, _ = tm(x, return_assignment=True)

    class NextCentre(nn.Module):
        "A deliberately different assignment (each row's nearest centre + 1), with its own multiply-add count."
        multiply_adds = 11
        def __init__(self):
            super().__init__()
            self.calls = 0
        def forward(self, rows):
            self.calls += 1
            i = (assign(rows, tm.centres)[0] + 1) % tm.k
            return i, (rows - tm.centres[i]).norm(dim=1)

    tm.assigner = NextCentre()
    shifted = (index + 1) % tm.k
    y2, index2, distance2 = tm(x.reshape(30, 10, 5), return_assignment=True)
    assert tm.assigner.calls == 1 and index2.shape == (30, 10)
    assert torch.equal(index2.reshape(-1), shifted)
    torch.testing.assert_close(y2.reshape(-1, 3), tm.evaluate(x, shifted))
    torch.testing.assert_close(distance2.reshape(-1), (x - tm.centres[shifted]).norm(dim=1))
    assert multiply_adds(tm) == 11 + 2 * 3 * 5
    torch.testing.assert_close(tm.gate(block, radii=0.0)(x), block(x).detach())    # the gate reads its distances
    tm.gate(None).save(tmp_path / 'tm.safetensors')
    loaded = TaylorMLP.load(tmp_path / 'tm.safetensors')             # the assigner is not saved: exact search again
    assert loaded.assigner is None and multiply_adds(loaded) == 6 * 5 + 2 * 3 * 5
    torch.testing.assert_close(loaded(x), y)


def test_progress_bars_name_the_work_and_change_nothing(capsys):
    block = _block(5, 3, 12, nn.GELU, 0).float()
    x = torch.randn(400, 5)
    plain = TaylorMLP.fit(block, x, k=6, order=2, coefficients='lstsq')
    assert capsys.readouterr().err == ''
    shown = TaylorMLP.fit(block, x, k=6, order=2, coefficients='lstsq', progress=True)
    err = capsys.readouterr().err
    for words in ('TorchKMeans', 'expand: values, Jacobians, Hessian diagonals at 6 centres',
                  'lstsq refit: one ridge solve per cluster'):
        assert words in err, (words, err)
    for n in ('centres', 'slopes', 'intercepts', 'hessian_diags'):
        assert torch.equal(getattr(shown, n), getattr(plain, n)), n


def test_nan_check_catches_bad_values_only():
    tm = TaylorMLP.fit(_block(5, 3, 12, nn.GELU, 0).float(), torch.randn(200, 5), k=4)
    for bad in (float('nan'), float('inf'), -float('inf')):
        x = torch.randn(7, 5)
        x[3, 2] = bad
        with pytest.raises(ValueError, match='1 NaN/Inf values'): tm(x)
        assert tm(x, check_finite=False).shape == (7, 3)
    tm(torch.full((4, 5), 3e38))     # finite, though its sum overflows: no error


_SCRIPT = """
import sys, time, torch
from torch import nn
from taylormlp.taylor import expand
class SlowMLP(nn.Module):
    def __init__(self):
        super().__init__(); torch.manual_seed(0)
        self.f = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3)).double()
    def forward(self, x):
        time.sleep(float(sys.argv[2]))
        return self.f(x)
torch.manual_seed(1)
centres = torch.randn(40, 6, dtype=torch.float64)
e = expand(SlowMLP(), centres, order=2, out_dir=sys.argv[1], centres_per_file=5)
torch.save(e.tensors(), sys.argv[1] + '/result.pt')
"""


def test_expansion_resumes_after_sigkill(tmp_path):
    script = tmp_path / 'expand.py'
    script.write_text(_SCRIPT)
    out = tmp_path / 'chunks'
    proc = subprocess.Popen([sys.executable, str(script), str(out), '0.3'])
    deadline = time.time() + 120
    while time.time() < deadline and len(list(out.glob('*.safetensors'))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = {p.name: p.stat().st_mtime_ns for p in out.glob('*.safetensors')}
    assert 2 <= len(done) < 8, f"the kill should land midway, found {len(done)} finished chunks"
    subprocess.run([sys.executable, str(script), str(out), '0'], check=True)
    for name, mtime in done.items():   # finished chunks were loaded, not recomputed
        assert (out / name).stat().st_mtime_ns == mtime
    resumed = torch.load(out / 'result.pt')
    fresh = tmp_path / 'fresh'
    subprocess.run([sys.executable, str(script), str(fresh), '0'], check=True)
    for n, t in torch.load(fresh / 'result.pt').items():
        assert torch.equal(resumed[n], t), n
