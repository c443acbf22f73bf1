"""Calibration rows of the studies (the results page reads them): python tools/calibration_rows.py vit|minilm|vit_policy|minilm_policy

Adds calibrated rows, calibrated baselines and the linearisability report to the committed study files; needs the
study run folders (runs/cifar_vit, runs/minilm_study) that `python -m taylormlp.study` writes."""
import sys, time, torch
t0 = time.time()
from taylormlp.pipeline import RunConfig
from taylormlp.study import run_calibration
from taylormlp.validate import save_results, hardware
which = sys.argv[1]
if which.startswith('vit'):
    cfg = RunConfig.from_params(model='cifar_vit', out_dir='runs/cifar_vit', ks=[16, 64, 256], k=64, fit_samples=4000,
                                eval_samples=2000, max_tokens=150000, batch_size=250)
    kw = dict(steps=200, lr=1e-3, samples=4000, batch_size=32)
    save = 'data/results/study_cifar_vit.json'
else:
    cfg = RunConfig.from_params(model='minilm', out_dir='runs/minilm_study', ks=[16, 64, 256], k=16, fit_samples=3000,
                                max_tokens=100000, batch_size=64)
    kw = dict(steps=150, lr=1e-3, samples=3000, batch_size=32)
    save = 'data/results/study_minilm.json'
jobs = {'vit': dict(methods=('lstsq', 'svd'), linearisability=True, policy_ranks=(48,)),
        'minilm': dict(methods=('lowrank_r64', 'svd_as_lowrank_r64'), linearisability=True, policy_ranks=(32, 64)),
        'vit_policy': dict(methods=(), budgets=(4.0,), policy_ranks=(48,)),
        'minilm_policy': dict(methods=(), budgets=(20.0,), policy_ranks=(32, 64))}
print('start', which, time.strftime('%H:%M:%S'), 'load', open('/proc/loadavg').read().split()[:3], 'threads',
      torch.get_num_threads(), hardware().get('cpu'), flush=True)
r = run_calibration(cfg, **jobs[which], **kw, progress=True)
path = save_results(r, save, seed=cfg.seed)
for row in r['rows']:
    if row['family'] == 'calibrated' or row['key'].startswith(('policy', 'svd_as', 'lowrank_r64')):
        print(row['key'], round(row['value'], 4), f"{row['mac_ratio']:.2f}x", row.get('calibration_seconds'), flush=True)
print('done', which, round(time.time() - t0), 's; unfinished:', r.get('unfinished'), '->', path, flush=True)
