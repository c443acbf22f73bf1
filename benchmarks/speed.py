#!/usr/bin/env python
"""Inference speed of TaylorMLP against the dense MLP block it replaces, side by side in one run.

    python benchmarks/speed.py [--quick] [--out data/results/speed.json]

Two regimes: (a) one token on one thread (edge inference), (b) 4096 tokens on all threads (batch inference).
For every shape, k and variant (order 1, order 2 diagonal, least-squares order 1) it times the dense block,
`TaylorMLP.forward` (route 'TaylorMLP.forward': the library's default path, what `tm(x)` runs, input checks
included) and the routes of `taylormlp.fast`; for the low-rank variant (`taylormlp.variants.LowRankTaylorMLP`, rank
min(d_in, d_out) // 8) its default path (route 'cpp', the C++ kernel) and its loop over clusters (route 'eager').
Route 'cpp float16' is the C++ route reading float16 copies of the slope and Hessian tables
(`FastTaylorMLP(tm, table_dtype=torch.float16)`); its rows carry the relative difference of its outputs from the
float32 tables' (`half_error`), and the targets are evaluated twice: on float32 tables, and with it allowed.
It reports

* speed ratio  = dense time / TaylorMLP time (measured),
* MAC ratio    = dense_multiply_adds / multiply_adds (the limit if time were proportional to multiply-adds),
* efficiency   = speed ratio / MAC ratio,
* traffic ratio = bytes the dense block must read / bytes the TaylorMLP must read (weights and tables only),
* traffic floor = those TaylorMLP bytes / the machine's streaming bandwidth on the regime's threads (measured at the
  start and end of the run): the least time a call can take when its tables come from DRAM, and
  efficiency at floor = the efficiency a call that took only that long would have (the most memory allows),
* storage of both (dense parameters, TaylorMLP state_dict).

Weights, centres and tables are random (timing does not depend on trained values). Inputs are drawn near random
centres, so clusters are balanced, and each call gets the next input of a pool of distinct inputs.
Times are `torch.utils.benchmark.Timer.blocked_autorange` medians, merged over interleaved rounds.
"""
from __future__ import annotations

import argparse, datetime, gc, itertools, json, os, platform, sys, time
from pathlib import Path

import torch
from torch import nn
from torch.utils.benchmark import Measurement, Timer

from taylormlp.taylor import LinearActLinear, TaylorMLP, dense_multiply_adds, multiply_adds
from taylormlp.fast import FastTaylorMLP, load_extension
from taylormlp.variants import LowRankTaylorMLP

SHAPES = {   # name: (layer widths, activation)
    'CIFAR VGG16 head': ([512, 4096, 4096, 10], 'relu'),
    'ImageNet VGG16 head': ([25088, 4096, 4096, 1000], 'relu'),
    'DeiT-S MLP': ([384, 1536, 384], 'gelu'),
    'DeiT-B MLP': ([768, 3072, 768], 'gelu'),
    'MiniLM MLP': ([384, 1536, 384], 'gelu'),
}
TRANSFORMER_SHAPES = ('DeiT-S MLP', 'DeiT-B MLP', 'MiniLM MLP')
LOW_RANK = 'low rank r=d/8'
VARIANTS = {'order 1': (1, 'taylor'), 'order 2 diag': (2, 'taylor'), 'lstsq order 1': (1, 'lstsq'),
            LOW_RANK: (1, 'low rank')}
BATCH1, BATCHN = 'batch 1, 1 thread', 'batch 4096, all threads'
CPP16 = 'cpp float16'   # the C++ route on float16 copies of the slope and Hessian tables

def dense_block(widths: list[int], act: str) -> nn.Module:
    "The dense MLP block: Linear layers with the activation between them (dropout is a no-op at inference)."
    make_act = nn.ReLU if act == 'relu' else nn.GELU
    layers = [nn.Linear(widths[0], widths[1])]
    for a, b in zip(widths[1:-1], widths[2:]): layers += [make_act(), nn.Linear(a, b)]
    if len(layers) == 3: return LinearActLinear(*layers).eval()
    return nn.Sequential(*layers).eval()

def low_rank_of(d_in: int, d_out: int) -> int:
    "The benchmark's rank for the low-rank variant: an eighth of the smaller width."
    return max(1, min(d_in, d_out) // 8)

def table_bytes(d_in: int, d_out: int, k: int, order: int, coefficients: str = 'taylor') -> int:
    "Bytes of a TaylorMLP's persistent buffers (centres, values, slopes, intercepts, hessian_diags, gate_radii)."
    if coefficients == 'low rank': return 4 * (k * d_in + k * d_out + k * low_rank_of(d_in, d_out) * (d_in + d_out))
    return 4 * (k * d_in + 2 * k * d_out + order * k * d_out * d_in + k)

def random_taylor(d_in: int, d_out: int, k: int, order: int, coefficients: str, gen: torch.Generator):
    "A TaylorMLP (or LowRankTaylorMLP for `coefficients='low rank'`) with random tables (timings do not depend on them)."
    r = lambda *s, scale=1.0: torch.randn(*s, generator=gen).mul_(scale)   # in place: tables can be GBs
    centres = r(k, d_in)
    if coefficients == 'low rank':
        rank = low_rank_of(d_in, d_out)
        return LowRankTaylorMLP(centres, r(k, d_out), r(k, d_out, rank, scale=rank ** -0.5),
                                r(k, rank, d_in, scale=d_in ** -0.5))
    slopes = r(k, d_out, d_in, scale=d_in ** -0.5)
    hess = r(k, d_out, d_in, scale=0.1 * d_in ** -0.5) if order == 2 else None
    intercepts = r(k, d_out) if coefficients == 'lstsq' else None
    return TaylorMLP(centres, r(k, d_out), slopes, intercepts, hess, coefficients=coefficients)

def input_pool(tm_centres: torch.Tensor, n_tokens: int, size: int, gen: torch.Generator):
    "An endless cycle over `size` distinct inputs `[n_tokens, d_in]`, each token near a random centre."
    k, d = tm_centres.shape
    pool = [tm_centres[torch.randint(0, k, (n_tokens,), generator=gen)]
            + 0.5 * torch.randn(n_tokens, d, generator=gen) for _ in range(size)]
    return itertools.cycle(pool)

def traffic_bytes(d_in: int, d_out: int, k: int, order: int, n_tokens: int, coefficients: str = 'taylor',
                  slope_bytes: int = 4) -> float:
    """Bytes of tables a TaylorMLP must read for `n_tokens` balanced tokens: centres, plus the slopes of the clusters
    hit (`slope_bytes` per slope and Hessian entry: 2 for float16 tables)."""
    clusters_hit = k * (1 - (1 - 1 / k) ** n_tokens)
    per_cluster = (4 * (low_rank_of(d_in, d_out) * (d_in + d_out) + d_out) if coefficients == 'low rank'
                   else 4 * d_out + slope_bytes * order * d_out * d_in)
    return 4 * k * (d_in + 1) + clusters_hit * per_cluster

def measure(fn, pool, min_run_time: float, threads: int, slow: bool = False) -> Measurement:
    """Timer.blocked_autorange on `threads` threads (Timer's own default is one thread, whatever torch is set to: before
    commit 70a1039 every row of this benchmark, 'all threads' included, ran on one); a statement known to take seconds is
    timed by one call (no calibration runs)."""
    with torch.no_grad():
        timer = Timer('fn(next(pool))', globals=dict(fn=fn, pool=pool), num_threads=threads)
        return timer.timeit(1) if slow else timer.blocked_autorange(min_run_time=min_run_time)

def stream_bandwidth(threads: int, nbytes: float = 1e9) -> float:
    "Bytes per second that `sum` reads from a tensor far larger than the caches, on `threads` threads."
    a = torch.ones(int(nbytes) // 4)
    with torch.no_grad():
        t = Timer('a.sum()', globals=dict(a=a), num_threads=threads).blocked_autorange(min_run_time=0.5)
    return a.numel() * 4 / t.median

def cpu_model() -> str:
    try:
        for line in open('/proc/cpuinfo'):
            if line.startswith('model name'): return line.split(':', 1)[1].strip()
    except OSError: pass
    return platform.processor() or 'unknown'

def git_commit() -> str:
    "The repository's commit (with '+dirty' for uncommitted changes), so a row says which `TaylorMLP.forward` it timed."
    import subprocess
    try:
        run = lambda *a: subprocess.run(['git', *a], capture_output=True, text=True, timeout=10,
                                        cwd=Path(__file__).parent).stdout.strip()
        commit = run('rev-parse', '--short', 'HEAD')
        return commit + ('+dirty' if run('status', '--porcelain', '--untracked-files=no', '--', 'taylormlp') else '')
    except Exception: return 'unknown'

def load_average() -> list[float]:
    try: return [round(v, 2) for v in os.getloadavg()]
    except OSError: return []

def fmt_time(s: float) -> str:
    return f"{s * 1e6:.1f} µs" if s < 1e-3 else (f"{s * 1e3:.2f} ms" if s < 1 else f"{s:.2f} s")

def fmt_bytes(n: float) -> str:
    for unit in ('B', 'kB', 'MB', 'GB', 'TB'):
        if abs(n) < 1000 or unit == 'TB': return f"{n:.0f} {unit}" if unit == 'B' else f"{n:.1f} {unit}"
        n /= 1000

class Bench:
    def __init__(self, args):
        self.args, self.rows, self.skipped, self.t0 = args, [], [], time.perf_counter()
        self.all_threads = torch.get_num_threads()
        self.gen = torch.Generator().manual_seed(0)
        self.cpp = load_extension() is not None
        if not self.cpp: print("! C++ route unavailable (see the warning above); timing the other routes only.")

    def log(self, msg: str):
        print(f"[{time.perf_counter() - self.t0:6.0f} s] {msg}", flush=True)

    def routes(self, regime: str, d_in: int, d_out: int, k: int, variant: str) -> list[str]:
        q, everything = self.args.quick, self.args.all_routes
        if regime == BATCH1:
            names = ['eager', 'cpp'] if q else ['eager', 'script', 'cpp']
            if (not q and k == 120 and variant != 'lstsq order 1') or everything: names.insert(2, 'compile')
        else:
            names = ['eager', 'cpp'] if q else ['eager', 'grouped_mm', 'cpp']
            if everything: names.insert(1, 'padded')
            if d_in % 4 or d_out % 4: names = [n for n in names if n != 'grouped_mm']
            if d_in > 4096: names = ['cpp']            # ImageNet head: one call takes seconds
        if variant == 'lstsq order 1' and not everything: names = [n for n in names if n == 'cpp']
        if variant == LOW_RANK: names = ['eager', 'cpp']   # its loop over clusters, and its default C++ path
        elif 'cpp' in names: names.append(CPP16)
        return [n for n in names if not n.startswith('cpp') or self.cpp]

    def skip(self, **row):
        self.skipped.append(row)
        self.log(f"skip {row['shape']} k={row['k']} {row['variant']} ({row.get('regime', 'both regimes')}): "
                 f"{row['reason']}")

    def run_shape(self, name: str):
        a = self.args
        widths, act = SHAPES[name]
        d_in, d_out = widths[0], widths[-1]
        dense = dense_block(widths, act)
        dense_macs = dense_multiply_adds(dense)
        dense_bytes = sum(p.numel() * p.element_size() for p in dense.parameters())
        n_big = a.batch
        pool_n = 2 if d_in * n_big * 4 > 2e8 else 3
        # The dense block at batch 4096 is timed in every round beside the TaylorMLP routes when one call is short;
        # when one call takes seconds (the VGG heads) it is timed once at the start and once at the end of the shape.
        torch.set_num_threads(self.all_threads)
        probe = torch.randn(n_big, d_in, generator=self.gen)
        with torch.no_grad():
            t = time.perf_counter(); dense(probe); dense_call = time.perf_counter() - t
        del probe
        interleave_big = dense_call < a.interleave_below
        dense_big: list[Measurement] = []
        def time_dense_big():
            torch.set_num_threads(self.all_threads)
            dense_big.append(measure(dense, input_pool(torch.zeros(1, d_in), n_big, pool_n, self.gen),
                                     a.min_time_batch, self.all_threads, slow=dense_call > 1.0))
        if BATCHN in a.regimes and not interleave_big: time_dense_big()
        for k in a.ks:
            for variant in a.variants:
                order, coefficients = VARIANTS[variant]
                if coefficients == 'low rank' and low_rank_of(d_in, d_out) < 8:
                    self.skip(shape=name, k=k, variant=variant,
                              reason=f"rank {low_rank_of(d_in, d_out)}: a {d_out}-wide output leaves nothing to factorise "
                                     f"(the low-rank variant is timed where d/8 >= 8)")
                    continue
                need = table_bytes(d_in, d_out, k, order, coefficients)
                if need > a.max_table_bytes:
                    self.skip(shape=name, k=k, variant=variant, table_bytes=need,
                              reason=f"tables need {fmt_bytes(need)}, over the cap of {fmt_bytes(a.max_table_bytes)} "
                                     f"(--max-table-gb)")
                    continue
                tm = random_taylor(d_in, d_out, k, order, coefficients, self.gen)
                tm_bytes = sum(t.numel() * t.element_size() for t in tm.state_dict().values())
                tm_macs = tm.multiply_adds if coefficients == 'low rank' else multiply_adds(tm)
                common = dict(shape=name, widths=widths, activation=act, k=k, variant=variant, order=order,
                              coefficients=coefficients, dense_macs=dense_macs, tmlp_macs=tm_macs,
                              mac_ratio=dense_macs / tm_macs, dense_bytes=dense_bytes, tmlp_bytes=tm_bytes)
                for regime in a.regimes:
                    one = regime == BATCH1
                    if not one and d_in > 4096 and variant != 'order 1':
                        self.skip(shape=name, k=k, variant=variant, table_bytes=need, regime=regime,
                                  reason=f"time budget: one call at batch {n_big} takes seconds to tens of seconds "
                                         f"here (the order-1 row is timed)")
                        continue
                    torch.set_num_threads(1 if one else self.all_threads)
                    n_tokens = 1 if one else n_big
                    low_rank = coefficients == 'low rank'
                    # the default path: TaylorMLP.forward, or for the low-rank maps their forward (the C++ route)
                    candidates = {} if low_rank else {'TaylorMLP.forward': tm}
                    compile_s = None
                    for r in self.routes(regime, d_in, d_out, k, variant):
                        if low_rank:
                            candidates[r] = tm if r == 'cpp' else LowRankTaylorMLP(
                                tm.centres, tm.intercepts, tm.left, tm.right, route='eager')
                            continue
                        fast = (FastTaylorMLP(tm, route='cpp', table_dtype=torch.float16) if r == CPP16 else
                                FastTaylorMLP(tm, route=r))
                        if r == 'compile':
                            t = time.perf_counter()
                            fast(torch.randn(1, d_in, generator=self.gen))
                            compile_s = time.perf_counter() - t
                        candidates[r] = fast
                    pool = input_pool(tm.centres, n_tokens, 64 if one else pool_n, self.gen)   # shared by all
                    half_error = None
                    if CPP16 in candidates:      # what float16 tables cost in accuracy, on this regime's first input
                        with torch.no_grad():
                            x0 = next(pool)
                            y32 = candidates['cpp'](x0)     # routes() adds CPP16 only beside 'cpp'
                            half_error = float((candidates[CPP16](x0) - y32).norm() / y32.norm())
                    half_saved = 0 if low_rank else sum(t.numel() * 2 for t in (tm.slopes, tm.hessian_diags)
                                                        if t is not None)
                    interleave = one or interleave_big
                    slow = not one and d_in > 4096
                    got = {c: [] for c in (['dense'] if interleave else []) + list(candidates)}
                    for _ in range(a.rounds if one else (1 if slow else a.rounds_batch)):
                        for c in got:
                            got[c].append(measure(dense if c == 'dense' else candidates[c], pool,
                                                  a.min_time_one if one else a.min_time_batch,
                                                  1 if one else self.all_threads, slow=slow))
                    dense_m = Measurement.merge(got.pop('dense'))[0] if interleave else None
                    for c, ms in got.items():
                        m = Measurement.merge(ms)[0]
                        half = c == CPP16
                        self.rows.append(dict(common, regime=regime, batch=n_tokens, threads=m.task_spec.num_threads,
                                              route=c, seconds=m.median, iqr=m.iqr, n_times=len(m.times),
                                              table_dtype='float16' if half else 'float32',
                                              half_error=half_error if half else None,
                                              tmlp_bytes=tm_bytes - half_saved if half else tm_bytes,
                                              default_path=c == 'TaylorMLP.forward' or (low_rank and c == 'cpp'),
                                              dense_interleaved=interleave,
                                              compile_seconds=compile_s if c == 'compile' else None,
                                              traffic_bytes=traffic_bytes(d_in, d_out, k, order, n_tokens,
                                                                          coefficients, 2 if half else 4),
                                              _dense=dense_m, load_average=load_average()))
                    rows = self.rows[-len(got):]
                    best = min((r for r in rows if r['route'] != 'TaylorMLP.forward'), key=lambda r: r['seconds'],
                               default=rows[0])
                    self.log(f"{name} k={k} {variant} {regime}: "
                             + (f"dense {fmt_time(dense_m.median)}, " if dense_m else '')
                             + ', '.join(f"{r['route']} {fmt_time(r['seconds'])}" for r in rows)
                             + (f" (best x{dense_m.median / best['seconds']:.1f}, MAC limit x{dense_macs / tm_macs:.1f})"
                                if dense_m else ''))
                    del candidates, pool
                del tm
                gc.collect()
        if BATCHN in a.regimes and not interleave_big:
            time_dense_big()
            dense_m = Measurement.merge(dense_big)[0]
            self.log(f"{name} dense {BATCHN} (start and end of the shape): {fmt_time(dense_m.median)}")
            for r in self.rows:
                if r['shape'] == name and r['regime'] == BATCHN: r['_dense'] = dense_m
        torch.set_num_threads(self.all_threads)

    def finish(self, bandwidth: dict) -> dict:
        for r in self.rows:
            d = r.pop('_dense')
            r.update(dense_seconds=d.median, dense_iqr=d.iqr, speed_ratio=d.median / r['seconds'],
                     traffic_ratio=r['dense_bytes'] / r['traffic_bytes'],
                     traffic_floor_seconds=r['traffic_bytes'] / bandwidth[r['threads']])
            r['efficiency'] = r['speed_ratio'] / r['mac_ratio']
            r['efficiency_at_floor'] = d.median / r['traffic_floor_seconds'] / r['mac_ratio']
        return dict(rows=self.rows, skipped=self.skipped, targets=evaluate_targets(self.rows))

def best_rows(rows, regime, float16: bool = False):
    """Per (shape, k, variant): the fastest fast route (TaylorMLP.forward excluded; the float16 tables' route only with
    `float16=True`) and the default path (`model(x)`)."""
    out = {}
    for r in rows:
        if r['regime'] != regime or (r.get('table_dtype') == 'float16' and not float16): continue
        key = (r['shape'], r['k'], r['variant'])
        slot = out.setdefault(key, {})
        if r.get('default_path', r['route'] == 'TaylorMLP.forward'): slot['forward'] = r
        if r['route'] == 'TaylorMLP.forward': continue
        if 'best' not in slot or r['seconds'] < slot['best']['seconds']: slot['best'] = r
    return out

def evaluate_targets(rows) -> list[dict]:
    "The issue's targets on float32 tables, then the efficiency targets again with float16 tables allowed."
    res = _targets(rows, False)
    if any(r.get('table_dtype') == 'float16' for r in rows):
        res += [t for t in _targets(rows, True) if 'efficiency' in t['target']]
    return res

def _targets(rows, float16: bool) -> list[dict]:
    res, tables = [], ' (float16 tables allowed)' if float16 else ''
    b1 = best_rows(rows, BATCH1, float16)
    if b1:
        fails = [dict(shape=s, k=k, variant=v, efficiency=round(x['best']['efficiency'], 4))
                 for (s, k, v), x in b1.items() if 'best' in x and x['best']['efficiency'] < 0.6]
        res.append(dict(target='batch-1 one-thread efficiency >= 0.6 on every shape (best fast route, every k and '
                               'variant timed)' + tables, met=not fails, failures=fails))
        cifar = b1.get(('CIFAR VGG16 head', 120, 'order 1'))
        if cifar and 'best' in cifar:
            res.append(dict(target='CIFAR VGG16 head, k=120, order 1, batch 1: >= 170x faster than dense',
                            met=cifar['best']['speed_ratio'] >= 170, speed_ratio=round(cifar['best']['speed_ratio'], 1),
                            mac_ratio=round(cifar['best']['mac_ratio'], 1), route=cifar['best']['route']))
    bn = best_rows(rows, BATCHN, float16)
    trans = {key: x for key, x in bn.items() if key[0] in TRANSFORMER_SHAPES and 'best' in x}
    if trans:
        fails = [dict(shape=s, k=k, variant=v, efficiency=round(x['best']['efficiency'], 4))
                 for (s, k, v), x in trans.items() if x['best']['efficiency'] < 0.5]
        res.append(dict(target='batch-4096 efficiency >= 0.5 on transformer shapes (best fast route, every k and '
                               'variant timed)' + tables, met=not fails, failures=fails))
    return res

def print_table(result: dict):
    for regime in (BATCH1, BATCHN):
        best = best_rows(result['rows'], regime)
        if not best: continue
        half = {(r['shape'], r['k'], r['variant']): r for r in result['rows']
                if r['route'] == CPP16 and r['regime'] == regime}
        print(f"\n## {regime}\n")
        head = (f"{'shape':<20} {'k':>5} {'variant':<14} {'dense':>9} {'forward':>9} {'x':>6} {'best route':>10} "
                f"{'time':>9} {'speed x':>8} {'MAC x':>7} {'eff.':>5} {'at floor':>8} {'traffic x':>9} {'dense MB':>9} "
                f"{'TMLP MB':>9}"
                f" | {'float16 time':>12} {'eff.':>5} {'rel. err':>8}")
        print(head); print('-' * len(head))
        for (s, k, v), x in best.items():
            f, b = x['forward'], x.get('best', x['forward'])
            h = half.get((s, k, v))
            print(f"{s:<20} {k:>5} {v:<14} {fmt_time(f['dense_seconds']):>9} {fmt_time(f['seconds']):>9} "
                  f"{f['speed_ratio']:>6.1f} {b['route']:>10} {fmt_time(b['seconds']):>9} {b['speed_ratio']:>8.1f} "
                  f"{b['mac_ratio']:>7.1f} {b['efficiency']:>5.2f} {b['efficiency_at_floor']:>8.2f} {b['traffic_ratio']:>9.1f} "
                  f"{b['dense_bytes'] / 1e6:>9.1f} {b['tmlp_bytes'] / 1e6:>9.1f}"
                  + (f" | {fmt_time(h['seconds']):>12} {h['efficiency']:>5.2f} {h['half_error']:>8.1e}" if h else " |"))
    if result['skipped']:
        print("\nNot timed:")
        for s in result['skipped']:
            print(f"  {s['shape']} k={s['k']} {s['variant']} ({s.get('regime', 'both regimes')}): {s['reason']}")
    print("\nTargets:")
    for t in result['targets']:
        extra = {n: v for n, v in t.items() if n not in ('target', 'met')}
        print(f"  [{'met' if t['met'] else 'MISSED'}] {t['target']}  {json.dumps(extra) if extra else ''}")

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--quick', action='store_true', help='CIFAR head and DeiT-S, k in {16, 120}, fewer routes and '
                                                        'variants (about 2 min)')
    p.add_argument('--out', default=None, help='JSON output (default data/results/speed.json, or speed_quick.json '
                                               'with --quick)')
    p.add_argument('--shapes', nargs='*', default=None, choices=list(SHAPES), help='subset of shapes')
    p.add_argument('--ks', nargs='*', type=int, default=None)
    p.add_argument('--variants', nargs='*', default=None, choices=list(VARIANTS), help='subset of variants')
    p.add_argument('--regimes', nargs='*', default=None, choices=['batch1', 'batch'])
    p.add_argument('--batch', type=int, default=4096)
    p.add_argument('--max-table-gb', type=float, default=4.0, help='skip TaylorMLPs whose tables exceed this')
    p.add_argument('--all-routes', action='store_true',
                   help="also 'padded' at batch 4096, 'compile' at every k, every route for lstsq")
    p.add_argument('--interleave-below', type=float, default=2.0,
                   help='time the dense block at batch 4096 in every round when one call takes less (seconds)')
    a = p.parse_args(argv)
    a.shapes = a.shapes or (['CIFAR VGG16 head', 'DeiT-S MLP'] if a.quick else list(SHAPES))
    a.ks = a.ks or ([16, 120] if a.quick else [16, 120, 256, 1024])
    a.variants = a.variants or (['order 1', 'order 2 diag', LOW_RANK] if a.quick else list(VARIANTS))
    a.regimes = [{'batch1': BATCH1, 'batch': BATCHN}[r] for r in (a.regimes or ['batch1', 'batch'])]
    a.rounds, a.rounds_batch = (2, 1) if a.quick else (4, 2)
    a.min_time_one, a.min_time_batch = (0.05, 0.2) if a.quick else (0.1, 0.2)
    a.max_table_bytes = int(a.max_table_gb * 1e9)
    out = Path(a.out or ('data/results/speed_quick.json' if a.quick else 'data/results/speed.json'))
    torch._dynamo.config.recompile_limit = 64   # the 'compile' route compiles once per table shape

    started = datetime.datetime.now().astimezone()
    hardware = dict(cpu_model=cpu_model(), logical_cpus=os.cpu_count(), threads_batch=torch.get_num_threads(),
                    cpu_capability=torch.backends.cpu.get_cpu_capability(), torch=torch.__version__,
                    python=platform.python_version(), platform=platform.platform(), taylormlp_commit=git_commit(),
                    date=started.isoformat(timespec='seconds'), load_average_start=load_average())
    print(f"{hardware['cpu_model']}, {hardware['logical_cpus']} CPUs ({hardware['cpu_capability']}), torch "
          f"{hardware['torch']}; load average {hardware['load_average_start']}")
    thread_counts = sorted({1, torch.get_num_threads()})
    start_bw = {n: stream_bandwidth(n) for n in thread_counts}
    bench = Bench(a)
    for s in a.shapes: bench.run_shape(s)
    end_bw = {n: stream_bandwidth(n) for n in thread_counts}
    bandwidth = {n: (start_bw[n] + end_bw[n]) / 2 for n in thread_counts}
    result = bench.finish(bandwidth)
    hardware.update(load_average_end=load_average(), seconds=round(time.perf_counter() - bench.t0, 1),
                    stream_bandwidth_gb_s={str(n): dict(start=round(start_bw[n] / 1e9, 2), end=round(end_bw[n] / 1e9, 2))
                                           for n in thread_counts})
    print("streaming bandwidth (GB/s, start and end): "
          + ', '.join(f"{n} thread(s) {start_bw[n] / 1e9:.1f}, {end_bw[n] / 1e9:.1f}" for n in thread_counts))
    result = dict(command='python benchmarks/speed.py' + (' ' + ' '.join(sys.argv[1:]) if sys.argv[1:] else ''),
                  hardware=hardware,
                  settings=dict(shapes=a.shapes, ks=a.ks, variants=a.variants, regimes=a.regimes, batch=a.batch,
                                all_routes=a.all_routes, interleave_below_seconds=a.interleave_below,
                                rounds_batch1=a.rounds, rounds_batch=a.rounds_batch, min_run_time_batch1=a.min_time_one,
                                min_run_time_batch=a.min_time_batch, max_table_bytes=a.max_table_bytes,
                                inputs='centres[random] + 0.5 * N(0, 1), cycled over a pool of distinct inputs'),
                  **result)
    print_table(result)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"\nwrote {out} ({hardware['seconds']} s)")
    return result

if __name__ == '__main__':
    main()
