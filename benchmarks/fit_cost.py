#!/usr/bin/env python
"""Time and peak memory to fit TaylorMLPs for a MiniLM-sized model: 6 blocks 384 -> 1536 -> 384 (GELU), k = 256.

    python benchmarks/fit_cost.py [--blocks 6] [--k 256] [--n 100000] [--max-iter 20] [--out data/results/fit_cost.json]

Each stage runs in a fresh Python subprocess and reports its wall time and its peak resident memory
(`resource.getrusage(RUSAGE_SELF).ru_maxrss`), so one stage's allocations never hide in another's peak; the RSS
right after `import torch, taylormlp` is reported too (the baseline every stage pays).

Stages: `cluster` (`taylormlp.cluster.kmeans`, method 'torch', on `--n` random inputs per block; skipped with a
message if that module cannot be imported), `expand` order 1 and order 2 (closed form at `k` random centres per
block), and `fit` order 2 (`TaylorMLP.fit`: clustering and expansion in one call).

Lloyd iterations are capped at `--max-iter` (default 20, kmeans' own default is 100): each iteration costs
n * k * d = 9.8 G multiply-adds here, so the cap bounds the clustering cost; the number of iterations run (the
cap, or fewer when K-means converged) is reported per block. Wall time depends on what else runs on the
machine; CPU time (user + system) is reported beside it.
"""
from __future__ import annotations

import argparse, datetime, json, os, platform, resource, subprocess, sys, time
from pathlib import Path

def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024     # Linux reports kilobytes

def _cpu_seconds() -> float:
    "User + system CPU time of this process: unlike wall time, it does not grow when other processes share the CPUs."
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

def worker(stage: str, order: int, blocks: int, k: int, n: int, max_iter: int, seed: int) -> dict:
    import torch
    from torch import nn
    from taylormlp.taylor import LinearActLinear, TaylorMLP, expand, expansion_nbytes
    baseline = _rss_mb()
    if stage in ('cluster', 'fit'):
        try: from taylormlp.cluster import kmeans   # noqa: F401  (written in parallel by another notebook)
        except Exception as e: return dict(skipped=f"taylormlp.cluster.kmeans could not be imported ({e})")
    g = torch.Generator().manual_seed(seed)
    per_block, table_bytes = [], 0
    t_all, cpu_all = time.perf_counter(), _cpu_seconds()
    for b in range(blocks):
        torch.manual_seed(seed + b)
        block = LinearActLinear(nn.Linear(384, 1536), nn.GELU(), nn.Linear(1536, 384)).eval()
        t = time.perf_counter()
        if stage == 'cluster':
            from taylormlp.cluster import kmeans
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
    return dict(seconds=time.perf_counter() - t_all, cpu_seconds=_cpu_seconds() - cpu_all, per_block=per_block,
                peak_rss_mb=_rss_mb(),
                rss_after_imports_mb=baseline, table_bytes=table_bytes or None,
                expected_table_bytes_per_block=expansion_nbytes(k, 384, 384, order) if stage != 'cluster' else None)

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--blocks', type=int, default=6)
    p.add_argument('--k', type=int, default=256)
    p.add_argument('--n', type=int, default=100_000, help='random inputs clustered per block')
    p.add_argument('--max-iter', type=int, default=20,
                   help='Lloyd iterations at most (kmeans default 100; random inputs use them all, see the docstring)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--stages', nargs='*', default=['cluster', 'expand:1', 'expand:2', 'fit:2'])
    p.add_argument('--out', default='data/results/fit_cost.json')
    p.add_argument('--worker', default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        stage, order = (a.worker.split(':') + ['1'])[:2]
        print(json.dumps(worker(stage, int(order), a.blocks, a.k, a.n, a.max_iter, a.seed)))
        return
    import torch
    results = []
    for s in a.stages:
        cmd = [sys.executable, __file__, '--worker', s, '--blocks', str(a.blocks), '--k', str(a.k), '--n', str(a.n),
               '--max-iter', str(a.max_iter), '--seed', str(a.seed)]
        print(f"{s}: running in a fresh process ...", flush=True)
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"stage {s} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        stage, order = (s.split(':') + ['1'])[:2]
        r.update(stage=stage, order=None if stage == 'cluster' else int(order),
                 process_seconds=round(time.perf_counter() - t, 1))
        results.append(r)
        if 'skipped' in r: print(f"  skipped: {r['skipped']}")
        else:
            iters = [b.get('n_iter') for b in r['per_block'] if b.get('n_iter') is not None]
            print(f"  {r['seconds']:.1f} s wall, {r['cpu_seconds']:.1f} s CPU for {a.blocks} blocks (per block "
                  f"{r['seconds'] / a.blocks:.1f} s"
                  + (f", Lloyd iterations {iters}" if iters else '') + f"); peak RSS {r['peak_rss_mb']:.0f} MB "
                  f"(after imports {r['rss_after_imports_mb']:.0f} MB)"
                  + (f"; tables {r['table_bytes'] / 1e6:.0f} MB" if r.get('table_bytes') else ''))
    out = dict(command='python benchmarks/fit_cost.py' + (' ' + ' '.join(sys.argv[1:]) if sys.argv[1:] else ''),
               config=dict(blocks=a.blocks, k=a.k, n=a.n, max_iter=a.max_iter, d_in=384, hidden=1536, d_out=384,
                           activation='GELU'),
               hardware=dict(cpu_count=os.cpu_count(), torch=torch.__version__, python=platform.python_version(),
                             date=datetime.datetime.now().astimezone().isoformat(timespec='seconds'),
                             load_average=list(os.getloadavg())),
               stages=results)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1))
    print(f"wrote {a.out}")

if __name__ == '__main__':
    main()
