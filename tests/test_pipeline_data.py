"""A run's evaluation split and data root are part of what it is (another split or root never reuses stale rows,
centres or study rows), missing splits name `root=`, and a run on the embedded default touches only what it uses."""
import json
import shutil

import pytest
import torch

from taylormlp.pipeline import (RunConfig, load_data, stage_collect, stage_cluster, site_inputs, run_notebooks,
                                _stage_key)
from taylormlp.runs import _DEPENDS

WORDS = 'the a cat dog sat ran on under mat roof quickly slowly red blue small large bird fish swam flew'.split()


def write_sts(folder, split, n, offset=0):
    "A tiny STS-B release file: tab-separated, seven fields, distinct sentences per split."
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        j = i + offset
        s1 = ' '.join(WORDS[(j + t) % len(WORDS)] for t in range(3 + j % 5))
        s2 = ' '.join(WORDS[(2 * j + t) % len(WORDS)] for t in range(4 + j % 3))
        lines.append('\t'.join(['main-captions', 'MSRvid', '2012test', f'{j:04d}', f'{(j % 6):.1f}', s1, s2]))
    (folder / f'sts-{split}.tsv').write_text('\n'.join(lines) + '\n')


@pytest.fixture(scope='module')
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp('sts')
    write_sts(base / 'a', 'train', 16); write_sts(base / 'a', 'dev', 6, 101); write_sts(base / 'a', 'test', 9, 203)
    write_sts(base / 'b', 'train', 16, 307); write_sts(base / 'b', 'dev', 6, 101)    # other train sentences, no test
    return base


def minilm_cfg(run, root, **kw):
    pytest.importorskip('transformers')
    return RunConfig(model='minilm', data_root=str(root), out_dir=str(run), ks=[2], k=2, orders=[1], max_tokens=400,
                     batch_size=8, progress=False, **kw)


def test_eval_split_is_a_parameter_and_part_of_the_identity(roots, tmp_path):
    dev = minilm_cfg(tmp_path, roots / 'a')
    test = minilm_cfg(tmp_path, roots / 'a', eval_split='test')
    assert (dev.eval_split, test.eval_split, test.metric) == ('dev', 'test', 'spearman')
    assert len(load_data(test, 'test')) == 9 and len(load_data(dev, 'dev')) == 6
    assert dev.data_settings() == {'data_root': str(roots / 'a')}
    assert test.data_settings() == {'data_root': str(roots / 'a'), 'eval_split': 'test'}
    for stage in ('data', 'weights', 'collect', 'validate'):
        assert _stage_key(dev, stage) != _stage_key(test, stage), stage
    other_root = minilm_cfg(tmp_path, roots / 'b')
    for stage in ('data', 'weights', 'collect', 'cluster', 'validate'):
        assert _stage_key(dev, stage) != _stage_key(other_root, stage), stage


def test_default_runs_keep_their_fingerprints():
    "The task's own split and the shared folder add nothing, so finished run folders stay valid."
    cfg = RunConfig()
    assert cfg.data_settings() == {} and cfg.eval_split == 'test'
    for stage, names in _DEPENDS.items(): assert _stage_key(cfg, stage) == cfg.fingerprint(*names)


def test_a_missing_split_names_root_and_the_shared_folder(roots):
    cfg = minilm_cfg('unused', roots / 'b', eval_split='test')     # root b has no sts-test.tsv
    with pytest.raises(FileNotFoundError) as e: load_data(cfg, 'test')
    msg = str(e.value)
    assert 'root= replaces the shared folder for every split' in msg and str(roots / 'b') in msg
    assert 'TAYLORMLP_SHARED' in msg and 'root=None' in msg


def test_rerun_with_another_split_or_root_never_reuses_old_rows(roots, tmp_path):
    run = tmp_path / 'run'
    dev = stage_collect(minilm_cfg(run, roots / 'a'))
    assert set(dev['rows']) == {'train', 'dev'}
    test = stage_collect(minilm_cfg(run, roots / 'a', eval_split='test'))      # same folder, another split
    assert set(test['rows']) == {'train', 'test'}
    assert test['fingerprint'] != dev['fingerprint'] and test['config']['eval_split'] == 'test'
    site = test['sites'][0]
    x_test = site_inputs(minilm_cfg(run, roots / 'a', eval_split='test'), site, 'test')
    assert x_test.shape[0] == test['rows']['test'][site] != dev['rows']['dev'][site]
    cfg_a = minilm_cfg(run, roots / 'a')
    stage_collect(cfg_a); stage_cluster(cfg_a)
    x_a, c_a = site_inputs(cfg_a, site).clone(), (run / 'centres' / site / 'k2.safetensors').read_bytes()
    cfg_b = minilm_cfg(run, roots / 'b')                                         # same folder, another data root
    stage_cluster(cfg_b)
    x_b = site_inputs(cfg_b, site)
    assert x_b.shape[1] == x_a.shape[1] and not (x_b.shape == x_a.shape and torch.equal(x_b, x_a))
    assert (run / 'centres' / site / 'k2.safetensors').read_bytes() != c_a    # centres refitted on the new inputs
    manifest = json.loads((run / 'collection' / 'train' / 'manifest.json').read_text())
    assert manifest['config']['source']['data_root'] == str(roots / 'b')


def test_study_settings_hold_the_split_and_root(roots, tmp_path, monkeypatch):
    import taylormlp.study as study
    seen = []
    class Stop(Exception): pass
    def log(path, settings, resume=True): seen.append(settings); raise Stop
    monkeypatch.setattr(study, 'StudyLog', log)
    for cfg in (RunConfig(out_dir=str(tmp_path / 'd'), ks=[4], k=4),
                minilm_cfg(tmp_path / 'm', roots / 'a', eval_split='test')):
        with pytest.raises(Stop): study.run_study(cfg, progress=False)
    assert 'eval_split' not in seen[0] and 'data_root' not in seen[0]      # the default: settings as before
    assert seen[1]['eval_split'] == 'test' and seen[1]['data_root'] == str(roots / 'a')


def test_stage_one_on_the_default_decodes_no_cifar(tmp_path, monkeypatch):
    "The data stage's notebook on digits, under papermill as `taylormlp run data` runs it: no CIFAR-10 or STS-B read."
    pytest.importorskip('papermill')
    cache = tmp_path / 'cache'
    monkeypatch.setenv('TAYLORMLP_CACHE', str(cache))          # a decode would write its array here
    monkeypatch.setenv('TAYLORMLP_STAGE_RUN', '1')             # restored afterwards (run_notebooks sets it)
    monkeypatch.setenv('TAYLORMLP_PROGRESS', '0')
    out = tmp_path / 'run'
    run_notebooks(['data'], dict(model='digits_vit', fit_samples=200, eval_samples=100), out, timeout=600,
                  log=lambda *a: None)
    summary = json.loads((out / 'data.json').read_text())
    assert summary['dataset'] == 'digits' and summary['splits']['test']['n'] == 100
    assert not (cache / 'cifar10').exists(), list((cache / 'cifar10').iterdir())
    text = (out / 'notebooks' / '01_data.ipynb').read_text()
    assert 'CIFAR-10 check skipped: a stage run loads only its own data set' in text
    assert 'STS-B check skipped: a stage run loads only its own data set' in text
