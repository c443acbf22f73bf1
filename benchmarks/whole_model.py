#!/usr/bin/env python
"""Whole-model latency of all-MiniLM-L6-v2 on real STS-B dev sentences: T-MLP against the CPU backends users pick.

    python benchmarks/whole_model.py --threads 1 [--configs dense,compile,...] [--artifact DIR] [--quick]

One process per thread count (torch.compile bakes the thread count into its kernels). In that process every
configuration is built first, then timed round-robin: for each batch size, `--rounds` rounds, and in each round
every configuration runs `--calls` calls on the same tokenized batch (the first `batch` sentences of the dev split's
first column). Medians over all calls; min and max are kept. `speedup` = dense eager median / this median, both
from this run. Each configuration's metric is the STS-B dev Spearman (x100) of the same weights (compiled
configurations are scored by their eager counterpart: compilation changes rounding only; marked `metric_from`).

Configurations (`--configs`):

* `dense`: the sentence encoder in PyTorch eager (what `sentence-transformers` runs),
* `compile`: `torch.compile` of the same,
* `int8_compile`: torchao `Int8DynamicActivationInt8WeightConfig` on every Linear, then `torch.compile`,
* `ort_fp32`, `ort_int8`: ONNX Runtime on the TorchScript ONNX export fused by `onnxruntime.transformers.optimizer`
  (attention fused), fp32 and dynamic int8 (per-channel weights),
* `openvino`: OpenVINO on the same ONNX file with its default hints (the row says which precision it ran),
* `tmlp`: the compressed model (all six MLP blocks replaced by `FastTaylorMLP`, the C++ route) in eager,
* `tmlp_compile`: it under `torch.compile` (the kernel runs as the custom op, no graph break),
* `tmlp_int8_compile`: it with torchao int8 on the layers T-MLP does not replace (attention, embeddings' none), compiled,
* `tmlp_ort` (opt-in): the compressed model exported to ONNX (TorchScript export; `FastTaylorMLP` records standard
  ops, ArgMin and a per-token Gather of its cluster's table) and run by ONNX Runtime fp32,
* `no_mlp`: the dense model with the six MLP blocks removed (a zero output), eager: the time of everything else,
  for the time split.

The compressed model comes from `--artifact` (a folder written by `taylormlp.compress.compress` or
`taylormlp compress`); if it is missing it is made there first (lstsq, k=16, 1,500 STS-B train pairs: 3,000 sentences).
Results are merged into `--out` (rows keyed by run, config, threads and batch).
"""
from __future__ import annotations

import argparse, copy, datetime, io, json, os, statistics, sys, tempfile, time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from taylormlp.compress import load_compressed, table_bytes
from taylormlp.data import load_dataset, import_optional
from taylormlp.fast import FastTaylorMLP, bytes_read
from taylormlp.validate import hardware
from taylormlp.weights import load_model, stsb_spearman, minilm_path

CONFIGS = ('dense', 'compile', 'int8_compile', 'ort_fp32', 'ort_int8', 'openvino', 'tmlp', 'tmlp_compile',
           'tmlp_int8_compile', 'no_mlp')
EXTRA = ('tmlp_ort',)        # opt-in (--configs): the compressed model exported to ONNX Runtime with standard ops
TMLP = {'tmlp', 'tmlp_compile', 'tmlp_int8_compile', 'tmlp_ort'}
HEADS, HIDDEN = 12, 384


def isa() -> dict:
    "The CPU's vector and matrix extensions that decide the fastest kernels (from /proc/cpuinfo), and torch's choice."
    flags = set()
    try:
        for line in open('/proc/cpuinfo'):
            if line.startswith('flags'): flags = set(line.split(':', 1)[1].split()); break
    except OSError: pass
    wanted = ('avx2', 'fma', 'f16c', 'avx512f', 'avx512_vnni', 'avx512_bf16', 'amx_tile', 'amx_bf16', 'amx_int8')
    return dict(torch_capability=torch.backends.cpu.get_cpu_capability(), flags=[f for f in wanted if f in flags])


def make_artifact(path: Path, fit_samples: int, k: int) -> None:
    "The compressed model `taylormlp compress --model minilm` makes (lstsq, k; `fit_samples` STS-B train pairs)."
    from taylormlp.compress import compress_model
    print(f"no artifact at {path}: compressing all-MiniLM-L6-v2 (lstsq, k={k}, {fit_samples} STS-B train pairs)")
    compress_model('minilm', path, k=k, fit_samples=fit_samples, evaluate=False)


class NoMLP(nn.Module):
    "Zero output of the MLP's width: the model without its MLP blocks (time split only)."
    def __init__(self, d_out: int): super().__init__(); self.d_out = d_out
    def forward(self, x): return x.new_zeros(*x.shape[:-1], self.d_out)


def torch_size(model: nn.Module, extra: int = 0) -> int | None:
    try:
        buf = io.BytesIO(); torch.save(model.state_dict(), buf); return buf.tell() + extra
    except Exception: return None


def int8_linears(model: nn.Module) -> nn.Module:
    from torchao.quantization import quantize_, Int8DynamicActivationInt8WeightConfig
    quantize_(model, Int8DynamicActivationInt8WeightConfig())
    return model


def export_onnx(folder: Path) -> tuple[Path, Path]:
    "TorchScript ONNX export of the encoder (eager attention), fused for BERT; and its dynamic int8 version."
    onnx = import_optional('onnx', 'onnx', 'the ONNX Runtime and OpenVINO rows')
    import_optional('onnxruntime', 'onnxruntime', 'the ONNX Runtime rows')
    from onnxruntime.transformers.optimizer import optimize_model
    from onnxruntime.quantization import quantize_dynamic, QuantType
    transformers = import_optional('transformers', 'transformers', 'the ONNX export')
    fused, int8 = folder / 'minilm_fused.onnx', folder / 'minilm_fused_int8.onnx'
    if fused.is_file() and int8.is_file(): return fused, int8
    enc = load_model('minilm')
    enc.bert = transformers.AutoModel.from_pretrained(minilm_path(), local_files_only=True,
                                                      attn_implementation='eager').eval()
    batch = enc.tokenize(['a short sentence', 'a slightly longer sentence than that'])
    raw = folder / 'minilm.onnx'
    torch.onnx.export(enc, (batch['input_ids'], batch['attention_mask']), str(raw), dynamo=False, opset_version=17,
                      input_names=['input_ids', 'attention_mask'], output_names=['embeddings'],
                      dynamic_axes={'input_ids': {0: 'batch', 1: 'seq'}, 'attention_mask': {0: 'batch', 1: 'seq'},
                                    'embeddings': {0: 'batch'}})
    optimize_model(str(raw), model_type='bert', num_heads=HEADS, hidden_size=HIDDEN).save_model_to_file(str(fused))
    quantize_dynamic(str(fused), str(int8), per_channel=True, weight_type=QuantType.QInt8,
                     extra_options={'DefaultTensorType': onnx.TensorProto.FLOAT})
    return fused, int8


def ort_runner(path: Path, threads: int):
    ort = import_optional('onnxruntime', 'onnxruntime', 'the ONNX Runtime rows')
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    sess = ort.InferenceSession(str(path), so, providers=['CPUExecutionProvider'])
    def run(feed): return sess.run(None, feed)[0]
    return run


def openvino_runner(path: Path, threads: int):
    ov = import_optional('openvino', 'openvino', 'the OpenVINO rows')
    compiled = ov.Core().compile_model(str(path), 'CPU', {'INFERENCE_NUM_THREADS': threads})
    request = compiled.create_infer_request()
    hint = str(compiled.get_property('INFERENCE_PRECISION_HINT'))           # e.g. "<Type: 'bfloat16'>"
    precision = hint.split("'")[1] if hint.count("'") == 2 else hint
    def run(feed):
        request.infer(feed)
        return request.get_output_tensor(0).data.copy()
    return run, precision


def numpy_feed(batch: dict) -> dict:
    return {'input_ids': batch['input_ids'].numpy(), 'attention_mask': batch['attention_mask'].numpy()}


def spearman_of(run, tokenize, dev, numpy_inputs: bool) -> float:
    "STS-B dev Spearman x100 of an encoder given as `run(batch) -> embeddings` (batches of 64, sorted by length)."
    from taylormlp.data import spearman
    sentences = [*dev.sentence1, *dev.sentence2]
    order = np.argsort([-len(s) for s in sentences], kind='stable')
    emb = torch.empty(len(sentences), HIDDEN)
    with torch.inference_mode():
        for i in range(0, len(sentences), 64):
            idx = order[i:i + 64]
            batch = tokenize([sentences[j] for j in idx])
            out = run(numpy_feed(batch) if numpy_inputs else batch)
            emb[torch.as_tensor(idx)] = torch.as_tensor(np.asarray(out) if numpy_inputs else out).float()
    n = len(dev)
    cos = torch.nn.functional.cosine_similarity(emb[:n], emb[n:])
    return 100 * spearman(cos, torch.as_tensor(dev.scores))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--threads', type=int, default=1)
    p.add_argument('--batches', default=None, help='sentences per call (default 1,8,32,128; --quick: 1,8)')
    p.add_argument('--configs', default=','.join(CONFIGS))
    p.add_argument('--rounds', type=int, default=5)
    p.add_argument('--calls', type=int, default=0, help='calls per config per round (0: about 0.15 s worth)')
    p.add_argument('--artifact', default='runs/whole_model/minilm_lstsq_k16')
    p.add_argument('--fit-samples', type=int, default=1500, help='STS-B train pairs for a new artifact')
    p.add_argument('--k', type=int, default=16)
    p.add_argument('--table-dtype', default='float32', choices=('float32', 'float16', 'int8'),
                   help='slope tables the T-MLP configs read (float32 arithmetic; int8 with row scales)')
    p.add_argument('--work', default='runs/whole_model/onnx')
    p.add_argument('--run', default=None, help='name of this run in the results (default: threads=N)')
    p.add_argument('--quick', action='store_true', help='batches 1,8; 2 rounds; 200 dev pairs (a smoke run)')
    p.add_argument('--out', default='data/results/whole_model.json')
    a = p.parse_args(argv)
    a.batches = a.batches or ('1,8' if a.quick else '1,8,32,128')
    if a.quick: a.rounds = 2
    configs = [c for c in a.configs.split(',') if c]
    bad = sorted(set(configs) - set(CONFIGS) - set(EXTRA))
    if bad: p.error(f"unknown configs {bad}: choose from {CONFIGS + EXTRA}")
    if 'dense' not in configs: configs.insert(0, 'dense')          # every speedup is against dense eager in this run
    batches = [int(b) for b in a.batches.split(',')]
    torch.set_num_threads(a.threads)
    run_name = a.run or f'threads={a.threads}' + ('' if a.table_dtype == 'float32' else f', {a.table_dtype} tables')
    dev = load_dataset('stsb', 'dev')
    if a.quick: dev = dev.subset(range(200))
    sentences = list(dev.sentence1)
    artifact = Path(a.artifact)
    if any(c in TMLP for c in configs) and not (artifact / 'manifest.json').is_file():
        make_artifact(artifact, a.fit_samples, a.k)
    table_dtype = {'float16': torch.float16, 'int8': torch.int8}.get(a.table_dtype)
    print(f"run {run_name}: configs {configs}, batches {batches}, {a.rounds} rounds, {a.threads} thread(s); "
          f"load average {os.getloadavg()}")

    dense = load_model('minilm')
    tokenize = dense.tokenize
    built, info = {}, {}                         # config -> (call(batch), uses numpy inputs); config -> row extras
    metrics = {}
    def torch_call(model):
        def call(batch):
            with torch.inference_mode(): return model(batch['input_ids'], batch['attention_mask'])
        return call

    def tmlp_model():
        model, report = load_compressed(load_model('minilm'), artifact, table_dtype=table_dtype)
        return model, report

    t0 = time.perf_counter()
    built['dense'] = (torch_call(dense), False)
    info['dense'] = dict(precision='fp32', size_bytes=torch_size(dense))
    metrics['dense'] = stsb_spearman(dense, dev)
    for c in configs:
        t1 = time.perf_counter()
        if c == 'compile':
            built[c] = (torch_call(torch.compile(copy.deepcopy(dense))), False)
            info[c] = dict(precision='fp32', size_bytes=info['dense']['size_bytes'], metric_from='dense')
            metrics[c] = metrics['dense']
        elif c == 'int8_compile':
            q = int8_linears(load_model('minilm'))
            metrics[c] = stsb_spearman(q, dev)
            built[c] = (torch_call(torch.compile(q)), False)
            info[c] = dict(precision='int8 (weights and dynamic activations, torchao)', size_bytes=torch_size(q),
                           metric_from='torchao int8 eager')
        elif c in ('ort_fp32', 'ort_int8', 'openvino'):
            work = Path(a.work); work.mkdir(parents=True, exist_ok=True)
            fused, int8 = export_onnx(work)
            path = int8 if c == 'ort_int8' else fused
            if c == 'openvino':
                run, precision = openvino_runner(path, a.threads)
                info[c] = dict(precision=precision + ' (OpenVINO default hints)', size_bytes=path.stat().st_size)
            else:
                run = ort_runner(path, a.threads)
                info[c] = dict(precision='int8 (dynamic, per-channel weights)' if c == 'ort_int8' else 'fp32',
                               size_bytes=path.stat().st_size)
            built[c] = (run, True)
            metrics[c] = spearman_of(run, tokenize, dev, True)
        elif c == 'tmlp_ort':
            model, _ = tmlp_model()
            work = Path(a.work); work.mkdir(parents=True, exist_ok=True)
            path = work / f'minilm_tmlp_{a.table_dtype}.onnx'
            batch = tokenize(['a short sentence', 'a slightly longer sentence than that'])
            torch.onnx.export(model, (batch['input_ids'], batch['attention_mask']), str(path), dynamo=False,
                              opset_version=17, input_names=['input_ids', 'attention_mask'], output_names=['embeddings'],
                              dynamic_axes={'input_ids': {0: 'batch', 1: 'seq'}, 'attention_mask': {0: 'batch', 1: 'seq'},
                                            'embeddings': {0: 'batch'}})
            run = ort_runner(path, a.threads)
            built[c] = (run, True)
            metrics[c] = spearman_of(run, tokenize, dev, True)
            info[c] = dict(precision='fp32 (T-MLP as standard ONNX ops, ORT_ENABLE_ALL)', size_bytes=path.stat().st_size)
        elif c in TMLP:
            model, report = tmlp_model()
            extra = sum(table_bytes(m) for m in model.modules() if isinstance(m, FastTaylorMLP))   # as loaded
            label = {None: 'fp32 tables', torch.float16: 'fp16 tables (fp32 arithmetic)',
                     torch.int8: 'int8 tables, row scales (fp32 arithmetic)'}[table_dtype]
            if c == 'tmlp_int8_compile':
                int8_linears(model)
                label += ', int8 attention (torchao)'
            metrics[c] = stsb_spearman(model, dev)
            size = torch_size(model, extra)
            if c != 'tmlp': model = torch.compile(model)
            built[c] = (torch_call(model), False)
            info[c] = dict(precision=label, size_bytes=size, k=report.sites[0]['k'], method=report.sites[0]['method'],
                           mac_ratio=report.totals['mac_ratio'], metric_from=None if c == 'tmlp' else 'eager')
            if c == 'tmlp': info['_tmlp_model'] = model
        elif c == 'no_mlp':
            from taylormlp.adapt import find_mlp_sites, swap_sites
            m = load_model('minilm')
            swap_sites(m, {s.name: NoMLP(s.d_out) for s in find_mlp_sites(m)})
            built[c] = (torch_call(m), False)
            info[c] = dict(precision='fp32', size_bytes=None, note='time split: everything but the MLP blocks')
            metrics[c] = None
        if c != 'dense': info[c]['build_seconds'] = round(time.perf_counter() - t1, 1)
        print(f"  built {c} in {time.perf_counter() - t1:.1f} s; metric {metrics.get(c)}", flush=True)

    rows = []
    def save():
        "Merge this run's rows into --out (after every batch size: a run cut short keeps what it measured)."
        out = Path(a.out)
        old = json.loads(out.read_text()) if out.is_file() else {'rows': []}
        key = lambda r: (r['run'], r['config'], r['threads'], r['batch'])
        new_keys = {key(r) for r in rows}
        merged = [r for r in old['rows'] if key(r) not in new_keys] + rows
        runs = {**old.get('runs', {}), run_name: dict(
            date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds'), threads=a.threads,
            batches=batches, rounds=a.rounds, configs=configs, artifact=str(artifact), table_dtype=a.table_dtype,
            quick=a.quick, dev_pairs=len(dev), hardware=hardware(), isa=isa(), torch=torch.__version__,
            load_average_end=os.getloadavg(), wall_seconds=round(time.perf_counter() - t0, 1),
            command=' '.join(sys.argv), shared_machine=True)}
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({**old, **dict(rows=merged, runs=runs, isa=isa(), hardware=hardware())}, indent=1,
                                  default=str))
    for b in batches:
        batch = tokenize(sentences[:b])
        feed = numpy_feed(batch)
        tokens = int(batch['attention_mask'].sum())
        for c, (call, np_in) in built.items():                  # warm up (and compile this shape)
            t1 = time.perf_counter()
            for _ in range(3): call(feed if np_in else batch)
            info[c][f'warmup_seconds_b{b}'] = round(time.perf_counter() - t1, 1)
        per_call = {}
        for c, (call, np_in) in built.items():
            t1 = time.perf_counter(); call(feed if np_in else batch); per_call[c] = time.perf_counter() - t1
        times = {c: [] for c in built}
        loads = []
        for r in range(a.rounds):
            loads.append(os.getloadavg()[0])
            for c, (call, np_in) in built.items():
                x = feed if np_in else batch
                n = a.calls or max(1, min(50, int(0.15 / max(per_call[c], 1e-6))))
                for _ in range(n):
                    t1 = time.perf_counter(); call(x); times[c].append(time.perf_counter() - t1)
        dense_median = statistics.median(times['dense'])
        tm = info.get('_tmlp_model')
        traffic = {}
        if tm is not None:                                       # table bytes the six sites read on this batch
            inputs = []
            hooks = [m.register_forward_pre_hook(lambda mod, args: inputs.append((mod, args[0])))
                     for m in tm.modules() if isinstance(m, FastTaylorMLP)]
            built['tmlp'][0](batch)
            for h in hooks: h.remove()
            mask = batch['attention_mask'].bool()
            reads = [bytes_read(mod, x[mask]) for mod, x in inputs]   # real tokens (padding adds more)
            traffic = dict(table_bytes_read=sum(r['bytes'] for r in reads),
                           clusters_touched=[r['clusters'] for r in reads],
                           dense_mlp_weight_bytes=6 * 4 * (2 * 384 * 1536 + 1536 + 384))
        for c in built:
            med = statistics.median(times[c])
            row = dict(model='all-MiniLM-L6-v2', config=c, tmlp=c in TMLP, threads=a.threads, batch=b, tokens=tokens,
                       seconds=med, min_seconds=min(times[c]), max_seconds=max(times[c]), calls=len(times[c]),
                       speedup=dense_median / med, metric=metrics.get(c), metric_name='STS-B dev Spearman x100',
                       dense_metric=metrics['dense'], isa=isa()['torch_capability'], run=run_name,
                       load_average=[round(min(loads), 2), round(max(loads), 2)],
                       **{n: v for n, v in info[c].items() if not n.startswith('warmup') or n.endswith(f'_b{b}')})
            if c in TMLP: row.update(traffic)
            rows.append(row)
            print(f"  b={b:4d} ({tokens:5d} tokens) {c:18s} {med * 1e3:9.2f} ms  x{row['speedup']:.2f}  "
                  f"metric {row['metric']}", flush=True)
        save()

    save()
    print(f"wrote {len(rows)} rows to {a.out}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
