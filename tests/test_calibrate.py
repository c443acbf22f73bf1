"""Calibration on real block types: a BERT encoder (window reconstruction through layers called with attention masks,
embedding cosine on the output), and the study's calibrated rows and policy on the embedded digits ViT."""
import json

import pytest
import torch

from taylormlp.taylor import TaylorMLP
from taylormlp.calibrate import calibrate_window, calibrate_output, objective_value, layer_of


def _bert():
    transformers = pytest.importorskip('transformers')
    cfg = transformers.BertConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64, initializer_range=0.3,
                                  vocab_size=100, max_position_embeddings=32)
    torch.manual_seed(0)
    return transformers.BertModel(cfg).eval()


class _Pooled(torch.nn.Module):
    "Mean-pooled, normalised embeddings of a BERT (the sentence-encoder head)."
    def __init__(self, bert): super().__init__(); self.bert = bert
    def forward(self, input_ids, attention_mask):
        h = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        m = attention_mask.unsqueeze(-1).float()
        return torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=1)


def _batches(n=6):
    g = torch.Generator().manual_seed(1)
    out = []
    for _ in range(n):
        ids = torch.randint(1, 100, (8, 10), generator=g)
        mask = torch.ones(8, 10, dtype=torch.long)
        mask[:4, 6:] = 0                                     # padded sentences: the mask must reach every layer
        out.append(dict(input_ids=ids, attention_mask=mask))
    return out


def _fits(model, root, batches, k=4):
    from taylormlp.adapt import find_mlp_sites, hook_points
    sites, rows = find_mlp_sites(root), {}
    hooks = []
    for s in sites:
        first, _ = hook_points(root, s)
        rows[s.name] = []
        hooks.append(first.register_forward_pre_hook(lambda m, a, n=s.name: rows[n].append(a[0].reshape(-1, 32))))
    with torch.no_grad():
        for b in batches: model(**b)
    for h in hooks: h.remove()
    return {s.name: TaylorMLP.fit(s.function, torch.cat(rows[s.name]), k=k, coefficients='lstsq') for s in sites}


def test_window_and_output_calibration_on_bert_with_masks():
    bert = _bert()
    model = _Pooled(bert).eval()
    batches = _batches()
    assert layer_of(bert, 'encoder.layer.1.ffn') == 'encoder.layer.1'
    start = objective_value(model, _fits(model, bert, batches), batches, 'cosine', root=bert)
    reps = _fits(model, bert, batches)
    r = calibrate_window(model, reps, batches, window=2, steps=15, lr=3e-4, root=bert, progress=False)
    assert r['finished'] and list(r['values']) == [f'encoder.layer.{i}.ffn' for i in range(3)]
    for v in r['values'].values(): assert v['end'] < v['start']
    reps = _fits(model, bert, batches)
    r = calibrate_output(model, reps, batches, loss='cosine', steps=30, lr=1e-3, root=bert, progress=False)
    assert r['end_value'] < 0.7 * r['start_value']
    assert abs(r['start_value'] - start) < 1e-6
    # the written-back TaylorMLPs, evaluated by their own forward, give the calibrated objective
    assert abs(objective_value(model, reps, batches[:8], 'cosine', root=bert) - r['end_value']) < 1e-6
    assert all(m.meta.get('calibrated') for m in reps.values())


def test_bad_inputs_are_named():
    bert = _bert()
    model = _Pooled(bert).eval()
    batches = _batches(2)
    with pytest.raises(ValueError, match='window=0'):
        calibrate_window(model, _fits(model, bert, batches), batches, window=0, root=bert)
    with pytest.raises(ValueError, match='steps=-1'):
        calibrate_output(model, _fits(model, bert, batches), batches, steps=-1, root=bert)
    reps = _fits(model, bert, batches)
    reps[next(iter(reps))].gate(torch.nn.Identity(), 1.0)
    with pytest.raises(ValueError, match='before attaching a gate'):
        calibrate_output(model, reps, batches, root=bert)


def test_study_calibrated_rows_and_policy_on_digits(tmp_path):
    from taylormlp.pipeline import RunConfig
    from taylormlp.study import StudyLog, run_calibration
    cfg = RunConfig(model='digits_vit', out_dir=str(tmp_path / 'run'), ks=[4], k=4, fit_samples=300, eval_samples=200,
                    max_tokens=4000, progress=False)
    with pytest.raises(FileNotFoundError, match='run the study first'):
        run_calibration(cfg)
    StudyLog(cfg.path / 'study.json', dict(model='digits_vit')).save()
    r = run_calibration(cfg, methods=('lstsq', 'svd'), steps=12, lr=1e-3, samples=200, batch_size=50,
                        budgets=(2.0,), policy_ranks=(), progress=False)
    rows = {x['key']: x for x in r['rows']}
    for key in ('lstsq_o1|k=4', 'svd|k=4', 'cal_output_lstsq|k=4', 'cal_output_svd|k=4', 'policy_2x|k=4',
                'cal_output_policy_2x|k=4'):
        assert key in rows, key
    cal = rows['cal_output_lstsq|k=4']
    assert cal['end_value'] < cal['start_value'] and cal['family'] == 'calibrated' and len(cal['loss_curve']) == 12
    assert rows['cal_output_svd|k=4']['macs'] <= rows['cal_output_lstsq|k=4']['macs']      # same budget or less
    assert rows['policy_2x|k=4']['mac_ratio'] >= 2.0
    lin = r['linearisability']['sites']
    assert all(0 <= s['global_r2'] <= s['cluster_r2'] <= 1 for s in lin)
    # a rerun resumes: nothing is measured again
    before = json.loads((cfg.path / 'study.json').read_text())
    run_calibration(cfg, methods=('lstsq', 'svd'), steps=12, lr=1e-3, samples=200, batch_size=50, budgets=(2.0,),
                    policy_ranks=(), progress=False)
    assert json.loads((cfg.path / 'study.json').read_text())['rows'] == before['rows']
