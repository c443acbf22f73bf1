"""The three studies behind the results page, exactly as run (python tools/run_studies.py vgg|vit|minilm).

Equivalent to `python -m taylormlp.study` with the settings below; each writes runs/<model>/study.json row by row
(resumable) and data/results/study_<model>.json with provenance. The committed files were produced by this script
while it sat at runs/logs/study.py (hence the `command` recorded in their provenance).
"""
import sys, json
from taylormlp.pipeline import RunConfig
from taylormlp.study import run_study
from taylormlp.validate import save_results
name = sys.argv[1]
if name == 'vgg':
    cfg = RunConfig(model='cifar_vgg16_bn', out_dir='runs/cifar_vgg16_bn', ks=[1, 5, 10, 20, 40, 80, 120, 500], k=120,
                    fit_samples=20000, batch_size=256)
    kw = dict(ranks=(2, 5), ivf_probes=(1, 4), gate_fractions=(0.02, 0.05, 0.1))
elif name == 'vit':
    cfg = RunConfig(model='cifar_vit', out_dir='runs/cifar_vit', ks=[16, 64, 256], k=64, fit_samples=4000,
                    eval_samples=2000, max_tokens=150000, batch_size=250)
    kw = dict(ranks=(16, 48), ivf_probes=(1, 4), gate_fractions=(0.02, 0.05, 0.08, 0.2))
elif name == 'minilm':
    cfg = RunConfig(model='minilm', out_dir='runs/minilm_study', ks=[16, 64, 256], k=16, fit_samples=3000, batch_size=64,
                    max_tokens=100000)
    kw = dict(ranks=(32, 96), ivf_probes=(1, 4), gate_fractions=(0.05, 0.1, 0.2))
r = run_study(cfg, **kw)
save_results(r, f'data/results/study_{cfg.model}.json', seed=cfg.seed)
print('done', name)
