"Integration tests for taylormlp.collect: hooks, subsampling, shards, a real SIGKILL and resume, damaged files."
import importlib.util, json, os, signal, subprocess, sys, textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from taylormlp.adapt import get_site
from taylormlp.collect import Collection, collect, load_collection

JOB = textwrap.dedent('''
    import os, signal, sys
    import timm, torch
    from taylormlp.collect import collect

    def make_model():
        torch.manual_seed(0)
        return timm.models.vision_transformer.VisionTransformer(img_size=32, patch_size=4, num_classes=10,
                                                               embed_dim=32, depth=2, num_heads=2).eval()

    class Batches:
        "Deterministic (image, label) batches; SIGKILLs its own process when batch `kill_at` is requested."
        def __init__(self, n=10, batch_size=4, kill_at=None):
            self.n, self.batch_size, self.kill_at, self.served = n, batch_size, kill_at, 0
        def __len__(self): return self.n
        def __iter__(self):
            g = torch.Generator().manual_seed(1)
            for b in range(self.n):
                x = torch.randn(self.batch_size, 3, 32, 32, generator=g)
                y = torch.randint(0, 10, (self.batch_size,), generator=g)
                if b == self.kill_at: os.kill(os.getpid(), signal.SIGKILL)
                self.served += 1
                yield x, y

    ARGS = dict(tokens_per_sample=20, shard_tokens=50, seed=3, progress=False)

    if __name__ == '__main__':
        collect(make_model(), None, Batches(kill_at=int(sys.argv[2])), sys.argv[1], **ARGS)
''')


@pytest.fixture(scope='module')
def job(tmp_path_factory):
    "The job script (run in a subprocess) imported as a module, so both sides share model and batches."
    path = tmp_path_factory.mktemp('job') / 'collect_job.py'
    path.write_text(JOB)
    spec = importlib.util.spec_from_file_location('collect_job', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.path = path
    return module


def _stats(out_dir, manifest):
    return {s['file']: (os.stat(out_dir / s['file']).st_ino, os.stat(out_dir / s['file']).st_mtime_ns)
            for info in manifest['sites'].values() for s in info['shards']}


def test_resume_after_sigkill_gives_the_uninterrupted_data(job, tmp_path):
    out, ref_dir = tmp_path / 'killed', tmp_path / 'ref'
    proc = subprocess.run([sys.executable, str(job.path), str(out), '7'], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    manifest = json.loads((out / 'manifest.json').read_text())
    assert not manifest['complete']
    # 7 batches x 4 images x 20 tokens = 560 rows per site before the kill: 11 full shards of 50, 10 rows lost
    assert [len(i['shards']) for i in manifest['sites'].values()] == [11, 11]
    assert manifest['sites']['blocks.0.mlp']['shards'][-1]['end_batch'] == 6 and manifest['batches_done'] == 6
    before = _stats(out, manifest)
    folder = out / manifest['sites']['blocks.0.mlp']['folder']
    (folder / '00011.safetensors.tmp').write_bytes(b'half a shard')   # what a kill during a write leaves
    (folder / '00011.safetensors').write_bytes(b'renamed, but never listed')   # a kill before the manifest update

    loader = job.Batches()
    resumed = collect(job.make_model(), None, loader, out, **job.ARGS)
    assert loader.served == 10 and resumed.complete
    ref = collect(job.make_model(), None, job.Batches(), ref_dir, **job.ARGS)
    for site in ref.sites:
        assert resumed.num_rows(site) == ref.num_rows(site) == 10 * 4 * 20
        assert torch.equal(resumed.inputs(site), ref.inputs(site))
        assert torch.equal(resumed.outputs(site), ref.outputs(site))
        strip = lambda shards: [{k: v for k, v in s.items()} for s in shards]
        assert strip(resumed.info(site)['shards']) == strip(ref.info(site)['shards'])   # same files, same hashes
    after = _stats(out, resumed.manifest)
    assert all(after[f] == st for f, st in before.items()), "finished shards must not be rewritten"
    assert not list(out.rglob('*.tmp'))

    again = job.Batches(kill_at=0)   # a complete collection is returned without touching the loader
    assert torch.equal(collect(job.make_model(), None, again, out, **job.ARGS).inputs('blocks.1.mlp'),
                       ref.inputs('blocks.1.mlp'))


def test_recorded_rows_are_what_hooks_see(job, tmp_path):
    model, batches = job.make_model(), list(job.Batches(n=3))
    c = collect(model, ['blocks.1.mlp'], batches, tmp_path / 'c', shard_tokens=100, progress=False)
    seen = []
    h = model.blocks[1].mlp.register_forward_hook(lambda m, i, o: seen.append((i[0], o)))
    with torch.no_grad():
        for x, _ in batches: model(x)
    h.remove()
    assert c.sites == ['blocks.1.mlp'] and c.num_rows('blocks.1.mlp') == 3 * 4 * 65
    assert torch.equal(c.inputs('blocks.1.mlp'), torch.cat([i.flatten(0, 1) for i, _ in seen]))
    assert torch.equal(c.outputs('blocks.1.mlp'), torch.cat([o.flatten(0, 1) for _, o in seen]))
    site = get_site(model, 'blocks.1.mlp')
    with torch.no_grad():
        torch.testing.assert_close(site.function(c.inputs(site)), c.outputs(site), atol=1e-6, rtol=1e-5)
    shards = list(c.iter_shards('blocks.1.mlp'))
    assert [x.shape for x, _ in shards] == [(100, 32)] * 7 + [(80, 32)]
    assert torch.equal(torch.cat([y for _, y in shards]), c.outputs('blocks.1.mlp'))
    assert load_collection(tmp_path / 'c').num_rows(site) == 780
    assert model.training is False and not model.blocks[1].mlp._forward_hooks   # hooks removed

    # training flags are restored, and [B, d] inputs (a VGG-style head) give one row per sample
    mlp = nn.Sequential(nn.Flatten(), nn.Sequential(nn.Linear(12, 8), nn.ReLU(inplace=True), nn.Linear(8, 3)),
                        nn.ReLU(inplace=True)).train()
    data = [torch.randn(5, 3, 4) for _ in range(2)]
    c = collect(mlp, None, data, tmp_path / 'head', progress=False)
    assert mlp.training and c.inputs('1').shape == (10, 12)
    with torch.no_grad():   # recorded before the in-place ReLU that follows the site
        assert torch.equal(c.outputs('1'), torch.cat([mlp[1](x.flatten(1)) for x in data]))
        assert (c.outputs('1') < 0).any()


def test_token_subsampling_is_seeded_and_counted(job, tmp_path):
    model, batches = job.make_model(), list(job.Batches(n=3))
    run = lambda name, seed: collect(model, 'blocks.0.mlp', batches, tmp_path / name, tokens_per_sample=7, seed=seed,
                                     progress=False).inputs('blocks.0.mlp')
    a, b, other = run('a', 0), run('b', 0), run('c', 1)
    assert a.shape == (3 * 4 * 7, 32) and torch.equal(a, b) and not torch.equal(a, other)
    all_rows = collect(model, 'blocks.0.mlp', batches, tmp_path / 'all', progress=False).inputs('blocks.0.mlp')
    per_sample = all_rows.reshape(12, 65, 32)
    for n in range(12):   # the 7 rows of each sample are 7 distinct tokens of that very sample
        rows = a[7 * n:7 * n + 7]
        hits = (rows[:, None, :] == per_sample[n][None]).all(-1)
        assert hits.any(1).all() and len(set(hits.float().argmax(1).tolist())) == 7


def test_max_tokens_stops_the_loader(job, tmp_path):
    loader = job.Batches(n=10)
    c = collect(job.make_model(), None, loader, tmp_path / 'c', max_tokens=250, shard_tokens=64, progress=False)
    assert loader.served == 1   # one batch holds 4 x 65 = 260 rows per site
    assert c.manifest['stopped_by'] == 'max_tokens' and c.complete
    for s in c.sites:
        assert c.num_rows(s) == 250 and [i['rows'] for i in c.info(s)['shards']] == [64, 64, 64, 58]
    assert c.inputs('blocks.0.mlp', max_rows=100).shape == (100, 32)


def test_bert_dict_batches_skip_padding(tmp_path):
    from transformers import BertConfig, BertModel
    torch.manual_seed(0)
    model = BertModel(BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=64)).eval()
    ids = torch.randint(1000, 2000, (3, 10))
    mask = torch.ones_like(ids); mask[0, 6:] = 0; mask[2, 3:] = 0
    batches = [dict(input_ids=ids, attention_mask=mask)]
    c = collect(model, None, batches, tmp_path / 'bert', progress=False)
    assert c.sites == ['encoder.layer.0.ffn', 'encoder.layer.1.ffn'] and c.num_rows('encoder.layer.1.ffn') == 6 + 10 + 3
    seen = {}
    layer = model.encoder.layer[1]
    h1 = layer.intermediate.register_forward_hook(lambda m, i, o: seen.update(x=i[0]))
    h2 = layer.output.dense.register_forward_hook(lambda m, i, o: seen.update(y=o))
    with torch.no_grad(): model(**batches[0])
    h1.remove(); h2.remove()
    assert torch.equal(c.inputs('encoder.layer.1.ffn'), seen['x'][mask.bool()])
    assert torch.equal(c.outputs('encoder.layer.1.ffn'), seen['y'][mask.bool()])
    sub = collect(model, 'encoder.layer.1.ffn', batches, tmp_path / 'sub', tokens_per_sample=4, progress=False)
    rows = sub.inputs('encoder.layer.1.ffn')
    assert rows.shape[0] == 4 + 4 + 3   # sample 2 has only 3 real tokens
    real = seen['x'][mask.bool()]
    assert (rows[:, None, :] == real[None]).all(-1).any(1).all()   # never a padding token


def test_damaged_shards_are_named_and_recomputed(job, tmp_path):
    out = tmp_path / 'c'
    ref = collect(job.make_model(), None, job.Batches(n=3), out, **job.ARGS)
    expected = ref.inputs('blocks.0.mlp')
    shards = ref.info('blocks.0.mlp')['shards']
    truncated, corrupted = out / shards[1]['file'], out / shards[3]['file']
    truncated.write_bytes(truncated.read_bytes()[:-10])
    with pytest.raises(ValueError, match=rf"Shard .*{truncated.name} of site 'blocks.0.mlp' has \d+ bytes.*Delete "
                                         r"that file and call collect"):
        Collection(out)
    truncated.unlink()
    data = bytearray(corrupted.read_bytes()); data[-7] ^= 0x55; corrupted.write_bytes(bytes(data))
    with pytest.raises(ValueError, match='missing'):
        Collection(out)
    with pytest.warns(UserWarning, match=rf"{truncated.name} is missing: recomputing it and the 3 shard\(s\) after it"):
        fixed = collect(job.make_model(), None, job.Batches(n=3), out, **job.ARGS)
    assert torch.equal(fixed.inputs('blocks.0.mlp'), expected)
    data = bytearray(corrupted.read_bytes()); data[-7] ^= 0x55; corrupted.write_bytes(bytes(data))
    c = Collection(out)   # same size: only the sha256 on reading finds it
    with pytest.raises(ValueError, match=rf"{corrupted.name} of site 'blocks.0.mlp' does not match its sha256"):
        c.inputs('blocks.0.mlp')
    with pytest.raises(ValueError, match='sha256'):
        c.verify()
    assert torch.equal(c.inputs('blocks.1.mlp'), ref.inputs('blocks.1.mlp'))   # other sites still readable


def test_configuration_mismatch_and_other_errors(job, tmp_path):
    out, model = tmp_path / 'c', job.make_model()
    collect(model, None, job.Batches(n=2), out, **job.ARGS)
    with pytest.raises(ValueError, match=r"different configuration \(max_tokens: None there, 100 now\).*new out_dir, "
                                         r"or overwrite=True"):
        collect(model, None, job.Batches(n=2), out, **{**job.ARGS, 'max_tokens': 100})
    c = collect(model, None, job.Batches(n=2), out, **{**job.ARGS, 'max_tokens': 100}, overwrite=True)
    assert c.num_rows('blocks.0.mlp') == 100 and c.config['max_tokens'] == 100
    with pytest.raises(ValueError, match='first batch differs'):   # same config, different data: no silent resume
        partial = json.loads((out / 'manifest.json').read_text())
        partial['complete'] = False
        (out / 'manifest.json').write_text(json.dumps(partial))
        collect(model, None, job.Batches(n=2, batch_size=3), out, **{**job.ARGS, 'max_tokens': 100})
    wrong_device = (r"model is on cpu but device='cuda'.*model.to\('cuda'\)" if torch.cuda.is_available() else
                    r"device='cuda' was requested but torch.cuda.is_available\(\) is False: pass device='cpu'")
    with pytest.raises(ValueError, match=wrong_device):
        collect(model, None, job.Batches(n=1), tmp_path / 'd', device='cuda')
    with pytest.raises(ValueError, match='shard_tokens=0'):
        collect(model, None, job.Batches(n=1), tmp_path / 'd', shard_tokens=0)
    c = collect(model, None, job.Batches(n=1), tmp_path / 'e', keep_outputs=False, progress=False)
    with pytest.raises(ValueError, match='keep_outputs=False'):
        c.outputs('blocks.0.mlp')
    with pytest.raises(KeyError, match=r"holds \['blocks.0.mlp', 'blocks.1.mlp'\]"):
        c.inputs('blocks.2.mlp')

    class Twice(nn.Module):   # one MLP used twice per forward (shared weights) cannot be recorded row by row
        def __init__(self):
            super().__init__(); self.mlp = nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.Linear(8, 4))
        def forward(self, x): return self.mlp(self.mlp(x))
    with pytest.raises(RuntimeError, match="'mlp' ran 2 times"):
        collect(Twice(), None, [torch.randn(2, 4)], tmp_path / 'f', progress=False)
    with pytest.raises(TypeError, match='Cannot feed a batch of type str'):
        collect(Twice(), None, ['not a tensor'], tmp_path / 'g', progress=False)


def test_progress_says_where_and_is_quiet_by_default_in_tests(job, tmp_path, capsys):
    "progress=None is quiet under pytest; progress=True prints where the rows go and draws a bar with a total."
    collect(job.make_model(), None, job.Batches(n=2), tmp_path / 'quiet', shard_tokens=64)
    out = capsys.readouterr()
    assert out.out == '' and out.err == ''
    collect(job.make_model(), None, job.Batches(n=2), tmp_path / 'loud', shard_tokens=64, progress=True,
            desc='collect train')
    out = capsys.readouterr()
    assert f"collect train: recording 2 site(s) into {tmp_path / 'loud'}" in out.out
    assert 'collect train' in out.err and 'batch' in out.err     # the tqdm bar (stderr)
