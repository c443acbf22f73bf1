"The causal LM on the Python standard library (taylormlp.lm), on its tiny test config (never the study schedule)."
import math

import pytest
import torch

pytest.importorskip('transformers', reason='taylormlp.lm builds on transformers (a dev requirement)')

from taylormlp.adapt import find_mlp_sites, swapped
from taylormlp.lm import (HELD_OUT_EVERY, LM_RECIPES, TextWindows, corpus_files, held_out_perplexity, split_of,
                          token_stream, train_lm)
from taylormlp.runs import RunConfig
from taylormlp.taylor import GatedLinear, TaylorMLP


@pytest.fixture(scope='module')
def tiny():
    return train_lm('pystdlib_llama_tiny', progress=False)    # 40 steps, cached under data/cache/checkpoints


def test_split_is_by_file_and_deterministic():
    train, test = corpus_files('train'), corpus_files('test')
    names = [p.name for p in train + test]
    assert len(names) == len(set(names)) and sorted(names) == sorted(p.name for p in train[0].parent.glob('*.py'))
    assert 0.03 < len(test) / len(names) < 0.3 and all(split_of(p.name) == 'test' for p in test)
    assert [split_of(n) for n in ('os.py', 'typing.py', 'ast.py')] == [split_of(n) for n in ('os.py', 'typing.py', 'ast.py')]
    s = token_stream('test')
    assert s.dtype == torch.long and int(s.max()) < 256 and int((s == 0).sum()) == len(test)   # one separator a file
    assert HELD_OUT_EVERY == 10


def test_tiny_lm_learns_and_its_card_says_how(tiny):
    card = tiny.card if hasattr(tiny, 'card') else None
    if card is None:
        import json
        card = json.loads(tiny.checkpoint.with_suffix('.json').read_text())
    assert card['recipe'] == LM_RECIPES['pystdlib_llama_tiny'] and card['recipe']['seed'] == 0
    assert card['held_out_perplexity'] < 60 < 256                          # far below a uniform guess over bytes
    assert math.isclose(card['held_out_bits_per_byte'], math.log2(card['held_out_perplexity']), rel_tol=1e-9)
    test = TextWindows.from_stream(token_stream('test'), 128, 'test')
    again = held_out_perplexity(tiny, torch.utils.data.Subset(test, list(range(512))))
    assert math.isclose(again['perplexity'], card['held_out_perplexity'], rel_tol=1e-4)   # the card is reproducible


def test_sites_swaps_and_the_perplexity_metric(tiny, tmp_path):
    from taylormlp.study import Evaluator
    sites = find_mlp_sites(tiny)
    assert [s.name for s in sites] == ['lm.model.layers.0.mlp', 'lm.model.layers.1.mlp']
    assert all(isinstance(s.function, GatedLinear) for s in sites)
    cfg = RunConfig.from_params(model='pystdlib_llama_tiny', out_dir=str(tmp_path), ks=[4], k=4, eval_samples=16,
                                batch_size=8, progress=False)
    assert (cfg.dataset, cfg.eval_split, cfg.metric) == ('pystdlib', 'test', 'perplexity')
    ev = Evaluator(cfg, tiny, sites)
    assert 1 < ev.value < 256 and ev({})['relative_to_dense'] == 1.0
    # order 0 at every real input of the evaluated windows reproduces the model; zeroing the MLPs does not
    from taylormlp.tasks import load_data
    ids = torch.stack([load_data(cfg, 'test')[i] for i in range(16)])
    seen = {}
    hooks = [tiny.get_submodule(s.name).register_forward_hook(lambda m, i, o, n=s.name: seen.setdefault(n, []).append(i[0]))
             for s in sites]
    with torch.no_grad():
        for i in range(0, 16, 8): tiny(input_ids=ids[i:i + 8])
    for h in hooks: h.remove()
    exact = {}
    for s in sites:
        x = torch.cat([t.reshape(-1, s.d_in) for t in seen[s.name]])
        with torch.no_grad(): exact[s.name] = TaylorMLP(x, s.function(x))
    r = ev(exact)
    assert abs(r['relative_to_dense'] - 1) < 1e-4
    zero = {s.name: TaylorMLP(torch.zeros(1, s.d_in), torch.zeros(1, s.d_out)) for s in sites}
    assert ev(zero)['relative_to_dense'] > 1.01                           # the MLPs matter: removing them costs
