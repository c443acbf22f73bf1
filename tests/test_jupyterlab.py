"""The explorer widget of a real stage notebook in a real JupyterLab: server on 127.0.0.1, headless Chromium through
Playwright.

A module fixture first computes the six stages in process (`taylormlp.pipeline.run_stages`, embedded digits ViT,
small parameters) into a temporary run folder, then writes a copy of a stage notebook parameterised the way papermill
does it (an injected-parameters cell after the `parameters` cell) that points at that folder; so the notebook's own
stage call only loads results. The test opens that copy in JupyterLab, runs all cells from the Run menu, changes the
`order` dropdown and moves the `k` slider with the keyboard, and asserts after each change that the plotted figure's
data (and its title, which carries the median errors) changed, as a user would see it.

The default notebook is `nbs/06_validate.ipynb` (the stage whose explorer shows the validated fits; it also runs
fastest of the stage notebooks here, since the others re-run more library checks). Pick another with
`TAYLORMLP_LAB_NOTEBOOK=nbs/04_collect.ipynb` (and `TAYLORMLP_LAB_TIMEOUT=<seconds>` for its run-all).
JupyterLab's autosave is switched off. Skips without /usr/bin/chromium, playwright, jupyterlab or papermill;
nothing is installed here.
"""
import json, os, secrets, signal, socket, subprocess, sys, time, urllib.error, urllib.request
from pathlib import Path

import pytest

from browser import REPO, CHROMIUM, CHROMIUM_ARGS, ARTIFACTS, require_browser

require_browser('playwright', 'jupyterlab', 'papermill')

NOTEBOOK = os.environ.get('TAYLORMLP_LAB_NOTEBOOK', 'nbs/06_validate.ipynb')
# small enough that the stages take seconds here and the explorer redraws in about a second
STAGE_PARAMS = dict(model='digits_vit', ks=[4, 16], k=4, order=1, fit_samples=300, eval_samples=100, max_tokens=3000,
                    seed=0)


@pytest.fixture(scope='module')
def stage_notebook(tmp_path_factory) -> Path:
    "A parameterised copy (under tests/artifacts/lab, so JupyterLab can open it) of a stage notebook over a finished run."
    import nbformat
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook
    from taylormlp.pipeline import RunConfig, run_stages
    src = (REPO / NOTEBOOK).resolve()
    assert src.exists(), f"{src} does not exist (TAYLORMLP_LAB_NOTEBOOK)"
    assert 'explorer(' in src.read_text(), f"{src} has no explorer(...) cell: point TAYLORMLP_LAB_NOTEBOOK elsewhere"
    out = tmp_path_factory.mktemp('lab_run') / 'digits_vit'
    t0 = time.perf_counter()
    run_stages(RunConfig(out_dir=str(out), progress=False, **STAGE_PARAMS))
    print(f"stages computed in {time.perf_counter() - t0:.0f} s into {out}")
    nb = load_notebook_node(str(src))    # as papermill reads it (every cell gets a tags list)
    nb.metadata['kernelspec'] = {'name': 'python3', 'display_name': 'Python 3 (ipykernel)', 'language': 'python'}
    nb = parameterize_notebook(nb, {**STAGE_PARAMS, 'out_dir': str(out), 'interactive': True, 'progress': False},
                               kernel_name='python3', language='python')
    folder = ARTIFACTS / 'lab'
    folder.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / '.gitignore').write_text('*\n')
    path = folder / src.name
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
           'PYTHONUNBUFFERED': '1', 'TAYLORMLP_PROGRESS': '0',
           'TAYLORMLP_STAGE_RUN': '1'}   # as under `taylormlp run`: the notebooks skip their slow library checks
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


TITLE_JS = """() => { const d = [...document.querySelectorAll('.jupyter-widgets .js-plotly-plot, .widget-output .js-plotly-plot')].pop();
  if (!d || !d.querySelector('.main-svg')) return null;
  const t = d.layout && d.layout.title; return t && (t.text || t); }"""
# the text of the first cell output that shows a traceback (a failed cell), or null
FAILED_JS = r"""() => { const o = [...document.querySelectorAll('.jp-OutputArea-output')].find(e => /Traceback \(most recent call last\)/.test(e.innerText));
  return o ? o.innerText.slice(0, 3000) : null; }"""
# what is plotted: per trace its name, point count and the sums of x and y (plotly's decoded data)
DATA_JS = """() => { const d = [...document.querySelectorAll('.jupyter-widgets .js-plotly-plot, .widget-output .js-plotly-plot')].pop();
  if (!d || !d._fullData) return null;
  const sum = a => a ? Array.from(a).reduce((s, v) => s + (+v || 0), 0) : 0;
  return JSON.stringify(d._fullData.map(t => [t.name, t.y ? t.y.length : 0, +sum(t.x).toPrecision(8), +sum(t.y).toPrecision(8)])); }"""


def test_explorer_redraws_in_jupyterlab(lab, stage_notebook):
    from playwright.sync_api import sync_playwright
    path = stage_notebook
    run_timeout = 1000 * int(os.environ.get('TAYLORMLP_LAB_TIMEOUT', 300))
    before = path.read_bytes()
    problems = []
    changed = lambda js, old: f'() => ({js})() && ({js})() !== {json.dumps(old)}'
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
            page.wait_for_function(f"() => ({FAILED_JS})() || document.querySelector('.widget-dropdown select')",
                                   timeout=run_timeout)   # the explorer is drawn, or a cell failed
            assert not page.evaluate(FAILED_JS), page.evaluate(FAILED_JS)
            page.wait_for_selector('.widget-dropdown:has(label:text-is("order")) select', timeout=60_000)
            page.wait_for_function(TITLE_JS, timeout=run_timeout)
            page.wait_for_function(DATA_JS, timeout=60_000)
            first, data1 = page.evaluate(TITLE_JS), page.evaluate(DATA_JS)
            assert 'median error' in first and f"k={STAGE_PARAMS['k']}" in first, first
            page.screenshot(path=str(ARTIFACTS / f'lab_{path.stem}_before.png'))

            order = page.locator('.widget-dropdown:has(label:text-is("order")) select').last
            current = order.input_value()
            order.select_option(index=(int(order.evaluate('s => s.selectedIndex')) + 1) % 3)
            page.wait_for_function(changed(DATA_JS, data1), timeout=60_000)
            page.wait_for_function(changed(TITLE_JS, first), timeout=60_000)
            second, data2 = page.evaluate(TITLE_JS), page.evaluate(DATA_JS)
            assert data2 != data1 and 'median error' in second, (data1, data2, second)

            handle = page.locator('.widget-slider:has(label:text-is("k")) .noUi-handle').last
            readout = page.locator('.widget-slider:has(label:text-is("k")) .widget-readout').last
            k_before = readout.inner_text().strip()
            handle.focus()
            page.keyboard.press('ArrowLeft' if k_before == str(max(STAGE_PARAMS['ks'])) else 'ArrowRight')
            page.wait_for_function(changed(DATA_JS, data2), timeout=60_000)
            page.wait_for_function(changed(TITLE_JS, second), timeout=60_000)
            third, data3 = page.evaluate(TITLE_JS), page.evaluate(DATA_JS)
            k_after = readout.inner_text().strip()
            assert k_after != k_before and f'k={k_after}' in third and data3 != data2, (k_before, k_after, third)
            page.screenshot(path=str(ARTIFACTS / f'lab_{path.stem}_after.png'))
            print(f"{rel}: {first!r} -> order changed from {current}: {second!r} -> k {k_before}->{k_after}: {third!r}")
            assert not page.evaluate(FAILED_JS), page.evaluate(FAILED_JS)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / f'lab_{path.stem}_failure.png'))
            raise
        finally:
            browser.close()
    assert not problems, problems
    assert path.read_bytes() == before, f"JupyterLab wrote {path}: autosave should be off"
