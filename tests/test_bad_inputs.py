"""The reliability table: bad inputs across the package, each refused with an error that names the problem and the fix.

One row per bad input: (id, call, expected exception type, substrings the message must contain). A call takes the
shared context `c` (a tiny fitted TaylorMLP, saved and damaged files, a tiny collection, an empty shared folder) and
pytest's `monkeypatch` (environment variables, hidden optional packages).
"""
import contextlib, io, logging, shutil, sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from taylormlp import pipeline
from taylormlp.adapt import find_mlp_sites, get_site, site_from_path, swap
from taylormlp.cluster import kmeans
from taylormlp.collect import Collection, collect
from taylormlp.data import load_dataset
from taylormlp.taylor import LinearActLinear, MemoryBudgetError, TaylorMLP, expand
from taylormlp.weights import load_model

D_IN, HIDDEN, D_OUT, K = 4, 8, 3, 4
NO_GPU = pytest.mark.skipif(torch.cuda.is_available(), reason='a CUDA GPU is present: nothing to refuse')


class Pair(nn.Module):
    "A layer returning a tuple (like an attention block returning (out, weights))."
    def __init__(self): super().__init__(); self.fc = nn.Linear(D_IN, D_IN)
    def forward(self, x): return self.fc(x), x


class Masked(nn.Module):
    "A block whose forward needs a second input besides the tensor x."
    def __init__(self): super().__init__(); self.fc = nn.Linear(D_IN, D_IN)
    def forward(self, x, mask): return self.fc(x) * mask


class Net(nn.Module):
    "One whole-MLP site `mlp` (4 -> 8 -> 4), plus sub-modules that are not sites."
    def __init__(self):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(D_IN, HIDDEN), nn.GELU(), nn.Linear(HIDDEN, D_IN))
        self.act, self.pair = nn.ReLU(), Pair()
    def forward(self, x): return self.act(self.mlp(x))


def _flip_byte(path, position):
    data = bytearray(path.read_bytes()); data[position] ^= 0xFF; path.write_bytes(bytes(data))


def _cut(path, keep): path.write_bytes(path.read_bytes()[:keep])


@pytest.fixture(scope='module')
def c(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('bad_inputs')
    torch.manual_seed(0)
    block = LinearActLinear(nn.Linear(D_IN, HIDDEN), nn.GELU(), nn.Linear(HIDDEN, D_OUT))
    x = torch.randn(200, D_IN)
    tm = TaylorMLP.fit(block, x, k=K, meta=dict(source='digits_vit', site='blocks.0.mlp'))
    good = tm.save(tmp / 'tm.safetensors')
    raw = good.read_bytes()
    data_start = 8 + int.from_bytes(raw[:8], 'little')        # safetensors: u64 header length, JSON header, data
    damaged = {}
    for name in ('truncated', 'bad_header', 'bad_data'):
        damaged[name] = shutil.copy(good, tmp / f'tm_{name}.safetensors')
    _cut(damaged['truncated'], len(raw) // 2)
    _flip_byte(damaged['bad_header'], 9)                      # inside the JSON header
    _flip_byte(damaged['bad_data'], data_start + 1)           # inside the first tensor

    net = Net().eval()
    collect(net, ['mlp'], [torch.randn(10, D_IN) for _ in range(3)], tmp / 'coll', shard_tokens=10, progress=False)
    for name in ('coll_cut', 'coll_flip', 'coll_manifest'): shutil.copytree(tmp / 'coll', tmp / name)
    shard = sorted((tmp / 'coll_cut').rglob('00001.safetensors'))[0]
    _cut(shard, shard.stat().st_size // 2)
    _flip_byte(sorted((tmp / 'coll_flip').rglob('00001.safetensors'))[0], -5)
    _cut(tmp / 'coll_manifest' / 'manifest.json', 40)

    cfg = pipeline.RunConfig(out_dir=str(tmp / 'run'))
    centres = {}
    for k in (K, K + 1):
        path = pipeline.centres_path(cfg, 'mlp', k)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({'centres': torch.randn(k, D_IN)}, str(path))
        centres[k] = path
    _cut(centres[K], centres[K].stat().st_size - 7)
    _flip_byte(centres[K + 1], 12)                            # the tensor name in the header
    (tmp / 'empty_shared').mkdir()
    foreign = tmp / 'foreign.safetensors'
    save_file({'weight': torch.zeros(2, 2)}, str(foreign))
    return SimpleNamespace(tmp=tmp, block=block, x=x, tm=tm, good=good, foreign=foreign, net=net, cfg=cfg, **damaged)


class CLIError(Exception):
    "A non-zero exit of `taylormlp.pipeline.main`, carrying what it printed to stderr."


def cli(*argv):
    err = io.StringIO()
    with contextlib.redirect_stderr(err): status = pipeline.main(list(argv))
    if status != 0: raise CLIError(f"exit status {status}; stderr: {err.getvalue()}")
    return status


def hide(mp, *modules):
    "Make `import <module>` fail as if the package were not installed."
    for m in modules: mp.setitem(sys.modules, m, None)


def offline(c, mp, shared='empty_shared'):
    "TAYLORMLP_SHARED at `shared` (under the test folder) and an empty cache, so no copy of the data is found."
    mp.setenv('TAYLORMLP_SHARED', str(c.tmp / shared))
    mp.setenv('TAYLORMLP_CACHE', str(c.tmp / 'empty_cache'))





def row(id, call, error, *parts, marks=()):
    return pytest.param(call, error, parts, id=id, marks=marks)


nan_row = lambda x: torch.cat([x[:5], torch.tensor([[float('nan')] + [0.0] * (D_IN - 1)]), x[5:]])
inf_row = lambda x: torch.cat([x, torch.tensor([[float('inf')] * D_IN])])
STAGES = "['data', 'adapt', 'weights', 'collect', 'cluster', 'validate']"

CASES = [
    # --- TaylorMLP.forward ---------------------------------------------------------------------------------------
    row('forward_wrong_width', lambda c, mp: c.tm(torch.randn(5, D_IN + 1)), ValueError,
        f'expects inputs [..., {D_IN}] but got shape [5, {D_IN + 1}]', 'fitted for', "site: blocks.0.mlp"),
    row('forward_scalar', lambda c, mp: c.tm(torch.tensor(1.0)), ValueError,
        f'expects inputs [..., {D_IN}]', 'shape []'),
    row('forward_int_dtype', lambda c, mp: c.tm(torch.ones(5, D_IN, dtype=torch.long)), TypeError,
        'floating point inputs, got torch.int64', 'x.float()'),
    row('forward_wrong_device', lambda c, mp: c.tm(torch.randn(5, D_IN, device='meta')), ValueError,
        'Input on meta but the TaylorMLP is on cpu', '.to(device)'),
    row('forward_nan', lambda c, mp: c.tm(nan_row(torch.randn(8, D_IN))), ValueError,
        '1 NaN/Inf values', 'check the model input', 'check_finite=False'),
    row('forward_numpy', lambda c, mp: c.tm(np.zeros((5, D_IN), np.float32)), TypeError,
        'got ndarray', 'torch.as_tensor'),
    # --- fitting: NaN/Inf, k, duplicates --------------------------------------------------------------------------
    row('fit_nan_inputs', lambda c, mp: TaylorMLP.fit(c.block, nan_row(c.x), k=K), ValueError,
        '1 of 201 input rows contain NaN/Inf', 'x[torch.isfinite(x).all(1)]'),
    row('kmeans_inf_inputs', lambda c, mp: kmeans(inf_row(c.x), K), ValueError,
        'x has 1 of 201 rows with NaN or Inf', 'torch.isfinite(x).all(-1)'),
    row('kmeans_nan_numpy_sklearn', lambda c, mp: kmeans(nan_row(c.x).numpy(), K, method='sklearn'), ValueError,
        'rows with NaN or Inf', 'drop or impute them'),
    row('fit_k_zero', lambda c, mp: TaylorMLP.fit(c.block, c.x, k=0), ValueError, 'k=0', 'positive integer', 'k=16'),
    row('kmeans_k_negative', lambda c, mp: kmeans(c.x, -3), ValueError, 'k=-3', 'positive integer', 'k=16'),
    row('kmeans_k_float', lambda c, mp: kmeans(c.x, 2.5), ValueError, 'k=2.5', 'positive integer'),
    row('kmeans_k_above_samples', lambda c, mp: kmeans(c.x[:5], 10), ValueError,
        'k=10 is larger than the number of samples in x (5)', 'pass k <= 5 or more samples'),
    row('fit_k_above_samples', lambda c, mp: TaylorMLP.fit(c.block, c.x[:3], k=8), ValueError,
        'k=8 is larger than the number of samples', 'pass k <= 3'),
    row('kmeans_duplicate_rows', lambda c, mp: kmeans(c.x[:2].repeat(50, 1), 3), ValueError,
        'only 2 distinct rows (of 100) but k=3', 'pass k <= 2 or more varied samples'),
    row('fit_duplicate_rows', lambda c, mp: TaylorMLP.fit(c.block, torch.ones(40, D_IN), k=2), ValueError,
        'only 1 distinct rows (of 40) but k=2', 'pass k <= 1'),
    row('kmeans_unknown_method', lambda c, mp: kmeans(c.x, K, method='kmeans++'), ValueError,
        "method='kmeans++' is not a K-means method", "'torch', 'sklearn', 'minibatch', 'online'"),
    row('kmeans_unknown_option', lambda c, mp: kmeans(c.x, K, method='sklearn', batch_size=10), TypeError,
        "unexpected option(s) ['batch_size']", 'valid options for this method are'),
    row('kmeans_1d_input', lambda c, mp: kmeans(torch.randn(50), 2), ValueError, 'shape [50]', 'x[:, None]'),
    # --- sites and swapping ---------------------------------------------------------------------------------------
    row('find_sites_none', lambda c, mp: find_mlp_sites(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())), ValueError,
        'No MLP sites', 'site_from_path(model'),
    row('find_sites_state_dict', lambda c, mp: find_mlp_sites(c.net.state_dict()), TypeError,
        'needs the model as an nn.Module, got OrderedDict', 'model.load_state_dict(state_dict)'),
    row('find_sites_unknown_kind', lambda c, mp: find_mlp_sites(c.net, kinds='mlp'), ValueError,
        "Unknown site kind(s) ['mlp']", "'timm_mlp'"),
    row('get_site_typo', lambda c, mp: get_site(c.net, 'mpl'), KeyError,
        "No MLP site named 'mpl'", "Close matches: ['mlp']", 'site_from_path'),
    row('site_from_path_typo', lambda c, mp: site_from_path(c.net, 'mpl.0'), KeyError,
        "No sub-module at 'mpl.0'", "Close matches: ['mlp.0'", 'model.named_modules()'),
    row('site_from_path_no_linear', lambda c, mp: site_from_path(c.net, 'act'), ValueError,
        "'act' (ReLU) has no nn.Linear layer", "pick the sub-module that holds the MLP's Linear layers"),
    row('site_from_path_tuple_output', lambda c, mp: site_from_path(c.net, 'pair'), ValueError,
        f'maps a [2, {D_IN}] tensor to tuple', 'Pick a sub-module that does'),
    row('swap_wrong_d_out', lambda c, mp: swap(c.net, 'mlp', c.tm), ValueError,
        f"has d_out={D_OUT} but the site has d_out={D_IN}", "fit the replacement on this site's inputs"),
    row('swap_wrong_d_in', lambda c, mp: swap(c.net, 'mlp', TaylorMLP.fit(nn.Linear(D_IN + 2, D_IN),
                                                                         torch.randn(30, D_IN + 2), k=2)), ValueError,
        f"has d_in={D_IN + 2} but the site has d_in={D_IN}", 'fit the replacement'),
    row('swap_function_not_module', lambda c, mp: swap(c.net, 'mlp', lambda x: x), TypeError,
        'swap needs an nn.Module', 'wrap a function in a small nn.Module'),
    # --- expand: the block, the order, the memory guard -----------------------------------------------------------
    row('expand_block_returns_tuple', lambda c, mp: expand(Pair(), torch.randn(3, D_IN)), TypeError,
        'The block returned tuple, not a Tensor', 'site.function'),
    row('expand_block_needs_second_input', lambda c, mp: expand(Masked(), torch.randn(3, D_IN)), ValueError,
        'could not be evaluated', "'mask'", 'site.function', 'forward(x)'),
    row('expand_given_an_MLPSite', lambda c, mp: expand(find_mlp_sites(c.net)[0], torch.randn(3, D_IN)), TypeError,
        'MLPSite', 'not a callable', 'site.function'),
    row('expand_centres_wrong_width', lambda c, mp: expand(c.block, torch.randn(3, D_IN + 1)), ValueError,
        f'inputs of width {D_IN + 1}', "the centres must have the block's input width d_in"),
    row('expand_centres_int', lambda c, mp: expand(c.block, torch.ones(3, D_IN, dtype=torch.long)), TypeError,
        'dtype torch.int64', '.float()'),
    row('expand_order_3', lambda c, mp: expand(c.block, torch.randn(3, D_IN), order=3), ValueError,
        'order=3 is not supported', 'use 0 (value at the centre), 1 (tangent) or 2'),
    row('fit_order_minus_1', lambda c, mp: TaylorMLP.fit(c.block, c.x, k=K, order=-1), ValueError,
        'order=-1 is not supported', 'use 0'),
    row('expand_order_string', lambda c, mp: expand(c.block, torch.randn(3, D_IN), order='one'), ValueError,
        "order='one' is not supported", 'use 0'),
    row('expand_memory_guard', lambda c, mp: expand(c.block, torch.randn(64, D_IN), order=2, max_bytes=1000),
        MemoryBudgetError, 'k=64, d_in=4, d_out=3', 'needs about 7.94 kB, over the memory budget of 1.00 kB',
        'Alternatives: a smaller k, order 1 instead of 2', 'out_dir=...', 'max_bytes=...', 'TAYLORMLP_MAX_BYTES'),
    row('fit_memory_guard', lambda c, mp: TaylorMLP.fit(c.block, c.x, k=K, max_bytes=10), MemoryBudgetError,
        'over the memory budget of 10 B', 'a smaller k'),
    # --- saved TaylorMLP files ------------------------------------------------------------------------------------
    row('load_other_d_in', lambda c, mp: TaylorMLP.load(c.good, d_in=D_IN + 1), ValueError,
        f'd_in is {D_IN} in the file but {D_IN + 1} was expected',
        'Load the file saved for this model and site, or refit'),
    row('load_other_site', lambda c, mp: TaylorMLP.load(c.good, site='blocks.1.mlp'), ValueError,
        "site is 'blocks.0.mlp' in the file but 'blocks.1.mlp' was expected", 'or refit'),
    row('load_other_source', lambda c, mp: TaylorMLP.load(c.good, source='cifar_vit'), ValueError,
        "source is 'digits_vit' in the file but 'cifar_vit' was expected", 'or refit'),
    row('load_truncated', lambda c, mp: TaylorMLP.load(c.truncated), ValueError,
        'tm_truncated.safetensors is not a readable safetensors file', 'truncated or corrupted',
        'delete it and save the TaylorMLP again'),
    row('load_corrupted_header', lambda c, mp: TaylorMLP.load(c.bad_header), ValueError,
        'tm_bad_header.safetensors is not a readable safetensors file', 'delete it and save the TaylorMLP again'),
    row('load_corrupted_data', lambda c, mp: TaylorMLP.load(c.bad_data), ValueError,
        'tm_bad_data.safetensors', 'corrupted', 'save the TaylorMLP again'),
    row('load_missing_file', lambda c, mp: TaylorMLP.load(c.tmp / 'nope.safetensors'), FileNotFoundError,
        'No TaylorMLP file at', 'fit and save one first'),
    row('load_not_a_taylormlp', lambda c, mp: TaylorMLP.load(c.foreign), ValueError,
        "foreign.safetensors is a safetensors file but not a TaylorMLP", 'TaylorMLP.save'),
    # --- collections and centres on disk --------------------------------------------------------------------------
    row('collection_shard_truncated', lambda c, mp: Collection(c.tmp / 'coll_cut'), ValueError,
        "00001.safetensors of site 'mlp' has", '(truncated or replaced)',
        'Delete that file and call collect(...) again with the same out_dir'),
    row('collection_shard_corrupted', lambda c, mp: Collection(c.tmp / 'coll_flip').inputs('mlp'), ValueError,
        'does not match its sha256 in the manifest (corrupted)', 'Delete that file and call collect(...) again'),
    row('collection_manifest_truncated', lambda c, mp: Collection(c.tmp / 'coll_manifest'), ValueError,
        'manifest.json is not a readable collection manifest', 'truncated or corrupted',
        'collect(..., overwrite=True)'),
    row('collection_missing', lambda c, mp: Collection(c.tmp / 'nowhere'), FileNotFoundError,
        'not a collection', 'collect(model, sites, loader'),
    row('centres_truncated', lambda c, mp: pipeline.load_centres(c.cfg, 'mlp', K), ValueError,
        'truncated or corrupted', 'delete it', 'stage 5 (cluster)'),
    row('centres_corrupted', lambda c, mp: pipeline.load_centres(c.cfg, 'mlp', K + 1), ValueError,
        'truncated or corrupted', 'delete it', 'stage 5 (cluster)'),
    # --- names of models and data sets ----------------------------------------------------------------------------
    row('unknown_model_name', lambda c, mp: load_model('digits_vitt'), ValueError,
        "Unknown model 'digits_vitt'", "Did you mean ['digits_vit'", 'list_models()'),
    row('unknown_dataset_name', lambda c, mp: load_dataset('cifar11'), ValueError,
        "Unknown data set 'cifar11'", "Did you mean ['cifar10', 'cifar100']", 'Valid names'),
    # --- missing optional data --------------------------------------------------------------------------------------
    row('cifar10_empty_shared', lambda c, mp: (offline(c, mp), load_dataset('cifar10', 'test')), FileNotFoundError,
        '<tmp>/empty_shared/data/cifar10/test.npz', 'set TAYLORMLP_SHARED to the folder that holds', 'download=True'),
    row('stsb_empty_shared', lambda c, mp: (offline(c, mp), load_dataset('stsb', 'dev')), FileNotFoundError,
        '<tmp>/empty_shared/data/stsb/sts-dev.tsv', 'set TAYLORMLP_SHARED to the folder that holds data/stsb/'),
    row('cifar_vgg16_bn_empty_shared', lambda c, mp: (offline(c, mp), load_model('cifar_vgg16_bn')), FileNotFoundError,
        '<tmp>/empty_shared/models/cifar10_vgg.json not found', 'set TAYLORMLP_SHARED', "load_model('cifar_vgg16_bn', train=True)"),
    row('cifar10_shared_not_a_folder', lambda c, mp: (offline(c, mp, 'nowhere'), load_dataset('cifar10', 'test')),
        FileNotFoundError,
        'TAYLORMLP_SHARED=<tmp>/nowhere (not a directory)'),
    row('stsb_shared_not_a_folder', lambda c, mp: (offline(c, mp, 'nowhere'), load_dataset('stsb', 'dev')),
        FileNotFoundError,
        'TAYLORMLP_SHARED=<tmp>/nowhere (not a directory)'),
    # --- missing optional dependencies ------------------------------------------------------------------------------
    row('sklearn_missing_kmeans', lambda c, mp: (hide(mp, 'sklearn', 'sklearn.cluster'),
                                                 kmeans(c.x, K, method='sklearn')), ImportError,
        "kmeans(method='sklearn') needs scikit-learn", 'pip install scikit-learn', "method='torch'"),
    row('sklearn_missing_minibatch', lambda c, mp: (hide(mp, 'sklearn', 'sklearn.cluster'),
                                                    kmeans(c.x, K, method='minibatch')),
        ImportError, "kmeans(method='minibatch') needs scikit-learn", 'pip install scikit-learn'),
    row('sklearn_missing_digits', lambda c, mp: (hide(mp, 'sklearn', 'sklearn.datasets', 'sklearn.model_selection'),
                                                 load_dataset('digits')),
        ImportError, 'scikit-learn', 'pip install scikit-learn'),
    row('transformers_missing', lambda c, mp: (hide(mp, 'transformers'), load_model('all-MiniLM-L6-v2')),
        ImportError, 'transformers', 'pip install transformers'),
    row('timm_missing', lambda c, mp: (hide(mp, 'timm'), load_model('resnet18')), ImportError,
        'timm', 'pip install timm'),
    # --- a GPU requested where none exists ----------------------------------------------------------------------------
    row('runconfig_cuda', lambda c, mp: pipeline.RunConfig(device='cuda'), ValueError,
        "device='cuda' but no CUDA GPU is available", "use device='cpu'", marks=NO_GPU),
    row('kmeans_cuda', lambda c, mp: kmeans(c.x, K, device='cuda'), ValueError,
        'torch.cuda.is_available() is False', "pass device='cpu'", marks=NO_GPU),
    row('collect_cuda', lambda c, mp: collect(c.net, ['mlp'], [c.x], c.tmp / 'coll_gpu', device='cuda', progress=False),
        ValueError, 'torch.cuda.is_available() is False', "pass device='cpu'", marks=NO_GPU),
    # --- run configuration and the command line ---------------------------------------------------------------------
    row('runconfig_unknown_param', lambda c, mp: pipeline.RunConfig.from_params(kk=3), ValueError,
        "Unknown parameter(s) ['kk']", "valid: ['batch_size'"),
    row('runconfig_order_3', lambda c, mp: pipeline.RunConfig(order=3), ValueError,
        'order=3 is not one of [0, 1, 2]'),
    row('runconfig_model_without_task', lambda c, mp: pipeline.RunConfig(model='resnet18'), ValueError,
        "No default data set for model 'resnet18'", 'pass dataset=...'),
    row('cli_unknown_stage', lambda c, mp: cli('run', 'nosuchstage'), CLIError,
        'exit status 1', "Unknown stage(s) ['nosuchstage']", f"use 'all' or some of {STAGES}"),
    row('cli_unknown_param', lambda c, mp: cli('run', 'data', '-p', 'kk', '3', '--out', str(c.tmp / 'cli_run')),
        CLIError,
        'exit status 1', "Unknown parameter(s) ['kk']", "'max_tokens'"),
    row('cli_sites_unknown_model', lambda c, mp: cli('sites', 'digits_vitt'), CLIError,
        'exit status 1', "Unknown model 'digits_vitt'", "Did you mean ['digits_vit'"),
    row('cli_papermill_missing', lambda c, mp: (hide(mp, 'papermill'),
                                                cli('run', 'data', '--out', str(c.tmp / 'cli_pm'))), CLIError,
        'exit status 1', 'pip install papermill', 'run_stages'),
]


def test_the_table_is_big_enough():
    assert len(CASES) >= 35
    assert len({p.id for p in CASES}) == len(CASES)


@pytest.mark.parametrize('call, error, parts', CASES)
def test_bad_input_is_refused_with_problem_and_fix(c, monkeypatch, call, error, parts):
    with pytest.raises(error) as info:
        call(c, monkeypatch)
    message = str(info.value.args[0]) if isinstance(info.value, KeyError) else str(info.value)
    for part in parts:
        assert part.replace('<tmp>', str(c.tmp)) in message, f"{part!r} not in: {message}"


# --- recoverable: empty clusters are re-seeded with a warning, never an error ---------------------------------------
def _far_init(x, k):
    "k-1 data rows plus one centre far from every row: its cluster is empty at the first iteration."
    return torch.cat([x[:k - 1], torch.full((1, x.shape[1]), 1e3)])


@pytest.mark.parametrize('how', ['kmeans', 'TaylorMLP.fit'])
def test_empty_cluster_recovers_with_a_warning(c, caplog, how):
    with caplog.at_level(logging.WARNING, logger='taylormlp.cluster'):
        if how == 'kmeans':
            r = kmeans(c.x, K, init=_far_init(c.x, K))
            centres, counts = r.centres, r.counts
        else:
            tm = TaylorMLP.fit(c.block, c.x, k=K, init=_far_init(c.x, K))
            centres, counts = tm.centres, torch.bincount(tm(c.x, return_assignment=True)[1], minlength=K)
            assert torch.isfinite(tm(c.x)).all()
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any('1 empty cluster(s) at iteration 1' in m and 're-seeding' in m for m in messages), messages
    assert torch.isfinite(centres).all() and centres.abs().max() < 100      # the far centre was moved onto the data
    assert (counts > 0).all()


def test_k_equal_to_distinct_rows_is_fine(c):
    "The boundary of the duplicate check: as many distinct rows as k works and finds exactly those rows."
    rows = c.x[:3]
    r = kmeans(rows.repeat(20, 1), 3)
    assert torch.cdist(r.centres, rows).min(1).values.max() < 1e-5
