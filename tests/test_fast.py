"Every route of taylormlp.fast gives TaylorMLP.forward's numbers (to float32 rounding). No timing assertions."
import warnings

import pytest
import torch
from torch import nn

import taylormlp.fast as fast_mod
from taylormlp.fast import FastTaylorMLP, load_extension
from taylormlp.taylor import LinearActLinear, TaylorMLP, expand

ROUTES = ('eager', 'padded', 'grouped_mm', 'script', 'cpp')

def _fitted(d_in, d_out, k, seed=0):
    torch.manual_seed(seed)
    block = LinearActLinear(nn.Linear(d_in, 3 * d_in), nn.GELU(), nn.Linear(3 * d_in, d_out)).eval()
    return TaylorMLP.from_expansion(expand(block, torch.randn(k, d_in), order=2))

# 'odd': widths that are no multiple of 8 (the kernels' tails) and skinny outputs (the 4-token kernel only);
# 'wide': outputs >= 32, so large clusters take the C++ GEMM branch.
MODELS = {'odd': _fitted(13, 8, 12), 'wide': _fitted(16, 40, 12, seed=1)}

def _near_centres(tm, n, seed=0, scale=0.1):
    "Inputs near random centres: no token sits on a tie between two centres."
    g = torch.Generator().manual_seed(seed)
    return tm.centres[torch.randint(0, tm.k, (n,), generator=g)] + scale * torch.randn(n, tm.d_in, generator=g)

def _need_cpp(route):
    if route == 'cpp' and load_extension() is None:
        pytest.skip("the C++ route could not be compiled here (no C++ compiler or ninja); see the warning of "
                    "taylormlp.fast.load_extension()")

@pytest.mark.parametrize('model', list(MODELS))
@pytest.mark.parametrize('route', ROUTES)
@pytest.mark.parametrize('order', (0, 1, 2))
@pytest.mark.parametrize('n', (1, 7, 4096))
def test_route_matches_forward(model, route, order, n):
    _need_cpp(route)
    tm = MODELS[model].with_order(order)
    if route == 'grouped_mm' and tm.d_in % 4:
        pytest.skip("grouped_mm needs widths that are multiples of 4 (its refusal is tested in the notebook)")
    x = _near_centres(tm, n, seed=n)
    torch.testing.assert_close(FastTaylorMLP(tm, route=route)(x), tm(x), rtol=1e-5, atol=1e-5)

@pytest.mark.parametrize('route', ROUTES)
def test_token_tensors(route):
    _need_cpp(route)
    tm = MODELS['wide']
    x = _near_centres(tm, 2 * 50).reshape(2, 50, tm.d_in)
    y = FastTaylorMLP(tm, route=route)(x)
    assert y.shape == (2, 50, tm.d_out)
    torch.testing.assert_close(y, tm(x), rtol=1e-5, atol=1e-5)
    assert FastTaylorMLP(tm, route=route)(x[:0]).shape == (0, 50, tm.d_out)

@pytest.mark.parametrize('route', ('eager', 'cpp'))
def test_least_squares_coefficients(route):
    "A least-squares model has intercepts that are not F(c) - J c: the routes must use the stored intercepts."
    _need_cpp(route)
    base = MODELS['wide']
    g = torch.Generator().manual_seed(3)
    tm = TaylorMLP(base.centres, base.values, base.slopes, torch.randn(base.k, base.d_out, generator=g),
                   base.hessian_diags, coefficients='lstsq')
    x = _near_centres(tm, 300)
    torch.testing.assert_close(FastTaylorMLP(tm, route=route)(x), tm(x), rtol=1e-5, atol=1e-5)

def test_padded_falls_back_on_unbalanced_clusters():
    tm = MODELS['wide']
    x = torch.cat([tm.centres[:1].expand(500, -1) + 0.05 * torch.randn(500, tm.d_in), _near_centres(tm, 3)])
    f = FastTaylorMLP(tm, route='padded', max_padding=2.0)      # k * 500 > 2 * 503: the loop runs
    torch.testing.assert_close(f(x), tm(x), rtol=1e-5, atol=1e-5)

def test_dtypes():
    tm = MODELS['wide']
    x = _near_centres(tm, 9).double()
    y = FastTaylorMLP(tm, route='eager')(x)
    assert y.dtype == torch.float64
    torch.testing.assert_close(y, tm(x), rtol=1e-5, atol=1e-5)
    tm64 = TaylorMLP(*(getattr(tm, n).double() for n in ('centres', 'values', 'slopes', 'intercepts',
                                                       'hessian_diags')))
    torch.testing.assert_close(FastTaylorMLP(tm64, route='eager')(x), tm64(x))
    assert FastTaylorMLP(tm64, route='auto').route == 'eager'
    with pytest.raises(ValueError, match="needs float32 tables on CPU"): FastTaylorMLP(tm64, route='cpp')

def test_compile_route():
    "Compiled gather-and-reduce for a few tokens, the eager grouped code above small_batch."
    tm = MODELS['wide']
    f = FastTaylorMLP(tm, route='compile', small_batch=4)
    for n in (1, 3, 50):
        x = _near_centres(tm, n, seed=n)
        torch.testing.assert_close(f(x), tm(x), rtol=1e-5, atol=1e-5)

def test_shares_tables_and_follows_updates():
    tm = _fitted(16, 8, 5, seed=4).with_order(1)
    f = FastTaylorMLP(tm, route='eager')
    assert f.slopes.data_ptr() == tm.slopes.data_ptr()
    tm.intercepts.add_(1.0)
    x = _near_centres(tm, 3)
    torch.testing.assert_close(f(x), tm(x), rtol=1e-5, atol=1e-5)

def test_refusals():
    tm = MODELS['odd']
    with pytest.raises(ValueError, match="use one of"): FastTaylorMLP(tm, route='triton')
    with pytest.raises(TypeError, match="wraps a fitted TaylorMLP"): FastTaylorMLP(nn.Linear(3, 3))
    with pytest.raises(ValueError, match="multiples of 4"): FastTaylorMLP(tm, route='grouped_mm')
    with pytest.raises(ValueError, match=r"expects inputs \[\.\.\., 13\]"): FastTaylorMLP(tm, route='eager')(torch.randn(2, 4))
    gated = _fitted(13, 8, 4).gate(nn.Identity(), radii=1.0)
    with pytest.raises(ValueError, match=r"tm.gate\(None\)"): FastTaylorMLP(gated)

def test_compilation_failure_falls_back(monkeypatch):
    "Without a compiler: a warning that says why, 'auto' uses 'eager', 'cpp' refuses with the fix."
    import torch.utils.cpp_extension as ce
    def broken(*args, **kwargs): raise RuntimeError("Error building extension: c++: command not found")
    monkeypatch.setattr(ce, 'load', broken)
    monkeypatch.setattr(fast_mod, '_EXTENSIONS', {})
    with pytest.warns(RuntimeWarning, match="could not be compiled.*command not found.*route='eager'"):
        assert load_extension() is None
    tm = MODELS['odd']
    with warnings.catch_warnings():
        warnings.simplefilter('error')   # the warning is given once, not on every construction
        assert FastTaylorMLP(tm, route='auto').route == 'eager'
        with pytest.raises(RuntimeError, match="use route='eager'"): FastTaylorMLP(tm, route='cpp')

@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here: the GPU routes are checked on a GPU "
                                                           "machine only")
@pytest.mark.parametrize('route', ('eager', 'padded'))
def test_cuda_routes(route):
    tm = MODELS['wide'].to('cuda')
    x = _near_centres(MODELS['wide'], 4096).to('cuda')
    torch.testing.assert_close(FastTaylorMLP(tm, route=route)(x), tm(x), rtol=1e-4, atol=1e-4)

@pytest.mark.parametrize('route', ('eager', 'script', 'cpp'))
def test_copy_and_move(route):
    "Deep copies work (no extension or compiled objects are stored on the module) and .to() keeps the tables in sync."
    import copy
    _need_cpp(route)
    tm = MODELS['wide']
    f = FastTaylorMLP(tm, route=route)
    x = _near_centres(tm, 20)
    torch.testing.assert_close(copy.deepcopy(f)(x), tm(x), rtol=1e-5, atol=1e-5)
    g = FastTaylorMLP(tm, route='eager').to(torch.float64)
    assert g._tables[2].dtype == torch.float64
    torch.testing.assert_close(g(x.double()), tm(x).double(), rtol=1e-5, atol=1e-5)
    assert len(f.state_dict()) == 0        # nothing to save: save the TaylorMLP itself

def test_kernel_source_ships_in_the_wheel(tmp_path):
    "The C++ source is a package file (not a Python string): it is found in place and a built wheel carries it."
    import shutil, subprocess, sys, zipfile
    from pathlib import Path
    src = fast_mod.kernel_source()
    assert src.is_file() and src.parent.name == 'csrc' and 'PYBIND11_MODULE' in src.read_text()
    root = Path(fast_mod.__file__).resolve().parents[1]
    if not (root / 'setup.py').is_file(): pytest.skip("taylormlp is installed from a wheel here, not a checkout")
    tree = tmp_path / 'tree'     # a copy, so the build leaves nothing in the checkout
    shutil.copytree(root / 'taylormlp', tree / 'taylormlp', ignore=shutil.ignore_patterns('__pycache__'))
    for name in ('setup.py', 'settings.ini', 'README.md', 'pyproject.toml', 'MANIFEST.in'):
        if (root / name).is_file(): shutil.copy(root / name, tree / name)
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-q', str(tree),
                    '-w', str(tmp_path / 'dist')], check=True, capture_output=True, cwd=tree)
    wheel, = (tmp_path / 'dist').glob('taylormlp-*.whl')
    assert 'taylormlp/csrc/taylor_kernels.cpp' in zipfile.ZipFile(wheel).namelist()

@pytest.mark.parametrize('table_dtype', (None, torch.float16, torch.int8))
def test_compile_has_no_graph_break_at_the_sites(table_dtype):
    "torch.compile over a model with FastTaylorMLP sites: one graph (the kernel runs as taylormlp::piecewise_map)."
    _need_cpp('cpp')
    import torch._dynamo
    tm = MODELS['wide']
    net = nn.Sequential(nn.Linear(8, 16), FastTaylorMLP(tm, route='cpp', table_dtype=table_dtype), nn.GELU(),
                        nn.Linear(40, 16), FastTaylorMLP(tm.with_order(1), route='cpp'), nn.Linear(40, 3)).eval()
    x = torch.randn(3, 7, 8)
    explained = torch._dynamo.explain(net)(x)
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons
    compiled = torch.compile(net, fullgraph=True, backend='aot_eager')
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), net(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(compiled(x[:1, :1]), net(x[:1, :1]), rtol=1e-5, atol=1e-5)

def test_custom_op_registration():
    _need_cpp('cpp')
    f = FastTaylorMLP(MODELS['odd'], route='cpp')
    x = _near_centres(MODELS['odd'], 9)
    torch.testing.assert_close(fast_mod.piecewise_map(x, *f._op_tables, 64), f(x), rtol=1e-6, atol=1e-6)
    torch.library.opcheck(fast_mod.piecewise_map, (x, *f._op_tables, 64))

def test_onnx_export_uses_standard_ops():
    "While exporting, FastTaylorMLP records ArgMin/Gather/Mul/ReduceSum (no C++ call hides in the trace)."
    _need_cpp('cpp')
    pytest.importorskip('onnx', reason="ONNX export needs the package onnx (pip install onnx)")
    ort = pytest.importorskip('onnxruntime', reason="the exported graph is run by onnxruntime (pip install onnxruntime)")
    import io, onnx
    tm = MODELS['odd']
    net = nn.Sequential(nn.Linear(6, 13), FastTaylorMLP(tm, route='cpp'), nn.ReLU(), nn.Linear(8, 3)).eval()
    buf = io.BytesIO()
    torch.onnx.export(net, (torch.randn(4, 6),), buf, dynamo=False, input_names=['x'], dynamic_axes={'x': {0: 'n'}})
    ops = {n.op_type for n in onnx.load_from_string(buf.getvalue()).graph.node}
    assert {'ArgMin', 'Gather'} <= ops, ops
    x = torch.randn(9, 6)
    y = ort.InferenceSession(buf.getvalue(), providers=['CPUExecutionProvider']).run(None, {'x': x.numpy()})[0]
    with torch.no_grad(): torch.testing.assert_close(torch.as_tensor(y), net(x), rtol=1e-4, atol=1e-4)
