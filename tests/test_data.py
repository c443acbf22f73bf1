"Integration tests for taylormlp.data (stage 1). Real CIFAR-10 / STS-B tests skip when ../shared/data is absent."
import os
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

import taylormlp.data as data
from taylormlp.data import (ArrayDataset, SentencePairs, atomic_write, cache_dir, load_dataset, make_loader,
                            random_crop_flip, read_sts, shared_dir, spearman, stratified_subset)

SHARED = shared_dir()


def _require(*parts: str) -> Path:
    "Path under the shared folder, or skip the test with the reason and the fix."
    path = SHARED.joinpath(*parts) if SHARED is not None else None
    if path is None or not path.exists():
        pytest.skip(f"{path or '../shared/' + '/'.join(parts)} not found: set TAYLORMLP_SHARED to the folder holding "
                    'data/ (real CIFAR-10 / STS-B tests need it)')
    return path


@pytest.fixture
def empty_shared(tmp_path, monkeypatch):
    "TAYLORMLP_SHARED pointing at an empty folder, and a private cache, so nothing real is found."
    shared = tmp_path / 'shared'
    shared.mkdir()
    monkeypatch.setenv('TAYLORMLP_SHARED', str(shared))
    monkeypatch.setenv('TAYLORMLP_CACHE', str(tmp_path / 'cache'))
    return shared


# --- locating the shared folder and the cache --------------------------------------------------------------

def test_shared_dir_env_is_authoritative(empty_shared):
    assert shared_dir() == empty_shared
    assert shared_dir(required=True) == empty_shared


def test_shared_dir_env_missing_folder(tmp_path, monkeypatch):
    monkeypatch.setenv('TAYLORMLP_SHARED', str(tmp_path / 'nope'))
    assert shared_dir() is None
    with pytest.raises(FileNotFoundError, match='TAYLORMLP_SHARED=.*nope.*not a directory.*download=True'):
        shared_dir(required=True)


def test_shared_dir_walks_up_to_sibling_of_repo(tmp_path, monkeypatch):
    (tmp_path / 'shared' / 'data').mkdir(parents=True)
    work = tmp_path / 'repo' / 'nbs'
    work.mkdir(parents=True)
    monkeypatch.delenv('TAYLORMLP_SHARED', raising=False)
    monkeypatch.setattr(data, '_PACKAGE_DIR', tmp_path / 'repo' / 'taylormlp')
    monkeypatch.chdir(work)
    assert shared_dir() == tmp_path / 'shared'


def test_shared_dir_absent_names_search_and_fix(tmp_path, monkeypatch):
    monkeypatch.delenv('TAYLORMLP_SHARED', raising=False)
    monkeypatch.setattr(data, '_PACKAGE_DIR', tmp_path / 'pkg')
    monkeypatch.chdir(tmp_path)
    if any((p / 'shared' / 'data').is_dir() for p in (tmp_path, *tmp_path.parents)):
        pytest.skip('a shared/data folder exists above the temporary directory')
    assert shared_dir() is None
    with pytest.raises(FileNotFoundError) as e:
        shared_dir(required=True)
    assert str(tmp_path) in str(e.value) and 'TAYLORMLP_SHARED' in str(e.value) and 'download=True' in str(e.value)


def test_cache_dir_env(tmp_path, monkeypatch):
    monkeypatch.setenv('TAYLORMLP_CACHE', str(tmp_path))
    assert cache_dir() == tmp_path
    monkeypatch.delenv('TAYLORMLP_CACHE')
    root = data.project_root()
    assert root is None or cache_dir() == root / 'data' / 'cache'


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / 'sub' / 'f.txt'
    with atomic_write(target) as tmp: tmp.write_text('one')
    assert target.read_text() == 'one'
    with pytest.raises(RuntimeError):
        with atomic_write(target) as tmp:
            tmp.write_text('half')
            raise RuntimeError('crash')
    assert target.read_text() == 'one' and sorted(p.name for p in target.parent.iterdir()) == ['f.txt']


# --- digits --------------------------------------------------------------------------------------------------

def test_digits_split_is_fixed_stratified_and_complete():
    from sklearn.datasets import load_digits
    train, test = load_dataset('digits'), load_dataset('digits', 'test')
    assert (len(train), len(test)) == (1437, 360)
    x, y = train[0]
    assert x.shape == (1, 8, 8) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1 and isinstance(y, int)
    # the two splits partition the 1797 images, with class proportions kept
    full = load_digits()
    both = torch.cat([train.data, test.data]).view(-1, 64)
    assert sorted(map(tuple, both.tolist())) == sorted(map(tuple, full.data.tolist()))
    ratio = test.targets.bincount().float() / torch.tensor(np.bincount(full.target)).float()
    assert torch.all((ratio - 0.2).abs() < 0.02)
    assert torch.equal(load_dataset('digits', seed=7).data, train.data)  # seed never moves the split


def test_transforms_raw_train_callable():
    raw = load_dataset('digits', 'test', transform=None)
    assert raw[0][0].max() == 16  # raw grey levels 0..16
    shifted = load_dataset('digits', 'test', transform='train')
    torch.manual_seed(0)
    assert any(not torch.equal(shifted[i][0] * 16, raw[i][0]) for i in range(20))
    doubled = load_dataset('digits', 'test', transform=lambda x: 2 * x)
    assert torch.equal(doubled[3][0], 2 * raw[3][0])
    with pytest.raises(ValueError, match="pass 'eval', 'train', None"):
        load_dataset('digits', transform='augment')


def test_limit_is_seeded_and_stratified():
    a = load_dataset('digits', limit=200, seed=1)
    b = load_dataset('digits', limit=200, seed=1)
    c = load_dataset('digits', limit=200, seed=2)
    assert len(a) == 200 and torch.equal(a.data, b.data) and not torch.equal(a.data, c.data)
    assert a.targets.bincount().min() >= 19
    with pytest.raises(ValueError, match='positive integer'):
        load_dataset('digits', limit=-3)


def test_stratified_subset_properties():
    labels = np.repeat(np.arange(5), [100, 50, 25, 20, 5])
    idx = stratified_subset(labels, 40, seed=0)
    assert len(set(idx)) == 40 and np.all(np.diff(idx) > 0)
    assert np.bincount(labels[idx], minlength=5).tolist() == [20, 10, 5, 4, 1]
    assert len(stratified_subset(labels, 1000)) == 200


def test_make_loader_is_seeded():
    ds = load_dataset('digits', 'test')
    first = lambda seed: next(iter(make_loader(ds, 32, shuffle=True, seed=seed)))[1]
    assert torch.equal(first(0), first(0)) and not torch.equal(first(0), first(1))
    x, y = next(iter(make_loader(ds, 32)))
    assert x.shape == (32, 1, 8, 8) and torch.equal(y, ds.targets[:32])
    with pytest.raises(ValueError, match='positive integer'):
        make_loader(ds, 0)


# --- errors ----------------------------------------------------------------------------------------------------

def test_unknown_name_suggests_close_matches():
    with pytest.raises(ValueError, match=r"Unknown data set 'cifar-10'.*Did you mean \['cifar10'.*Valid names"):
        load_dataset('cifar-10')
    with pytest.raises(ValueError, match='Valid names'):
        load_dataset('mnist')
    with pytest.raises(ValueError, match=r"split='val' is not a split of 'cifar10'"):
        load_dataset('cifar10', split='val')
    with pytest.raises(TypeError, match='takes no options'):
        load_dataset('digits', shape=(3,))


def test_offline_errors_name_path_and_fix(empty_shared):
    with pytest.raises(FileNotFoundError) as e:
        load_dataset('cifar10', 'test')
    msg = str(e.value)
    assert str(empty_shared / 'data' / 'cifar10' / 'test.npz') in msg and 'TAYLORMLP_SHARED' in msg and 'download=True' in msg
    with pytest.raises(FileNotFoundError) as e:
        load_dataset('stsb', 'dev')
    assert str(empty_shared / 'data' / 'stsb' / 'sts-dev.tsv') in str(e.value) and 'download=True' in str(e.value)
    with pytest.raises(FileNotFoundError, match='download=True'):
        load_dataset('cifar100')  # torchvision files absent, download not allowed
    with pytest.raises(FileNotFoundError, match='ImageFolder'):
        load_dataset('imagenet', 'val')


def test_shared_env_not_a_folder_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv('TAYLORMLP_SHARED', str(tmp_path / 'nowhere'))
    monkeypatch.setenv('TAYLORMLP_CACHE', str(tmp_path / 'cache'))
    for name, split in (('cifar10', 'test'), ('stsb', 'dev')):
        with pytest.raises(FileNotFoundError, match=f"TAYLORMLP_SHARED={tmp_path / 'nowhere'} \\(not a directory\\)"):
            load_dataset(name, split)


def test_missing_package_names_the_install(monkeypatch):
    import sys
    for module in ('sklearn', 'sklearn.datasets', 'sklearn.model_selection'): monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ImportError, match=r"load_dataset\('digits'\) needs the package scikit-learn.*pip install scikit-learn"):
        load_dataset('digits')


def test_stsb_download_failure_is_explained(empty_shared, monkeypatch):
    def offline(*args, **kwargs): raise urllib.error.URLError('Name or service not known')
    monkeypatch.setattr(data.urllib.request, 'urlretrieve', offline)
    with pytest.raises(RuntimeError, match='no internet'):
        load_dataset('stsb', 'test', download=True)


# --- synthetic, imagenet folder, metric, augmentation ----------------------------------------------------------

def test_synthetic_is_seeded_and_separable():
    a = load_dataset('synthetic', shape=(3, 4, 4), num_classes=3, seed=5)
    assert a.data.shape == (512, 3, 4, 4) and torch.equal(a.data, load_dataset('synthetic', shape=(3, 4, 4), num_classes=3, seed=5).data)
    test = load_dataset('synthetic', 'test', shape=(3, 4, 4), num_classes=3, seed=5)
    means = torch.stack([a.data[a.targets == c].mean(0) for c in range(3)]).flatten(1)
    nearest = torch.cdist(test.data.flatten(1), means).argmin(1)
    assert (nearest == test.targets).float().mean() > 0.95


def test_imagenet_folder(tmp_path):
    from PIL import Image
    for cls in ('cat', 'dog'):
        (tmp_path / 'val' / cls).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.random.default_rng(i).integers(0, 255, (300, 260, 3), dtype=np.uint8)).save(
                tmp_path / 'val' / cls / f'{i}.png')
    ds = load_dataset('imagenet', 'val', root=tmp_path)
    x, y = ds[3]
    assert x.shape == (3, 224, 224) and y == 1 and ds.classes == ['cat', 'dog']
    assert len(load_dataset('imagenet', 'val', root=tmp_path, limit=2)) == 2


def test_spearman():
    assert spearman([1, 2, 3, 4], [1, 3, 9, 27]) == pytest.approx(1.0)
    assert spearman(torch.tensor([1.0, 2, 3, 4]), torch.tensor([4.0, 3, 2, 1])) == pytest.approx(-1.0)
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    with pytest.raises(ValueError, match='equal length'):
        spearman([1, 2, 3], [1, 2])


def test_random_crop_flip_is_a_window_of_the_padded_image():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 2, 5, 5)
    y = random_crop_flip(x, padding=2, flip=False, generator=g)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(6):
        windows = [padded[i, :, r:r + 5, c:c + 5] for r in range(5) for c in range(5)]
        assert any(torch.equal(y[i], w) for w in windows)
    flipped = random_crop_flip(x, padding=0, flip=True, generator=torch.Generator().manual_seed(1))
    assert all(torch.equal(f, o) or torch.equal(f, o.flip(-1)) for f, o in zip(flipped, x))


def test_read_sts_quote_none_and_extra_columns(tmp_path):
    path = tmp_path / 'sts-dev.tsv'
    path.write_text('main-news\tfile\t2012\t0001\t3.500\tHe said "yes.\tShe said no\textra\tcols\n'
                    'main-forums\tf\t2014\t0002\t0.000\tA\tB\n', encoding='utf-8')
    pairs = read_sts(path, 'dev')
    assert pairs[0] == ('He said "yes.', 'She said no', 3.5) and pairs.genres == ['main-news', 'main-forums']
    assert len(load_dataset('stsb', 'dev', root=tmp_path)) == 2


# --- real data (skip when ../shared/data is absent) --------------------------------------------------------------

def test_cifar10_test_split_decodes_and_caches(tmp_path, monkeypatch):
    npz = _require('data', 'cifar10', 'test.npz')
    monkeypatch.setenv('TAYLORMLP_CACHE', str(tmp_path))
    ds = load_dataset('cifar10', 'test')
    assert isinstance(ds, ArrayDataset) and len(ds) == 10_000 and ds.data.shape == (10_000, 3, 32, 32)
    assert ds.data.dtype == torch.uint8 and ds.targets.bincount().tolist() == [1000] * 10
    assert ds.classes[0] == 'airplane' and ds.classes[-1] == 'truck'
    x = ds.transform(ds.data.float())
    assert x.mean((0, 2, 3)).abs().max() < 0.05 and (x.std((0, 2, 3)) - 1).abs().max() < 0.05
    assert len(list((tmp_path / 'cifar10').glob('test-*.npy'))) == 1
    # the second load reads the cache: decoding must not run again
    monkeypatch.setattr(data, '_decode_jpegs', lambda *a: pytest.fail('decoded twice despite the cache'))
    again = load_dataset('cifar10', 'test', limit=100, seed=3)
    assert len(again) == 100 and again.targets.bincount().tolist() == [10] * 10
    # the same image from the JPEG bytes, decoded directly with Pillow
    import io
    from PIL import Image
    with np.load(npz) as z: o, jpeg = z['offsets'], z['jpeg']
    first = np.array(Image.open(io.BytesIO(jpeg[o[0]:o[1]].tobytes())).convert('RGB'))
    assert torch.equal(ds.data[0], torch.from_numpy(first).permute(2, 0, 1))


def test_stsb_splits():
    _require('data', 'stsb', 'sts-dev.tsv')
    train, dev = load_dataset('stsb', 'train'), load_dataset('stsb', 'dev')
    assert isinstance(dev, SentencePairs) and (len(train), len(dev)) == (5749, 1500)
    assert dev[0] == ('A man with a hard hat is dancing.', 'A man wearing a hard hat is dancing.', 5.0)
    assert 0 <= float(dev.scores.min()) and float(dev.scores.max()) <= 5
    with pytest.raises(FileNotFoundError, match='held back.*split="dev".*download=True'):
        load_dataset('stsb', 'test')
    sub = load_dataset('stsb', 'dev', limit=50, seed=0)
    assert len(sub) == 50 and len(sub.sentence1) == 50


def test_progress_flag_defaults(monkeypatch, capsys):
    "Bars and messages: on by default, off under test runners or TAYLORMLP_PROGRESS=0, explicit flags win."
    assert data.show_progress() is False                       # pytest is running
    assert data.show_progress(True) is True
    monkeypatch.setenv('TAYLORMLP_PROGRESS', '1')
    assert data.show_progress() is True
    monkeypatch.setenv('TAYLORMLP_PROGRESS', 'off')
    assert data.show_progress() is False and data.show_progress(True) is True
    data.say('hidden')
    data.say('shown', progress=True)
    assert capsys.readouterr().out == 'shown\n'
    assert list(data.progress_bar(range(3))) == [0, 1, 2]


def test_cifar_decode_says_where_the_cache_goes(tmp_path, monkeypatch, capsys):
    "The first decode of a CIFAR npz names the cache file and shows a bar; the second load is silent and cached."
    import io
    from PIL import Image
    jpegs = []
    for i in range(3):
        buf = io.BytesIO()
        Image.fromarray(np.full((32, 32, 3), 40 * i, dtype=np.uint8)).save(buf, format='JPEG')
        jpegs.append(np.frombuffer(buf.getvalue(), dtype=np.uint8))
    offsets = np.cumsum([0] + [len(j) for j in jpegs])
    np.savez(tmp_path / 'test.npz', jpeg=np.concatenate(jpegs), offsets=offsets, labels=np.array([0, 1, 2], np.uint8),
             classes=np.array(['a', 'b', 'c']))
    monkeypatch.setenv('TAYLORMLP_CACHE', str(tmp_path / 'cache'))
    images, labels, classes = data.decode_cifar_npz(tmp_path / 'test.npz', progress=True)
    out = capsys.readouterr()
    assert images.shape == (3, 32, 32, 3) and classes == ['a', 'b', 'c']
    assert f"decoding 3 JPEGs of {tmp_path / 'test.npz'} once; the array is cached in {tmp_path / 'cache' / 'cifar10'}" in out.out
    assert 'decode test' in out.err
    data.decode_cifar_npz(tmp_path / 'test.npz', progress=True)
    assert capsys.readouterr().out == ''
