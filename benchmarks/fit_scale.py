#!/usr/bin/env python
"""Fit at scale: K-means backends, the streaming least-squares fit and collection, on 1 and 2 processes.

    python benchmarks/fit_scale.py --quick --out /tmp/fit_scale.json             # synthetic, seconds (the smoke test)
    python benchmarks/fit_scale.py --d 384 --task kmeans                          # backend comparison, MiniLM tokens
    python benchmarks/fit_scale.py --d 384 --task lstsq --k 256 --n 1e6,1e7 --processes 1,2
    python benchmarks/fit_scale.py --project                                      # 100M / 1B on paper, from the rows

Rows are appended to `--out` (default data/results/fit_scale.json) as they finish, so a killed or split run resumes:
a row whose (task, backend, d, k, n_tokens, processes) is already there is skipped unless `--force`.

Tokens. d=384: the inputs and outputs of all-MiniLM-L6-v2's first MLP block, collected over every STS-B train sentence
(`taylormlp.collect`, cached under data/cache/fit_scale); d=192: the first MLP block of the CIFAR-10 ViT, collected on
CIFAR-10 training images. Those are real activations, but fewer than 1M; the streaming rows therefore cycle them,
adding Gaussian noise of 1% of each feature's standard deviation to the inputs (the outputs stay those of the
original token: the benchmark measures cost, not fit quality). The noise comes from one fixed bank of 65,536 rows
read at a shard-dependent offset, so shard i pairs tokens and noise differently and nothing grows with `n_tokens`.
The stream is in memory: reading collected shards from disk (safetensors load and sha256 check) is timed separately
in the `collect` rows (`read_seconds`). Every JSON row says which data it used (`data`).

Tasks. `kmeans`: each backend on the same real tokens (a held-out fifth of them measures inertia per token), all
capped at 25 iterations where they iterate (torch Lloyd with k-means++, FAISS with its 256-points-per-centre sample
and on all tokens, scikit-learn MiniBatchKMeans with its defaults, the online rule, and 'lloyd': 25 Lloyd steps on a
256-per-centre sample from random rows). `lstsq`: `taylormlp.stream.fit_streaming` end to end (a sample of 256 rows
per centre from 16 evenly spaced shards, clustering with 'lloyd', one pass of per-cluster float64 statistics over
every shard, expansion and solve), in a fresh process per row (peak RSS is `getrusage` of each rank, the maximum over ranks is reported), with `torch.set_num_threads(1)`
per process; with 2 processes it runs on torch.distributed (gloo), each rank taking every other shard.
`collect`: the collection of the real tokens itself (model forward with hooks, shards to disk).

Every row records the CPU, its ISA (`torch.backends.cpu.get_cpu_capability()`), the threads, and the 1-minute load
average at its start and end: this machine is shared, so absolute rates vary; ratios are only honest within one run.
"""
from __future__ import annotations

import argparse, datetime, json, math, os, platform, resource, subprocess, sys, tempfile, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOISE = 0.01          # input noise of cycled tokens, in units of each feature's standard deviation
SHARD = 65536         # rows per shard of the cycled stream
SAMPLE_SHARDS = 16    # the clustering sample is drawn from 16 evenly spaced shards (at most 1M rows read for it)
KEY = ('task', 'backend', 'd', 'k', 'n_tokens', 'processes')

def _peak_rss() -> int: return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024     # Linux: kilobytes

def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF); return r.ru_utime + r.ru_stime

def _machine(threads: int) -> dict:
    import torch
    from taylormlp.validate import hardware
    h = hardware()
    return dict(cpu=h['cpu'], cores=h['cores'], isa=torch.backends.cpu.get_cpu_capability(), threads=threads,
                load_avg_1m=round(os.getloadavg()[0], 2))

# ---------------------------------------------------------------- the real tokens
def _cache() -> Path:
    from taylormlp.data import cache_dir
    return cache_dir() / 'fit_scale'

def _minilm_batches(limit=None):
    from taylormlp.data import load_dataset
    from taylormlp.weights import load_model
    model = load_model('minilm').eval()
    pairs = load_dataset('stsb', 'train')
    sentences = sorted(set(pairs.sentence1) | set(pairs.sentence2))[:limit]
    batches = [model.tokenize(sentences[i:i + 64]) for i in range(0, len(sentences), 64)]
    return model, 'bert.encoder.layer.0.ffn', batches, f'all-MiniLM-L6-v2 block 0, {len(sentences)} STS-B train sentences'

def _vit_batches(limit=2500):
    from torch.utils.data import DataLoader
    from taylormlp.data import load_dataset
    from taylormlp.weights import load_model
    model = load_model('cifar_vit').eval()
    ds = load_dataset('cifar10', 'train', limit=limit)
    batches = [b[0] for b in DataLoader(ds, batch_size=100)]
    return model, 'blocks.0.mlp', batches, f'CIFAR-10 ViT block 0, {limit} CIFAR-10 training images'

def real_tokens(d: int, collect_row: bool = False):
    "`(model, site, collection folder, description)` of the real tokens at width d (collected and cached once)."
    from taylormlp.adapt import get_site
    from taylormlp.collect import collect
    model, site, batches, what = (_minilm_batches if d == 384 else _vit_batches)()
    folder = _cache() / f'collection_d{d}'
    t0, c0 = time.perf_counter(), _cpu()
    col = collect(model, [get_site(model, site)], batches, folder, progress=False)
    seconds, cpu = time.perf_counter() - t0, _cpu() - c0
    t0 = time.perf_counter()
    for _ in col.iter_shards(site): pass
    return model, get_site(model, site), col, what, dict(seconds=seconds, cpu_seconds=cpu,
                                                         read_seconds=time.perf_counter() - t0)

def base_tensors(d: int, quick: bool = False):
    "`(x, y, block, description)`: the real tokens (or, with `quick`, a small random block and inputs)."
    import torch
    if quick:
        from taylormlp.taylor import LinearActLinear
        torch.manual_seed(0)
        block = LinearActLinear(torch.nn.Linear(d, 2 * d), torch.nn.GELU(), torch.nn.Linear(2 * d, d)).eval()
        x = torch.randn(6000, d) + torch.randn(8, d).repeat_interleave(750, 0)
        with torch.no_grad(): y = block(x)
        return x, y, block, f'synthetic: random GELU block {d}->{2 * d}->{d}, 6000 clustered Gaussian inputs'
    model, site, col, what, _ = real_tokens(d)
    return col.inputs(site.name), col.outputs(site.name), site.function, what

def cycled_source(x, y, n_tokens: int, seed: int = 0):
    "A `ShardSource` of `n_tokens` rows cycling the real rows `x`, `y` with 1% input noise, made shard by shard."
    import torch
    from taylormlp.stream import ShardSource
    g = torch.Generator().manual_seed(seed)
    bank = torch.randn(SHARD, x.shape[1], generator=g) * (x.std(0) * NOISE)     # fixed memory, reused with offsets
    n = x.shape[0]
    def reader(i):
        rows = min(SHARD, n_tokens - i * SHARD)
        t = torch.arange(rows)
        idx = (t + i * SHARD) % n
        return x[idx] + bank[(t + i * 7919) % SHARD], y[idx]      # shard i pairs rows and noise differently
    count = math.ceil(n_tokens / SHARD)
    return ShardSource([lambda i=i: reader(i) for i in range(count)],
                       [min(SHARD, n_tokens - i * SHARD) for i in range(count)], [f'cycled {i}' for i in range(count)],
                       x.shape[1], y.shape[1])

# ---------------------------------------------------------------- one lstsq row: a fresh process (or two)
def _rank(rank: int, size: int, spec: dict, folder: str):
    import torch
    torch.set_num_threads(1)
    if size > 1:
        import torch.distributed as dist
        from datetime import timedelta
        dist.init_process_group('gloo', init_method=f'file://{folder}/init', rank=rank, world_size=size,
                                timeout=timedelta(minutes=30))
    from taylormlp import stream
    x, y, block, what = base_tensors(spec['d'], spec['quick'])
    base_rss = _peak_rss()
    source = cycled_source(x, y, spec['n_tokens'])
    if size > 1: torch.distributed.barrier()
    t0, c0 = time.perf_counter(), _cpu()
    model = stream.fit_streaming(block, source, k=spec['k'], clustering='lloyd', sample_per_centre=256,
                                 sample_shards=SAMPLE_SHARDS, niter=spec['niter'])
    seconds, cpu = time.perf_counter() - t0, _cpu() - c0
    reduce_seconds = 0.0
    if size > 1:          # time one all_reduce of statistics of this size, for the projection beyond one machine
        k, q, d_out = spec['k'], spec['d'] + 1, y.shape[1]
        buf = torch.zeros(k, q, q + d_out, dtype=torch.float64)
        torch.distributed.barrier(); t = time.perf_counter(); torch.distributed.all_reduce(buf)
        reduce_seconds = time.perf_counter() - t
        torch.distributed.destroy_process_group()
    probe = x[:4096]
    out = dict(rank=rank, seconds=seconds, cpu_seconds=cpu, peak_rss_bytes=_peak_rss(), base_rss_bytes=base_rss,
               cluster_seconds=model.meta['cluster_seconds'], statistics_seconds=model.meta['statistics_seconds'],
               all_reduce_seconds=reduce_seconds, n_fit=model.meta['n_fit'], data=what,
               statistics_bytes=8 * spec['k'] * (spec['d'] + 1) * (spec['d'] + 1 + y.shape[1]))
    Path(folder, f'rank{rank}.json').write_text(json.dumps(out))
    if rank == 0: torch.save(model(probe), Path(folder) / 'probe.pt')

def _lstsq_worker(spec: dict) -> dict:
    "Runs in its own process: 1 process directly, more with torch.multiprocessing (spawn)."
    folder = spec['folder']
    if spec['processes'] == 1: _rank(0, 1, spec, folder)
    else:
        import torch.multiprocessing as mp
        mp.start_processes(_rank, args=(spec['processes'], spec, folder), nprocs=spec['processes'], join=True,
                           start_method='spawn')
    ranks = [json.loads(Path(folder, f'rank{r}.json').read_text()) for r in range(spec['processes'])]
    return ranks

def lstsq_row(d, k, n_tokens, processes, quick, work: Path, niter: int) -> dict:
    import torch
    folder = work / f'lstsq_d{d}_k{k}_n{n_tokens}_p{processes}'
    folder.mkdir(parents=True, exist_ok=True)
    for f in folder.glob('*'): f.unlink()
    spec = dict(d=d, k=k, n_tokens=n_tokens, processes=processes, quick=quick, folder=str(folder), niter=niter)
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, '--worker', json.dumps(spec)], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode: raise RuntimeError(f"lstsq worker failed ({spec}):\n{done.stderr[-3000:]}")
    ranks = [json.loads(Path(folder, f'rank{r}.json').read_text()) for r in range(processes)]
    seconds = max(r['seconds'] for r in ranks)
    row = dict(task='lstsq', backend='stream/lloyd', d=d, k=k, n_tokens=n_tokens, processes=processes,
               seconds=round(seconds, 3), tokens_per_s=round(n_tokens / seconds, 1),
               tokens_per_min_per_core=round(60 * n_tokens / seconds / processes, 1),
               peak_rss_bytes=max(r['peak_rss_bytes'] for r in ranks),
               peak_rss_bytes_all_ranks=sum(r['peak_rss_bytes'] for r in ranks),
               base_rss_bytes=max(r['base_rss_bytes'] for r in ranks), statistics_bytes=ranks[0]['statistics_bytes'],
               cpu_seconds=round(sum(r['cpu_seconds'] for r in ranks), 3),
               cluster_seconds=ranks[0]['cluster_seconds'], statistics_seconds=ranks[0]['statistics_seconds'],
               all_reduce_seconds=round(ranks[0]['all_reduce_seconds'], 4), n_fit=ranks[0]['n_fit'],
               process_wall_seconds=round(wall, 2), lloyd_iterations=niter, sample_per_centre=256, sample_shards=SAMPLE_SHARDS,
               data=ranks[0]['data'] + ('' if quick else f'; cycled to {n_tokens} rows with {NOISE:.0%} input noise'),
               **_machine(1), load_avg_1m_end=round(os.getloadavg()[0], 2))
    row['load_avg_1m'] = round(load0, 2)
    probe = torch.load(folder / 'probe.pt')
    ref = work / f'lstsq_d{d}_k{k}_n{n_tokens}_p1' / 'probe.pt'
    if processes > 1 and ref.exists():
        one = torch.load(ref)
        row['max_abs_diff_vs_1_process'] = float((probe - one).abs().max())
        row['output_scale'] = float(one.abs().max())
    return row

# ---------------------------------------------------------------- K-means backends on the same tokens
def kmeans_rows(d: int, k: int, quick: bool, threads: int) -> list[dict]:
    import torch
    from taylormlp.cluster import kmeans, nearest_centre
    from taylormlp.stream import ShardSource, streaming_kmeans
    torch.set_num_threads(threads)
    x, _, _, what = base_tensors(d, quick)
    g = torch.Generator().manual_seed(0)
    x = x[torch.randperm(x.shape[0], generator=g)]
    held = x.shape[0] // 5
    test, train = x[:held], x[held:]
    runs = {'torch': lambda: kmeans(train, k, 'torch', seed=0, max_iter=25, keep_labels=False).centres,
            'faiss': lambda: kmeans(train, k, 'faiss', seed=0, niter=25, keep_labels=False).centres,
            'faiss/all': lambda: kmeans(train, k, 'faiss', seed=0, niter=25, max_points_per_centroid=None,
                                        keep_labels=False).centres,
            'minibatch': lambda: kmeans(train, k, 'minibatch', seed=0, keep_labels=False).centres,
            'online': lambda: kmeans(train, k, 'online', seed=0, batch_size=max(4096, 2 * k), keep_labels=False).centres,
            'lloyd': lambda: streaming_kmeans(ShardSource.from_tensors(train, rows_per_shard=SHARD), k, 'lloyd',
                                              sample_per_centre=256, seed=0, niter=25)}
    try: import faiss; faiss.omp_set_num_threads(threads)
    except ImportError:
        print('faiss-cpu is not installed: its rows are skipped'); runs.pop('faiss'); runs.pop('faiss/all')
    rows = []
    for backend, run in runs.items():
        load0, t0, c0 = os.getloadavg()[0], time.perf_counter(), _cpu()
        centres = run()
        seconds, cpu = time.perf_counter() - t0, _cpu() - c0
        inertia = float(nearest_centre(test, centres.float(), dtype=torch.float64)[1].sum()) / test.shape[0]
        train_inertia = float(nearest_centre(train, centres.float(), dtype=torch.float64)[1].sum()) / train.shape[0]
        rows.append(dict(task='kmeans', backend=backend, d=d, k=k, n_tokens=train.shape[0], processes=1,
                         seconds=round(seconds, 3), tokens_per_s=round(train.shape[0] / seconds, 1),
                         cpu_seconds=round(cpu, 3), peak_rss_bytes=_peak_rss(), held_out_tokens=test.shape[0],
                         held_out_inertia_per_token=inertia, train_inertia_per_token=train_inertia, data=what,
                         **_machine(threads), load_avg_1m_end=round(os.getloadavg()[0], 2)))
        rows[-1]['load_avg_1m'] = round(load0, 2)
        print(f"kmeans d={d} k={k} {backend:10s} {seconds:8.2f} s  held-out inertia/token {inertia:.5g}", flush=True)
    return rows

def collect_row(d: int) -> dict:
    import shutil, torch
    torch.set_num_threads(1)
    shutil.rmtree(_cache() / f'collection_d{d}', ignore_errors=True)
    load0 = os.getloadavg()[0]
    model, site, col, what, t = real_tokens(d)
    n = col.num_rows(site.name)
    return dict(task='collect', backend='taylormlp.collect', d=d, k=None, n_tokens=n, processes=1,
                seconds=round(t['seconds'], 3), tokens_per_s=round(n / t['seconds'], 1),
                cpu_seconds=round(t['cpu_seconds'], 3), peak_rss_bytes=_peak_rss(), data=what, **_machine(1),
                read_seconds=round(t['read_seconds'], 3), read_tokens_per_s=round(n / t['read_seconds'], 1),
                load_avg_1m_end=round(os.getloadavg()[0], 2), load_avg_1m_start=round(load0, 2))

# ---------------------------------------------------------------- results file
def _load(out: Path) -> dict:
    if out.exists(): return json.loads(out.read_text())
    return dict(benchmark='fit_scale', rows=[], notes=[])

def _save(out: Path, results: dict):
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + '.tmp'); tmp.write_text(json.dumps(results, indent=1)); os.replace(tmp, out)

def _add(out: Path, rows: list[dict]):
    results = _load(out)          # re-read: rows may have been added by another piece of the run
    keys = {tuple(r[key] for key in KEY) for r in rows}
    results['rows'] = [r for r in results['rows'] if tuple(r[key] for key in KEY) not in keys] + rows
    import torch
    results['provenance'] = dict(torch=torch.__version__, python=platform.python_version(),
                                 date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'),
                                 command=' '.join(sys.argv), machine_shared=True)
    _save(out, results)

def _have(out: Path, row_key) -> bool:
    return any(tuple(r[key] for key in KEY) == row_key for r in _load(out)['rows'])

def project(out: Path) -> dict:
    "100M and 1B tokens on paper from the measured lstsq rows (the statistics pass is linear in the tokens)."
    results = _load(out)
    rows = [r for r in results['rows'] if r['task'] == 'lstsq']
    paper = []
    for r in rows:
        if r['n_tokens'] != max(x['n_tokens'] for x in rows if (x['d'], x['k'], x['processes']) ==
                                (r['d'], r['k'], r['processes'])): continue
        per_token = r['statistics_seconds'] / r['n_tokens']          # seconds per token of this many processes
        fixed = r['seconds'] - r['statistics_seconds']                # sample, clustering, expansion, solve
        for n in (10**8, 10**9):
            hours = (fixed + per_token * n) / 3600
            linear = r['statistics_seconds'] / r['seconds']            # share of the CPU time that grows with N
            cpu_hours = r['cpu_seconds'] * ((1 - linear) + linear * n / r['n_tokens']) / 3600
            paper.append(dict(d=r['d'], k=r['k'], processes=r['processes'], n_tokens=n, hours=round(hours, 2),
                              core_hours=round(hours * r['processes'], 2), cpu_core_hours=round(cpu_hours, 2),
                              from_n_tokens=r['n_tokens'],
                              peak_rss_bytes=r['peak_rss_bytes'],
                              machines_of_2_cores_for_1_hour=round(hours * r['processes'] / 2, 1),
                              all_reduce_seconds_per_pass=r.get('all_reduce_seconds')))
    results['projection'] = dict(
        method="seconds - statistics_seconds (fixed: a 256-per-centre sample, clustering, expansion, solve; the sample "
               "is drawn in one more pass over the shards, counted as fixed here, linear in N in truth: it is I/O only) "
               "+ statistics_seconds / n_tokens x N, from the largest "
               "measured n_tokens of each (d, k, processes); memory is the measured peak, which does not grow with N. "
               "Across machines each rank adds one all_reduce of the statistics per fit (all_reduce_seconds, measured "
               "here between 2 local processes; over a network it is statistics_bytes / bandwidth), so M machines "
               "divide the statistics pass by M at a cost of one reduction of statistics_bytes. cpu_core_hours: the same from "
               "the measured CPU time (user + system, summed over ranks; it does not grow when the shared machine is "
               "busy), split in the same fixed and linear shares as the wall time.",
        rows=paper)
    _save(out, results)
    return results['projection']

def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--quick', action='store_true', help='synthetic d=16 tokens, tiny sizes (the smoke test)')
    p.add_argument('--task', default='lstsq', help='kmeans, lstsq or collect (comma-separated)')
    p.add_argument('--d', default='384', help='384 (MiniLM) and/or 192 (ViT), comma-separated')
    p.add_argument('--k', default='16,256,1024')
    p.add_argument('--n', default='1e6,1e7', help='tokens of the streaming rows')
    p.add_argument('--processes', default='1,2')
    p.add_argument('--niter', type=int, default=25, help='Lloyd steps on the sample')
    p.add_argument('--threads', type=int, default=1, help='threads of the kmeans rows')
    p.add_argument('--out', default=str(ROOT / 'data/results/fit_scale.json'))
    p.add_argument('--work', default=str(ROOT / 'runs/fit_scale'))
    p.add_argument('--force', action='store_true')
    p.add_argument('--project', action='store_true', help='only write the 100M / 1B projection from existing rows')
    p.add_argument('--worker', help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker: _lstsq_worker(json.loads(a.worker)); return
    out, work = Path(a.out), Path(a.work)
    if a.project: print(json.dumps(project(out), indent=1)); return
    ints = lambda s: [int(float(v)) for v in s.split(',') if v]
    ds, ks, ns, ps = ints(a.d), ints(a.k), ints(a.n), ints(a.processes)
    if a.quick: ds, ks, ns, ps, niter = [16], [4], [20000], [1, 2], 5
    else: niter = a.niter
    for task in a.task.split(','):
        for d in ds:
            if task == 'collect':
                if a.force or not _have(out, ('collect', 'taylormlp.collect', d, None, None, 1)):
                    row = collect_row(d); print(row, flush=True); _add(out, [row])
            for k in ks:
                if task == 'kmeans':
                    if a.force or not any(r['task'] == 'kmeans' and (r['d'], r['k']) == (d, k)
                                          for r in _load(out)['rows']):
                        _add(out, kmeans_rows(d, k, a.quick, a.threads))
                if task == 'lstsq':
                    for n in ns:
                        for procs in ps:
                            if not a.force and _have(out, ('lstsq', 'stream/lloyd', d, k, n, procs)): continue
                            row = lstsq_row(d, k, n, procs, a.quick, work, niter)
                            print(f"lstsq d={d} k={k} n={n} p={procs}: {row['seconds']} s, "
                                  f"{row['tokens_per_min_per_core'] / 1e6:.2f}M tokens/min/core, peak "
                                  f"{row['peak_rss_bytes'] / 2**20:.0f} MiB, load {row['load_avg_1m']}", flush=True)
                            _add(out, [row])
    project(out)

if __name__ == '__main__':
    main()
