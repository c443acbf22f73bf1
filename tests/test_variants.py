"""Variants and baselines on real block types: gated fallback inside a swapped BERT, SVD at matched cost on a VGG-style
head, IVF on clustered data, low-rank maps, and a whole study on the embedded default that resumes."""
import json, math

import pytest
import torch
from torch import nn

from taylormlp.taylor import TaylorMLP, LinearActLinear, dense_multiply_adds, multiply_adds
from taylormlp.variants import (calibrate_gate, IVFAssigner, LowRankTaylorMLP, svd_truncate, LowRankLinear, fit_refined,
                                int8_dynamic, weight_bytes)
from taylormlp.validate import block_outputs


def _clustered(n, d, centres=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(centres, d, generator=g) * 3
    return means[torch.randint(0, centres, (n,), generator=g)] + torch.randn(n, d, generator=g)


def test_gate_inside_swapped_bert_routes_to_the_original_ffn():
    transformers = pytest.importorskip('transformers')
    from taylormlp.adapt import find_mlp_sites, swapped
    cfg = transformers.BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                  vocab_size=100, max_position_embeddings=32)
    torch.manual_seed(0)
    bert = transformers.BertModel(cfg).eval()
    ids = torch.randint(0, 100, (4, 12))
    with torch.no_grad(): ref = bert(ids).last_hidden_state
    sites = find_mlp_sites(bert)
    inputs = {}
    def keep(name):
        def hook(module, args, output): inputs[name] = args[0].reshape(-1, 32)   # returns None: output unchanged
        return hook
    hooks = [s.function.fc1.register_forward_hook(keep(s.name)) for s in sites]
    with torch.no_grad(): bert(ids)
    for h in hooks: h.remove()
    reps = {}
    for s in sites:
        m = TaylorMLP.fit(s.function, inputs[s.name], k=4, coefficients='lstsq')
        reps[s.name] = m.gate(s.function, calibrate_gate(m, inputs[s.name], 1.0))     # everything exact
    with swapped(bert, reps), torch.no_grad():
        out = bert(ids).last_hidden_state
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_svd_at_matched_cost_on_a_vgg_style_head():
    torch.manual_seed(0)
    head = nn.Sequential(nn.Linear(512, 256), nn.ReLU(), nn.Dropout(0.5), nn.Linear(256, 256), nn.ReLU(),
                         nn.Linear(256, 10)).eval()
    budget = dense_multiply_adds(head) // 4
    svd = svd_truncate(head, budget)
    assert dense_multiply_adds(svd) <= budget
    assert dense_multiply_adds(svd) > 0.8 * budget              # the bisection uses the budget
    assert isinstance(svd[5], nn.Linear)                        # 256->10: factorising would not save anything
    assert isinstance(svd[0], LowRankLinear) and isinstance(svd[3], LowRankLinear)
    x = torch.randn(64, 512)
    assert torch.isfinite(svd(x)).all()
    assert head[0].weight.shape == (256, 512)                   # the original is untouched


def test_ivf_recall_and_cost_grow_with_probes():
    x = _clustered(4000, 24)
    from taylormlp.cluster import kmeans
    centres = kmeans(x, 256, seed=0).centres
    recalls, costs = [], []
    for p in (1, 2, 4, 16):
        a = IVFAssigner(centres, n_probe=p)
        recalls.append(a.recall(x)); costs.append(a.multiply_adds)
    assert recalls == sorted(recalls) and recalls[-1] == 1.0
    assert costs == sorted(costs) and costs[0] < 256 * 24


def test_low_rank_on_a_gelu_block_beats_plain_truncation():
    torch.manual_seed(0)
    block = LinearActLinear(nn.Linear(32, 128), nn.GELU(), nn.Linear(128, 32)).eval()
    x, x_test = _clustered(6000, 32), _clustered(2000, 32, seed=1)
    y = block_outputs(block, x_test)
    m = TaylorMLP.fit(block, x, k=8, coefficients='lstsq')
    err = lambda f: ((f(x_test) - y).norm(dim=1) / y.norm(dim=1)).mean().item()
    aware, plain = LowRankTaylorMLP.from_taylor(m, 6, x), LowRankTaylorMLP.from_taylor(m, 6)
    assert err(aware) <= err(plain) + 1e-6
    assert aware.multiply_adds == 8 * 32 + 6 * 64 < multiply_adds(m)


def test_int8_keeps_a_gelu_block_close_and_stores_less():
    pytest.importorskip('torchao')
    torch.manual_seed(0)
    block = LinearActLinear(nn.Linear(64, 256), nn.GELU(), nn.Linear(256, 64)).eval()
    x = torch.randn(256, 64)
    y = block(x)
    q = int8_dynamic(block)
    assert ((q(x) - y).norm() / y.norm()).item() < 0.05
    assert weight_bytes(q) < 0.4 * weight_bytes(block)


def test_study_on_the_embedded_default_resumes(tmp_path):
    from taylormlp.pipeline import RunConfig
    from taylormlp.study import run_study, target_check, study_table
    cfg = RunConfig(model='digits_vit', out_dir=str(tmp_path / 'run'), ks=[4, 8], k=8, fit_samples=600, eval_samples=200)
    r = run_study(cfg, ranks=(4,), ivf_probes=(1,), gate_fractions=(0.1,), int8=False, progress=False)
    keys = {x['key'] for x in r['rows']}
    assert {'dense', 'k1_tangent', 'global_linear', 'taylor_o0|k=4', 'taylor_o2|k=8', 'lstsq_o1|k=8', 'svd|k=8',
            'ivf_p1|k=8', 'gated_f0.1|k=8', 'lowrank_r4|k=8', 'refined|k=8', 'sequential|k=8'} <= keys
    single = [x for x in r['rows'] if x['family'] == 'single']
    assert len(single) == 4 and all(x['macs'] < 65536 for x in single)      # 2 blocks x 2 methods, the other block dense
    rows = {x['key']: x for x in r['rows']}
    assert rows['dense']['relative_to_dense'] == 1.0 and rows['dense']['agreement'] == 1.0
    assert rows['taylor_o0|k=4']['macs'] < rows['taylor_o1|k=4']['macs'] < rows['taylor_o2|k=4']['macs']
    assert 0 < rows['gated_f0.1|k=8']['routed'] < 0.3
    assert rows['svd|k=8']['macs'] <= rows['lstsq_o1|k=8']['macs']
    assert r['per_site'] and r['latency'] and r['error_vs_distance']
    # drop one row, as if the run had been killed before measuring it: only that row is measured again
    log = tmp_path / 'run' / 'study.json'
    saved = json.loads(log.read_text())
    saved['rows'] = [x for x in saved['rows'] if x['key'] != 'svd|k=8']
    log.write_text(json.dumps(saved))
    again = run_study(cfg, ranks=(4,), ivf_probes=(1,), gate_fractions=(0.1,), int8=False, progress=False)
    new = {x['key']: x for x in again['rows']}
    assert new['lstsq_o1|k=8']['seconds'] == rows['lstsq_o1|k=8']['seconds']     # not measured again
    assert new['svd|k=8']['value'] == rows['svd|k=8']['value']                    # measured again, same result
    assert 'target' in target_check(again, 2, 0.9)['text'] and '| svd |' in study_table(again)
    with pytest.raises(ValueError, match='resume=False'):
        run_study(RunConfig(model='digits_vit', out_dir=str(tmp_path / 'run'), ks=[4, 16], k=16, fit_samples=600,
                            eval_samples=200), progress=False)
