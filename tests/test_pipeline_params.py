"""Every run parameter is checked (and converted where a command line gives a string) before any stage runs, and
each message names the parameter, its value and what it takes."""
import contextlib, io

import pytest

from taylormlp.pipeline import RunConfig, config_from_namespace, main


@pytest.fixture
def no_notebooks(monkeypatch):
    "Record every notebook papermill would execute (none should be)."
    pm = pytest.importorskip('papermill')
    executed = []
    monkeypatch.setattr(pm, 'execute_notebook', lambda nb, *a, **kw: executed.append(nb))
    return executed


def cli(*argv) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()): status = main(list(argv))
    return status, err.getvalue()


@pytest.mark.parametrize('stages, name, value, message', [
    ('cluster', 'ks', 'abc', "ks='abc' is not a list of integers >= 1: pass e.g. ks=[4, 16, 64] (on the command line -p ks 4,16,64)"),
    ('all', 'k', '-5', "k=-5 is not an integer >= 1"),
    ('all', 'k', '32', "k=32 is not in ks=[4, 16, 64]: stage 6 swaps in the models at k, so add it to ks (-p ks 4,16,32,64)"),
    ('all', 'orders', '0,3', "orders='0,3' is not a list of values from [0, 1, 2]"),
    ('validate', 'ridge', '-1', "ridge=-1 is not a number >= 0.0"),
    ('all', 'batch_size', '0', "batch_size=0 is not an integer >= 1"),
    ('all', 'fit_samples', 'many', "fit_samples='many' is not an integer >= 1 (or None)"),
    ('all', 'lstsq', 'maybe', "lstsq='maybe' is not True or False"),
    ('all', 'clustering', 'kmedoids', "clustering='kmedoids' is not one of ['torch'"),
    ('all', 'eval_split', 'train', "eval_split='train' is the split the expansions are fitted on: pick a held-out split (test)"),
    ('all', 'eval_split', 'dev', "eval_split='dev' is not a split of 'digits': use one of ['train', 'test']"),
    ('all', 'data_root', '/no/such/folder', "data_root='/no/such/folder' is not a directory"),
    ('all', 'train_samples', 'some', "train_samples='some' is not an integer >= 1 or 'all' (or None)"),
])
def test_cli_refuses_a_bad_parameter_before_any_stage(tmp_path, no_notebooks, stages, name, value, message):
    out = tmp_path / 'run'
    status, err = cli('run', stages, '--out', str(out), '-p', name, value)
    assert status == 1
    assert message in err, err
    assert err.startswith('taylormlp: error: Invalid parameter: ') and 'stage' not in err.split(':')[2]
    assert no_notebooks == [] and not out.exists()    # nothing ran, nothing was written


def test_all_bad_parameters_are_named_at_once(no_notebooks, tmp_path):
    status, err = cli('run', 'all', '--out', str(tmp_path / 'run'), '-p', 'k', '-5', '-p', 'seed', 'x', '-p', 'ks', '4,0')
    assert status == 1 and 'Invalid parameters: ' in err
    for part in ("k=-5 is not an integer >= 1", "seed='x' is not an integer >= 0", "ks='4,0' is not a list of integers"):
        assert part in err, err
    assert no_notebooks == []


def test_command_line_strings_are_converted_to_the_field_types():
    c = RunConfig.from_params(ks='4,16', k='16', ridge='1e-3', fit_samples='None', eval_samples='200', lstsq='false',
                              progress='true', train_samples='all', orders='1')
    assert (c.ks, c.k, c.ridge, c.fit_samples, c.eval_samples, c.lstsq, c.progress, c.train_samples, c.orders) == \
           ([4, 16], 16, 1e-3, None, 200, False, True, 'all', [1])
    assert RunConfig(ks=[4.0, 16], k=16.0).ks == [4, 16]         # YAML or JSON floats that are integers
    with pytest.raises(ValueError, match=r"k=16\.5 is not an integer >= 1"): RunConfig(k=16.5)
    with pytest.raises(ValueError, match=r"lstsq=2 is not True or False"): RunConfig(lstsq=2)


def test_notebook_parameters_are_checked_the_same_way():
    ns = dict(model='digits_vit', ks=[4, 16], k=-5, interactive=False, other_variable=3)
    with pytest.raises(ValueError, match=r"k=-5 is not an integer >= 1"): config_from_namespace(ns)
    assert config_from_namespace({**ns, 'k': 4}).k == 4


def test_papermill_is_not_started_for_a_good_run_with_an_unknown_stage(no_notebooks, tmp_path):
    status, err = cli('run', 'clusterr', '--out', str(tmp_path / 'run'))
    assert status == 1 and "Unknown stage(s) ['clusterr']" in err and no_notebooks == []


@pytest.mark.parametrize('value, message', [
    ('7', "sites='7': index 7 is out of range; the model has 2 whole-MLP sites ['blocks.0.mlp', 'blocks.1.mlp']"),
    ('blocks.3.mlp', "sites='blocks.3.mlp': No MLP site named 'blocks.3.mlp' in VisionTransformer. Close matches"),
])
def test_sites_are_checked_on_the_architecture_before_any_stage(tmp_path, no_notebooks, value, message):
    out = tmp_path / 'run'
    status, err = cli('run', 'all', '--out', str(out), '-p', 'sites', value)
    assert status == 1 and message in err, err
    assert no_notebooks == [] and not out.exists()
