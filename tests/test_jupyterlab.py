"""The explorer widget in a real JupyterLab: server on 127.0.0.1, headless Chromium through Playwright.

Opens a notebook that ends with an explorer (a `k` SelectionSlider and an `order` Dropdown over an Output widget that
redraws a plotly figure whose title carries the median errors), runs all cells from the Run menu, changes `order`
and moves `k` with the keyboard, and asserts that the figure's title changed each time, as a user would see it.

The default notebook is a small stand-in written to tests/artifacts/ (same widgets, same redraw pattern as
`taylormlp.pipeline.explorer`). Point the test at a stage notebook with
`TAYLORMLP_LAB_NOTEBOOK=nbs/06_validate.ipynb` (and `TAYLORMLP_LAB_TIMEOUT=<seconds>` for its run-all).
JupyterLab's autosave is switched off, so the notebook on disk is not touched. Skips without /usr/bin/chromium,
playwright or jupyterlab; nothing is installed here.
"""
import json, os, secrets, signal, socket, subprocess, sys, time, urllib.error, urllib.request
from pathlib import Path

import pytest

from browser import REPO, CHROMIUM, CHROMIUM_ARGS, ARTIFACTS, require_browser

require_browser('playwright', 'jupyterlab')

EXPLORER_CHECK = r'''
import numpy as np, plotly.graph_objects as go, ipywidgets as W
from IPython.display import display

rng = np.random.default_rng(0)
x = rng.normal(size=(2000, 4))

def figure(k, order):
    "Distance to the nearest of k points against a made-up error of the given order."
    d = np.linalg.norm(x[:, None] - x[None, :k], axis=-1).min(1)
    err = 0.1 * d ** (order + 1)
    fig = go.Figure(go.Scatter(x=d, y=err, mode='markers', marker_size=3, name=f'order {order}'))
    return fig.update_layout(title=f"explorer check · k={k}: median error order {order} {np.median(err):.1%}",
                             xaxis_title='distance', yaxis_title='relative error', height=360)

k_w = W.SelectionSlider(options=[4, 16, 64], value=16, description='k', continuous_update=False)
order_w = W.Dropdown(options=[0, 1, 2], value=1, description='order')
out = W.Output()
def redraw(*_):
    with out:
        out.clear_output(wait=True)
        display(figure(k_w.value, order_w.value))
for w in (k_w, order_w): w.observe(redraw, names='value')
redraw()
display(W.VBox([W.HBox([k_w, order_w]), out]))
'''


def _explorer_check_notebook() -> Path:
    import nbformat
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell('# Explorer check\n\nA stand-in for the stage notebooks\' explorer.'),
                nbformat.v4.new_code_cell(EXPLORER_CHECK.strip())]
    nb.metadata['kernelspec'] = {'name': 'python3', 'display_name': 'Python 3 (ipykernel)', 'language': 'python'}
    folder = ARTIFACTS / 'lab'
    folder.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / '.gitignore').write_text('*\n')
    path = folder / 'explorer_check.ipynb'
    nbformat.write(nb, path)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.fixture(scope='module')
def lab(tmp_path_factory):
    "A JupyterLab server of its own (config, settings, workspaces in tmp; autosave off); shut down at the end."
    tmp = tmp_path_factory.mktemp('lab')
    for plugin, value in {'docmanager-extension/plugin': {'autosave': False},
                          'notebook-extension/tracker': {'autoStartDefaultKernel': True},
                          'apputils-extension/notification': {'fetchNews': 'false'}}.items():
        f = tmp / 'settings' / '@jupyterlab' / f'{plugin}.jupyterlab-settings'
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(value))
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, 'JUPYTER_CONFIG_DIR': str(tmp / 'config'), 'JUPYTER_RUNTIME_DIR': str(tmp / 'runtime'),
           'JUPYTERLAB_SETTINGS_DIR': str(tmp / 'settings'), 'JUPYTERLAB_WORKSPACES_DIR': str(tmp / 'workspaces'),
           'PYTHONUNBUFFERED': '1'}
    cmd = [sys.executable, '-m', 'jupyterlab', '--no-browser', '--ServerApp.ip=127.0.0.1',
           f'--ServerApp.port={port}', '--ServerApp.port_retries=0', f'--IdentityProvider.token={token}',
           f'--ServerApp.root_dir={REPO}', '--LabApp.news_url=', '--LabApp.extension_manager=readonly',
           '--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate']
    if os.geteuid() == 0: cmd.append('--allow-root')   # containers and CI run as root
    log = open(tmp / 'server.log', 'w')
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f'http://127.0.0.1:{port}'
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f'{base}/api/status?token={token}', timeout=5) as r:
                    if r.status == 200: break
            except (urllib.error.URLError, ConnectionError, OSError): pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not start (exit code {proc.poll()}):\n{(tmp / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield {'base': base, 'token': token, 'log': tmp / 'server.log'}
    finally:
        try:   # shuts the kernels down too
            req = urllib.request.Request(f'{base}/api/shutdown', method='POST', headers={'Authorization': f'token {token}'})
            urllib.request.urlopen(req, timeout=10).close()
        except Exception: pass
        try: proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGTERM)
            try: proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL); proc.wait(timeout=10)
        log.close()


def _notebooks():
    stage = os.environ.get('TAYLORMLP_LAB_NOTEBOOK')
    return ['explorer_check', pytest.param(stage, id='stage') if stage else pytest.param(
        None, id='stage', marks=pytest.mark.skip(reason="set TAYLORMLP_LAB_NOTEBOOK=nbs/06_validate.ipynb (a stage "
                                                        "notebook ending with explorer(...)) to run it in JupyterLab"))]


TITLE_JS = """() => { const d = [...document.querySelectorAll('.jupyter-widgets .js-plotly-plot, .widget-output .js-plotly-plot')].pop();
  if (!d || !d.querySelector('.main-svg')) return null;
  const t = d.layout && d.layout.title; return t && (t.text || t); }"""


@pytest.mark.parametrize('notebook', _notebooks())
def test_explorer_redraws_in_jupyterlab(lab, notebook):
    from playwright.sync_api import sync_playwright
    path = _explorer_check_notebook() if notebook == 'explorer_check' else (REPO / notebook).resolve()
    assert path.exists(), f"{path} does not exist"
    assert 'explorer' in path.read_text(), f"{path} has no explorer(...) cell: point TAYLORMLP_LAB_NOTEBOOK elsewhere"
    run_timeout = 1000 * int(os.environ.get('TAYLORMLP_LAB_TIMEOUT', 40 if notebook == 'explorer_check' else 600))
    before = path.read_bytes()
    problems = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, timeout=60_000)
        try:
            ctx = browser.new_context(viewport={'width': 1400, 'height': 1000})
            def gate(route):
                if route.request.url.startswith((lab['base'], 'data:', 'blob:')): return route.continue_()
                problems.append(f'off-machine request: {route.request.url}')
                route.abort()
            ctx.route('**/*', gate)
            page = ctx.new_page()
            page.on('pageerror', lambda e: problems.append(f'page error: {e}'))
            rel = path.relative_to(REPO).as_posix()
            page.goto(f"{lab['base']}/lab/tree/{rel}?token={lab['token']}", wait_until='load', timeout=90_000)
            page.wait_for_selector('.jp-NotebookPanel .jp-Notebook .jp-Cell', timeout=90_000)
            page.wait_for_function("() => /Idle/.test(document.querySelector('#jp-main-statusbar')?.innerText || '')",
                                   timeout=90_000)   # the kernel has started
            # Run > Run All Cells, as a user would
            page.get_by_role('menuitem', name='Run', exact=True).click()
            page.get_by_role('menuitem', name='Run All Cells', exact=True).click()
            page.wait_for_selector('.widget-dropdown select', timeout=run_timeout)
            page.wait_for_function(TITLE_JS, timeout=run_timeout)
            first = page.evaluate(TITLE_JS)
            assert 'median error' in first, first
            page.screenshot(path=str(ARTIFACTS / f'lab_{Path(rel).stem}_before.png'))

            order = page.locator('.widget-dropdown:has(label:text-is("order")) select').last
            current = order.input_value()
            order.select_option(index=(int(order.evaluate('s => s.selectedIndex')) + 1) % 3)
            page.wait_for_function(f'() => ({TITLE_JS})() && ({TITLE_JS})() !== {json.dumps(first)}', timeout=60_000)
            second = page.evaluate(TITLE_JS)
            assert second != first and 'median error' in second, (first, second)

            handle = page.locator('.widget-slider:has(label:text-is("k")) .noUi-handle').last
            readout = page.locator('.widget-slider:has(label:text-is("k")) .widget-readout').last
            k_before = readout.inner_text().strip()
            handle.focus()
            page.keyboard.press('ArrowLeft' if k_before == '64' else 'ArrowRight')
            page.wait_for_function(f'() => ({TITLE_JS})() && ({TITLE_JS})() !== {json.dumps(second)}', timeout=60_000)
            third = page.evaluate(TITLE_JS)
            k_after = readout.inner_text().strip()
            assert k_after != k_before and f'k={k_after}' in third, (k_before, k_after, third)
            page.screenshot(path=str(ARTIFACTS / f'lab_{Path(rel).stem}_after.png'))
            print(f"{rel}: {first!r} -> order changed from {current}: {second!r} -> k {k_before}->{k_after}: {third!r}")
        except Exception:
            page.screenshot(path=str(ARTIFACTS / f'lab_{path.stem}_failure.png'))
            raise
        finally:
            browser.close()
    assert not problems, problems
    assert path.read_bytes() == before, f"JupyterLab wrote {path}: autosave should be off"
