"""Integration tests for taylormlp.cluster: recovery of known structure, agreement with scikit-learn, streaming."""
import logging

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.datasets import load_digits, make_blobs

from taylormlp.cluster import (KMEANS_METHODS, KMeansResult, OnlineKMeans, TorchKMeans, kmeans, kmeans_plus_plus,
                               nearest_centre, pairwise_sqdist)

N_BLOBS, D = 5, 16


def match_error(found, truth) -> float:
    "Largest distance between centres matched one-to-one by the Hungarian algorithm."
    cost = torch.cdist(torch.as_tensor(found).double().cpu(), torch.as_tensor(truth).double().cpu())
    rows, cols = linear_sum_assignment(cost.numpy())
    return float(cost[rows, cols].max())


@pytest.fixture(scope='module')
def blobs():
    x, y, centres = make_blobs(n_samples=3000, centers=N_BLOBS, n_features=D, cluster_std=1.0, random_state=0,
                               return_centers=True)
    return torch.tensor(x, dtype=torch.float32), torch.tensor(centres, dtype=torch.float32)


@pytest.fixture(scope='module')
def digits():
    return torch.tensor(load_digits().data, dtype=torch.float32)


@pytest.fixture(scope='module')
def digits_reference(digits):
    "scikit-learn KMeans inertia on digits, k -> inertia (n_init=3)."
    return {k: kmeans(digits, k, method='sklearn', n_init=3, seed=0).inertia for k in (10, 20)}


def blob_stream(centres, n_batches, batch_size=500, seed=1, which=None):
    "Batches drawn on the fly from unit-variance blobs around `centres` (optionally only the blobs in `which`)."
    g = torch.Generator().manual_seed(seed)
    pool = torch.arange(len(centres)) if which is None else torch.tensor(which)
    for _ in range(n_batches):
        pick = pool[torch.randint(len(pool), (batch_size,), generator=g)]
        yield centres[pick] + torch.randn(batch_size, centres.shape[1], generator=g)


# --- distances ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize('chunk_size', [1, 7, None])
def test_distances_match_cdist(chunk_size):
    g = torch.Generator().manual_seed(0)
    x, c = torch.randn(120, 24, generator=g), torch.randn(11, 24, generator=g)
    reference = torch.cdist(x.double(), c.double()).square()
    d = pairwise_sqdist(x, c, chunk_size=chunk_size)
    assert d.shape == (120, 11) and d.dtype == torch.float32
    torch.testing.assert_close(d.double(), reference, rtol=1e-5, atol=1e-4)
    labels, sqdist = nearest_centre(x, c, chunk_size=chunk_size)
    assert labels.dtype == torch.long and torch.equal(labels, reference.argmin(1))
    torch.testing.assert_close(sqdist.double(), reference.min(1).values, rtol=1e-5, atol=1e-4)
    labels64, sqdist64 = nearest_centre(x, c, chunk_size=chunk_size, dtype=torch.float64)
    assert sqdist64.dtype == torch.float64
    torch.testing.assert_close(sqdist64, reference.min(1).values, rtol=1e-12, atol=1e-10)


def test_float64_option_resolves_what_float32_cannot():
    # points 1e4 from the origin, 1e-2 apart: the float32 GEMM form cancels catastrophically, float64 does not
    g = torch.Generator().manual_seed(0)
    offset = torch.full((1, 8), 1e4, dtype=torch.float64)
    x = offset + 1e-2 * torch.randn(500, 8, generator=g, dtype=torch.float64)
    c = offset + 1e-2 * torch.randn(6, 8, generator=g, dtype=torch.float64)
    x, c = x.float(), c.float()
    reference = torch.cdist(x.double(), c.double()).square().argmin(1)     # exact for the float32 values
    assert torch.equal(nearest_centre(x, c, dtype=torch.float64)[0], reference)
    assert (nearest_centre(x, c)[0] != reference).any()
    assert (pairwise_sqdist(x, c) >= 0).all()      # clamped, never negative


def test_distance_input_errors():
    x = torch.randn(10, 4)
    with pytest.raises(ValueError, match='same d'):
        nearest_centre(x, torch.randn(3, 5))
    with pytest.raises(ValueError, match='same d'):
        pairwise_sqdist(x[0], torch.randn(3, 4))
    with pytest.raises(ValueError, match='chunk_size=0'):
        nearest_centre(x, x[:2], chunk_size=0)


# --- seeding -----------------------------------------------------------------------------------------------------

def test_kmeans_plus_plus_picks_distinct_rows_in_every_blob(blobs):
    x, truth = blobs
    for seed in range(5):
        centres = kmeans_plus_plus(x, N_BLOBS, generator=torch.Generator().manual_seed(seed))
        assert centres.shape == (N_BLOBS, D) and centres.device == x.device
        assert (centres[:, None, :] == x[None]).all(-1).any(1).all()      # every centre is a row of x
        assert nearest_centre(centres, truth)[0].unique().numel() == N_BLOBS
    classic = kmeans_plus_plus(x, 3, torch.Generator().manual_seed(0), n_local_trials=1)
    assert torch.unique(classic, dim=0).shape[0] == 3
    if torch.cuda.is_available():
        with pytest.raises(ValueError, match='pass torch.Generator\\(device=x.device\\)'):
            kmeans_plus_plus(x.cuda(), 3, torch.Generator().manual_seed(0))


def test_kmeans_plus_plus_stops_on_too_few_distinct_rows():
    x = torch.tensor([[0., 0.], [1., 1.], [0., 0.], [1., 1.]])
    with pytest.raises(ValueError, match='only 2 distinct rows but k=3'):
        kmeans_plus_plus(x, 3, torch.Generator().manual_seed(0))
    assert torch.unique(kmeans_plus_plus(x, 2), dim=0).shape[0] == 2


# --- recovery of known structure -----------------------------------------------------------------------------------

@pytest.mark.parametrize('method', KMEANS_METHODS)
def test_every_method_recovers_blob_centres(blobs, method):
    x, truth = blobs
    result = kmeans(x, N_BLOBS, method=method, seed=0)
    assert isinstance(result, KMeansResult) and result.method == method
    assert result.centres.shape == (N_BLOBS, D) and isinstance(result.centres, torch.Tensor)
    assert result.labels.shape == (3000,) and result.labels.dtype == torch.long
    assert result.counts.dtype == torch.long and int(result.counts.sum()) == 3000
    assert torch.equal(result.counts, torch.bincount(result.labels, minlength=N_BLOBS))
    # exact methods estimate each mean from ~600 points (noise ~0.16); the online EMA keeps ~1/lr samples of memory
    assert match_error(result.centres, truth) < (1.0 if method == 'online' else 0.3)
    recomputed = float(nearest_centre(x, result.centres.cpu(), dtype=torch.float64)[1].sum())
    assert result.inertia == pytest.approx(recomputed, rel=1e-4)


def test_torch_inertia_matches_sklearn(blobs, digits, digits_reference):
    x, _ = blobs
    ratio = kmeans(x, N_BLOBS, n_init=2).inertia / kmeans(x, N_BLOBS, method='sklearn', n_init=2).inertia
    assert ratio == pytest.approx(1.0, abs=1e-4)
    for k, reference in digits_reference.items():
        torch_inertia = kmeans(digits, k, n_init=3, seed=0).inertia
        assert abs(torch_inertia / reference - 1) < 0.02, (k, torch_inertia, reference)


def test_minibatch_within_looser_bound(digits, digits_reference):
    for k, reference in digits_reference.items():
        minibatch = kmeans(digits, k, method='minibatch', n_init=3, batch_size=256, seed=0).inertia
        assert 0.98 < minibatch / reference < 1.10, (k, minibatch, reference)


def test_n_init_keeps_the_best_run(digits):
    # the first of the five restarts is exactly the single run (same generator stream)
    single = TorchKMeans(16, n_init=1, seed=3).fit(digits)
    best = TorchKMeans(16, n_init=5, seed=3).fit(digits)
    assert best.inertia <= single.inertia


# --- empty clusters ------------------------------------------------------------------------------------------------

def test_empty_clusters_are_reseeded(blobs, caplog):
    x, truth = blobs
    blob = nearest_centre(x, truth)[0]
    # one row from each of four blobs plus a centre far from all data, which gets no points at first: re-seeded at
    # the farthest point, which lies in the uncovered fifth blob, it recovers all five
    start = torch.cat([torch.stack([x[blob == b][0] for b in range(4)]), torch.full((1, D), 1e3)])
    with caplog.at_level(logging.WARNING, logger='taylormlp.cluster'):
        result = TorchKMeans(N_BLOBS, init=start).fit(x)
    warnings = [r.getMessage() for r in caplog.records if 'empty cluster' in r.getMessage()]
    assert warnings and warnings[0].startswith('TorchKMeans: 1 empty cluster(s) at iteration 1')
    assert (result.counts > 0).all()
    assert match_error(result.centres, truth) < 0.3
    # two empty at once (both sides far away): both re-seeded, no cluster stays empty
    caplog.clear()
    start = torch.cat([x[:3], torch.full((1, D), 1e3), torch.full((1, D), -1e3)])
    with caplog.at_level(logging.WARNING, logger='taylormlp.cluster'):
        result = TorchKMeans(N_BLOBS, init=start).fit(x)
    assert any('2 empty cluster(s)' in r.getMessage() for r in caplog.records)
    assert (result.counts > 0).all() and torch.isfinite(result.centres).all()


# --- streaming -----------------------------------------------------------------------------------------------------

def test_online_stream_recovers_blobs_with_fixed_memory(blobs):
    x, truth = blobs
    model = OnlineKMeans(N_BLOBS, seed=0)
    shapes, pointer = set(), None
    for batch in blob_stream(truth, n_batches=30):
        model.partial_fit(batch)
        shapes.add((tuple(model.centres.shape), tuple(model.counts.shape)))
        pointer = pointer or model.centres.data_ptr()
        assert model.centres.data_ptr() == pointer                 # updated in place: no growth, no reallocation
    assert shapes == {((N_BLOBS, D), (N_BLOBS,))}
    assert model.n_seen == 30 * 500 and model.n_batches == 30
    assert match_error(model.centres, truth) < 1.0
    online_inertia = model.result(x).inertia
    sklearn_inertia = kmeans(x, N_BLOBS, method='sklearn', n_init=2).inertia
    assert online_inertia / sklearn_inertia < 1.2, (online_inertia, sklearn_inertia)
    streamed = model.result()        # activity counts, no labels
    assert streamed.labels is None and int(streamed.counts.sum()) <= model.n_seen


def test_online_threshold_calibration_separates_within_from_between(blobs):
    _, truth = blobs
    first = next(blob_stream(truth, n_batches=1, batch_size=1000))
    model = OnlineKMeans(N_BLOBS).partial_fit(first)
    within = nearest_centre(first, truth)[1].sqrt()
    between = torch.cdist(truth, truth)[~torch.eye(N_BLOBS, dtype=torch.bool)].min()
    assert within.max() < model.threshold < between / 2


def test_online_spawns_centres_for_new_regions(blobs):
    _, truth = blobs
    model = OnlineKMeans(N_BLOBS, seed=0)
    model.fit(blob_stream(truth, n_batches=20, which=[0, 1, 2]))     # two centres are spare (split blobs)
    # a blob shared by two centres has them ~0.8 from its mean (the means of its halves)
    assert torch.cdist(truth[:3], model.centres).min(1).values.max() < 2.0
    assert torch.cdist(truth[3:], model.centres).min(1).values.min() > 5.0
    spawned_before = model.n_spawned
    model.fit(blob_stream(truth, n_batches=20, seed=2))                 # blobs 3 and 4 appear
    assert model.n_spawned - spawned_before == 2                        # one new centre per new blob, no churn
    assert match_error(model.centres, truth) < 1.0


def test_online_exact_mode_follows_the_sequential_rule(blobs):
    x, truth = blobs
    stream = list(blob_stream(truth, n_batches=2, batch_size=100, seed=5))
    exact = OnlineKMeans(N_BLOBS, exact=True, seed=0).fit(stream)
    one_by_one = OnlineKMeans(N_BLOBS, threshold=exact.threshold, seed=0)
    one_by_one.partial_fit(stream[0][:N_BLOBS])
    # the calibration run consumed no coins, so feeding single rows reproduces exact mode
    arrival_inertia = 0.0
    for row in torch.cat(stream)[N_BLOBS:]:
        arrival_inertia += float(nearest_centre(row[None], one_by_one.centres, dtype=torch.float64)[1])
        one_by_one.partial_fit(row[None])
    torch.testing.assert_close(exact.centres, one_by_one.centres)
    assert torch.equal(exact.counts, one_by_one.counts) and exact.n_seen == one_by_one.n_seen == 200
    # without x, result() reports the streaming inertia: each sample against the centres it met on arrival
    assert exact.result().inertia == pytest.approx(arrival_inertia, rel=1e-5)
    assert match_error(exact.centres, truth) < 1.5


def test_online_errors():
    with pytest.raises(ValueError, match='2k=10 rows'):
        OnlineKMeans(5).partial_fit(torch.randn(8, 3))
    with pytest.raises(ValueError, match='pass a larger first batch'):
        OnlineKMeans(5, threshold=1.0).partial_fit(torch.randn(4, 3))
    model = OnlineKMeans(2, threshold=1.0).partial_fit(torch.randn(4, 3))
    with pytest.raises(ValueError, match='d=4 features but the centres have d=3'):
        model.partial_fit(torch.randn(4, 4))
    with pytest.raises(ValueError, match='1 of 4 rows with NaN or Inf'):
        model.partial_fit(torch.tensor([[0., 0., float('nan')]] + [[0., 0., 0.]] * 3))
    with pytest.raises(TypeError, match='batch\\[0\\]'):
        model.partial_fit((torch.randn(4, 3), torch.zeros(4)))
    with pytest.raises(TypeError, match='iterable of batches'):
        OnlineKMeans(2).fit(torch.randn(10, 3))
    with pytest.raises(RuntimeError, match='call partial_fit'):
        OnlineKMeans(2).result()
    with pytest.raises(ValueError, match='spawn_prob'):
        OnlineKMeans(2, spawn_prob=1.5)
    with pytest.raises(ValueError, match='batch_size=8 is below 2k=10'):
        kmeans(torch.randn(100, 3), 5, method='online', batch_size=8)


# --- dispatcher, determinism, validation ---------------------------------------------------------------------------

def test_inputs_numpy_leading_dims_dtypes_and_labels(blobs):
    x, truth = blobs
    result = kmeans(x.numpy().reshape(30, 100, D), N_BLOBS)
    assert result.labels.shape == (3000,) and match_error(result.centres, truth) < 0.3
    as_numpy64 = x.double().numpy()
    before = as_numpy64.copy()
    for method in KMEANS_METHODS:
        result64 = kmeans(as_numpy64, N_BLOBS, method=method)
        assert np.array_equal(as_numpy64, before), method           # the caller's array is never modified
    assert kmeans(as_numpy64, N_BLOBS).centres.dtype == torch.float64
    assert kmeans(x, N_BLOBS, keep_labels=False).labels is None
    assert kmeans(x, N_BLOBS, method='sklearn', keep_labels=False).labels is None


@pytest.mark.parametrize('method', KMEANS_METHODS)
def test_same_seed_same_centres(digits, method):
    options = dict(batch_size=256) if method in ('minibatch', 'online') else {}
    first = kmeans(digits, 12, method=method, seed=4, **options)
    second = kmeans(digits, 12, method=method, seed=4, **options)
    assert torch.equal(first.centres, second.centres)
    assert first.inertia == second.inertia


def test_different_seeds_differ(digits):
    assert not torch.equal(kmeans(digits, 12, seed=0).centres, kmeans(digits, 12, seed=1).centres)


def test_validation_messages(blobs):
    x, _ = blobs
    cases = [
        (dict(k=0), ValueError, 'k=0: k (the number of centres) must be a positive integer'),
        (dict(k=2.5), ValueError, 'must be a positive integer; pass e.g. k=16'),
        (dict(k=True), ValueError, 'must be a positive integer'),
        (dict(x=x[:4], k=5), ValueError, 'k=5 is larger than the number of samples in x (4): pass k <= 4'),
        (dict(x=x[:3].repeat(20, 1), k=5), ValueError, 'x has only 3 distinct rows (of 60) but k=5'),
        (dict(x=x[0], k=5), ValueError, 'for 1-D data pass x[:, None]'),
        (dict(x=torch.ones(()), k=1), ValueError, 'expected [..., d]'),
        (dict(x=x[:0], k=5), ValueError, 'x is empty (shape [0, 16]'),
        (dict(x=torch.ones(5, 0), k=1), ValueError, 'x is empty'),
        (dict(method='kmedians'), ValueError, "use one of 'torch', 'sklearn', 'minibatch', 'online'"),
        (dict(method='sklearn', batch_size=100), TypeError, "got unexpected option(s) ['batch_size']"),
        (dict(n_inits=3), TypeError, "valid options for this method are"),
        (dict(x=[[1.0, 2.0]], k=1), TypeError, 'pass a torch.Tensor or numpy array'),
    ]
    for overrides, error, message in cases:
        args = {'x': x, 'k': N_BLOBS, **overrides}
        with pytest.raises(error) as info:
            kmeans(args.pop('x'), args.pop('k'), **args)
        assert message in str(info.value), (overrides, str(info.value))
    bad = x.clone()
    bad[[3, 10], 2] = float('nan')
    bad[20, 0] = float('inf')
    for method in KMEANS_METHODS:
        with pytest.raises(ValueError, match=r'x has 3 of 3000 rows with NaN or Inf: drop or impute them'):
            kmeans(bad, N_BLOBS, method=method)
    with pytest.raises(ValueError, match='explicit initial centres must be'):
        TorchKMeans(3, init=torch.zeros(2, D))
    with pytest.raises(ValueError, match='pass n_init=1'):
        TorchKMeans(3, init=torch.zeros(3, D), n_init=2)


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the message shown when CUDA is missing')
def test_cuda_requested_without_cuda(blobs):
    x, _ = blobs
    for call in (lambda: kmeans(x, 3, device='cuda'), lambda: TorchKMeans(3, device='cuda:0'),
                 lambda: kmeans(x, 3, method='online', device='cuda')):
        with pytest.raises(ValueError, match=r"device='cuda(:0)?' was requested but torch.cuda.is_available\(\) is False"):
            call()


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
def test_cuda_runs_on_the_gpu(blobs, digits):
    x, truth = blobs
    result = kmeans(x.cuda(), N_BLOBS, n_init=2)
    assert result.centres.is_cuda and result.labels.is_cuda
    assert match_error(result.centres, truth) < 0.3
    on_gpu = kmeans(digits, 16, n_init=3, device='cuda').inertia
    on_cpu = kmeans(digits, 16, n_init=3).inertia
    assert abs(on_gpu / on_cpu - 1) < 0.02
    online = OnlineKMeans(N_BLOBS).fit(b.cuda() for b in blob_stream(truth.cpu(), 20))
    assert online.centres.is_cuda and match_error(online.centres, truth) < 1.0
