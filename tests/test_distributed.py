"Two CPU processes on torch.distributed (gloo) give the same streaming fit as one process, and a killed rank resumes."
import json, os
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from taylormlp.stream import ShardSource, fit_streaming, rank_share, world
from taylormlp.taylor import LinearActLinear, TaylorMLP

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason='torch.distributed with the gloo backend is not available in this torch build')

K, SHARDS, ROWS = 8, 6, 400

def _problem():
    "The same block and tokens in every process."
    torch.manual_seed(0)
    block = LinearActLinear(torch.nn.Linear(12, 32), torch.nn.GELU(), torch.nn.Linear(32, 7)).eval()
    x = torch.randn(SHARDS * ROWS, 12) + torch.randn(4, 12).repeat_interleave(SHARDS * ROWS // 4, 0) * 3
    x = x[torch.randperm(x.shape[0])]
    with torch.no_grad(): y = block(x)
    return block, x, y

class _Counting(ShardSource):
    "Counts the shards this process reads; optionally dies (os._exit, like a killed process) at one read."
    def __init__(self, source, die_at=None):
        super().__init__(source.readers, source.rows, source.names, source.d_in, source.d_out)
        self.reads, self.die_at = [], die_at
    def read(self, i):
        if self.die_at is not None and len(self.reads) == self.die_at: os._exit(3)
        self.reads.append(i)
        return super().read(i)

def _worker(rank: int, size: int, folder: str, tag: str, die_at: int, given_centres: bool):
    dist.init_process_group('gloo', init_method=f'file://{folder}/init_{tag}', rank=rank, world_size=size,
                            timeout=timedelta(seconds=60))
    try:
        assert world() == (rank, size)
        assert list(rank_share(range(7))) == list(range(rank, 7, size))     # each rank's batches to collect
        block, x, y = _problem()
        source = _Counting(ShardSource.from_tensors(x, y, rows_per_shard=ROWS), die_at=die_at if rank == 1 else None)
        centres = torch.load(Path(folder) / 'centres.pt') if given_centres else None
        model = fit_streaming(block, source, k=K, centres=centres, lloyd_passes=2, sample_per_centre=64, seed=0,
                              checkpoint=Path(folder) / 'ckpt', checkpoint_seconds=0,
                              out=Path(folder) / f'model_{tag}.safetensors')
        Path(folder, f'reads_{tag}_rank{rank}.json').write_text(json.dumps(source.reads))
        torch.save(model.intercepts, Path(folder) / f'intercepts_{tag}_rank{rank}.pt')
    finally:
        if dist.is_initialized(): dist.destroy_process_group()

def _run(folder, tag, die_at=-1, given_centres=False, size=2):
    mp.start_processes(_worker, args=(size, str(folder), tag, die_at, given_centres), nprocs=size, join=True,
                       start_method='spawn')

def _reads(folder, tag, rank): return json.loads((Path(folder) / f'reads_{tag}_rank{rank}.json').read_text())

def test_two_processes_match_one(tmp_path):
    "Sample, K-means on rank 0, two exact Lloyd passes and the statistics, all reduced: the tables of one process."
    block, x, y = _problem()
    one = fit_streaming(block, ShardSource.from_tensors(x, y, rows_per_shard=ROWS), k=K, lloyd_passes=2,
                        sample_per_centre=64, seed=0)
    _run(tmp_path, 'two')
    two = TaylorMLP.load(tmp_path / 'model_two.safetensors')
    torch.testing.assert_close(two.centres, one.centres, rtol=1e-5, atol=1e-5)
    for name in ('slopes', 'intercepts', 'values'):
        torch.testing.assert_close(getattr(two, name), getattr(one, name), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(two(x), one(x), rtol=1e-4, atol=1e-4)
    assert (two.meta['processes'], one.meta['processes'], two.meta['n_fit']) == (2, 1, x.shape[0])
    # both ranks hold the same model; rank r read shards r, r+2, r+4 in each of the 4 passes (sample, 2 Lloyd, stats)
    torch.testing.assert_close(torch.load(tmp_path / 'intercepts_two_rank0.pt'),
                               torch.load(tmp_path / 'intercepts_two_rank1.pt'))
    for rank in (0, 1): assert _reads(tmp_path, 'two', rank) == list(range(rank, SHARDS, 2)) * 4

def test_killed_rank_resumes(tmp_path):
    "Rank 1 dies in the statistics pass; the rerun reads only the shards it had not added, and matches one process."
    block, x, y = _problem()
    centres = x[:K].clone()
    torch.save(centres, tmp_path / 'centres.pt')
    one = fit_streaming(block, ShardSource.from_tensors(x, y, rows_per_shard=ROWS), centres=centres)
    with pytest.raises(Exception):             # rank 1 adds shard 1, then dies (exit code 3) reading shard 3
        _run(tmp_path, 'killed', die_at=1, given_centres=True)
    assert (tmp_path / 'ckpt' / 'statistics.rank1of2.safetensors').exists()
    _run(tmp_path, 'rerun', given_centres=True)
    assert _reads(tmp_path, 'rerun', 1) == [3, 5]
    rank0 = _reads(tmp_path, 'rerun', 0)        # rank 0 may have been stopped before it finished its share
    assert rank0 == [0, 2, 4][3 - len(rank0):]
    rerun = TaylorMLP.load(tmp_path / 'model_rerun.safetensors')
    torch.testing.assert_close(rerun(x), one(x), rtol=1e-4, atol=1e-4)
    assert rerun.meta['n_fit'] == x.shape[0]

def test_torchrun_command_line(tmp_path):
    "`torchrun --nproc_per_node=2 -m taylormlp.stream` on a collection: rank 0 writes the 1-process model."
    import shutil, subprocess, sys
    from taylormlp.adapt import site_from_path
    from taylormlp.collect import collect
    torchrun = shutil.which('torchrun', path=str(Path(sys.executable).parent)) or shutil.which('torchrun')
    if torchrun is None: pytest.skip('torchrun is not on PATH next to this python')
    block, x, y = _problem()
    model = torch.nn.Sequential(torch.nn.Identity(), block).eval()
    collect(model, [site_from_path(model, '1')], [(x[i:i + 300],) for i in range(0, x.shape[0], 300)],
            tmp_path / 'col', shard_tokens=500, progress=False)
    torch.save(block, tmp_path / 'block.pt')
    args = ['--collection', str(tmp_path / 'col'), '--site', '1', '--block', str(tmp_path / 'block.pt'), '--k', str(K),
            '--sample-per-centre', '64', '--checkpoint']
    done = subprocess.run([torchrun, '--standalone', '--nproc_per_node=2', '-m', 'taylormlp.stream', *args,
                           str(tmp_path / 'ckpt2'), '--out', str(tmp_path / 'two.safetensors')],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert 'by 2 process(es)' in done.stdout
    from taylormlp.stream import main
    assert main([*args, str(tmp_path / 'ckpt1'), '--out', str(tmp_path / 'one.safetensors')]) == 0
    two, one = (TaylorMLP.load(tmp_path / f'{n}.safetensors') for n in ('two', 'one'))
    torch.testing.assert_close(two.centres, one.centres, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(two(x), one(x), rtol=1e-4, atol=1e-4)
    assert two.meta['processes'] == 2 and two.meta['n_fit'] == x.shape[0]
