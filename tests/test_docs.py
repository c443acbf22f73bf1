"""The offline docs site (tools/build_docs.py: Sphinx + myst-nb) in a real browser: headless Chromium through Playwright.

Builds the site from the notebooks as they are (no execution) plus one tiny executed notebook with a plotly figure
and a widget, serves it on 127.0.0.1, and checks every page: no console errors, no request leaving the machine,
plotly figures drawn, widgets drawn (when the html-manager is cached), search, every internal link and anchor
resolving, and a build without a single Sphinx warning.
Screenshots go to tests/artifacts/. Nothing is installed here: the test skips without /usr/bin/chromium or
playwright (`apt-get install -y chromium`; playwright comes with `pip install -e '.[dev]'`, never `playwright install`).
"""
import functools, http.server, re, sys, threading, urllib.error, urllib.parse, urllib.request
from html.parser import HTMLParser
from pathlib import Path

import pytest

from browser import REPO, CHROMIUM, CHROMIUM_ARGS, ARTIFACTS, require_browser

import importlib.util
if importlib.util.find_spec('myst_nb') is None:
    pytest.skip("myst-nb is not installed: pip install -e '.[dev]' (the docs site is built with Sphinx + myst-nb).",
                allow_module_level=True)
require_browser('playwright')

sys.path.insert(0, str(REPO / 'tools'))
import build_docs  # noqa: E402

TINY_CELLS = [
    ('markdown', "# Plot check\n\n> A tiny executed notebook: a plotly figure and a widget."),
    ('markdown', "Inline math $e^{i\\pi} + 1 = 0$ and a link to [the taylor stage](00_taylor.ipynb#expand)."),
    ('code', "import plotly.graph_objects as go, ipywidgets as W\nfrom IPython.display import display\n"
             "fig = go.Figure(go.Scatter(x=[1, 2, 3], y=[3, 1, 2], mode='lines+markers', name='line'))\n"
             "fig.update_layout(title='static figure', height=300)\nfig"),
    ('code', "k = W.IntSlider(value=2, min=1, max=5, description='k')\nout = W.Output()\n"
             "def redraw(*_):\n    with out:\n        out.clear_output(wait=True)\n"
             "        display(go.Figure(go.Bar(x=list(range(k.value)), y=list(range(1, k.value + 1))))"
             ".update_layout(title=f'k={k.value}', height=300))\n"
             "k.observe(redraw, names='value')\nredraw()\nW.VBox([k, out])"),
]


def _executed_tiny_notebook(folder: Path) -> Path:
    "The tiny notebook, executed in a real kernel (widget state saved in its metadata, as papermill/nbclient do)."
    import nbformat
    from nbclient import NotebookClient
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(s) if t == 'markdown' else nbformat.v4.new_code_cell(s)
                for t, s in TINY_CELLS]
    nb.metadata['kernelspec'] = {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}
    NotebookClient(nb, timeout=120, kernel_name='python3', resources={'metadata': {'path': str(folder)}}).execute()
    path = folder / 'plot_check.ipynb'
    nbformat.write(nb, path)
    return path


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args): pass


@pytest.fixture(scope='module')
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp('docs')
    extra = _executed_tiny_notebook(tmp)
    # fetch=False: no npm at test time; widgets/KaTeX are checked when `make docs` has cached them
    result = build_docs.build(tmp / 'site', runs=None, extra=[extra], fetch=False)
    assert not result['problems'], result['problems']
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0),
                                             functools.partial(_QuietHandler, directory=str(result['out'])))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield {**result, 'url': f'http://127.0.0.1:{server.server_address[1]}/'}
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope='module')
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, timeout=60_000)
        try: yield b
        finally: b.close()


def _artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / '.gitignore').write_text('*\n')    # screenshots never get committed
    return ARTIFACTS


def _open(browser, url: str, allowed_prefix: str):
    "A page that records console errors, page errors, failed or non-200 requests, and blocks anything off-site."
    ctx = browser.new_context(viewport={'width': 1280, 'height': 900})
    page = ctx.new_page()
    problems = []
    page.on('console', lambda m: problems.append(f'console.{m.type}: {m.text}') if m.type == 'error' else None)
    page.on('pageerror', lambda e: problems.append(f'page error: {e}'))
    page.on('requestfailed', lambda r: problems.append(f'request failed: {r.url} ({r.failure})'))
    page.on('response', lambda r: problems.append(f'HTTP {r.status}: {r.url}') if r.status >= 400 else None)

    def gate(route):
        u = route.request.url
        if u.startswith(allowed_prefix) or u.startswith(('data:', 'blob:', 'about:')): return route.continue_()
        problems.append(f'off-site request: {u}')
        route.abort()
    ctx.route('**/*', gate)
    page.goto(url, wait_until='load')
    return ctx, page, problems


PLOTS_DRAWN = """() => [...document.querySelectorAll('.plotly-graph-div')].every(
    d => d.classList.contains('js-plotly-plot') && d.querySelector('.main-svg') && d.querySelector('.main-svg').childElementCount > 0)"""


def _check_page(page, problems, name: str, widgets: bool, katex: bool) -> dict:
    "Wait for plotly/widgets/math on one page, screenshot it, and return what it found."
    plots = page.locator('.plotly-graph-div').count()
    has_widget_state = page.locator('script[type="application/vnd.jupyter.widget-state+json"]').count() > 0
    if widgets and has_widget_state:
        page.wait_for_selector('.widget-slider, .jupyter-widgets.widget-container', timeout=30_000)
        page.wait_for_function("() => document.querySelectorAll('.jupyter-widgets .plotly-graph-div, "
                               ".widget-output .plotly-graph-div').length > 0", timeout=30_000)
        plots = page.locator('.plotly-graph-div').count()
    if plots:
        page.wait_for_function(PLOTS_DRAWN, timeout=30_000)
    math = page.locator('.katex').count()
    page.evaluate("() => document.fonts.ready.then(() => true)")   # KaTeX/widget fonts load after layout
    page.screenshot(path=str(_artifacts() / f"docs_{name.replace('.html', '')}.png"))
    return {'plots': plots, 'widget_state': has_widget_state, 'katex': math}


def test_site_has_the_expected_pages(site):
    pages = set(site['pages'])
    nbs = build_docs.find_notebooks(REPO / 'nbs')
    assert 'index.html' in pages and 'getting_started.html' in pages and 'plot_check.html' in pages
    for nb in nbs:
        if nb.stem != 'index': assert build_docs._strip_number(nb.stem) + '.html' in pages, nb
    for py in (REPO / 'taylormlp').glob('*.py'):
        if not py.stem.startswith('_'): assert f'api_{py.stem}.html' in pages, py
    assert (site['out'] / '_static' / 'plotly.min.js').stat().st_size > 1_000_000
    for page in site['pages']:   # nothing may point at a CDN
        text = (site['out'] / page).read_text()
        assert not re.search(r'(src|href)="https?://[^"]*(cdn|unpkg|jsdelivr|cdnjs)[^"]*"', text), page


def test_every_page_in_the_browser(site, browser):
    seen = {}
    for name in site['pages']:
        ctx, page, problems = _open(browser, site['url'] + name, site['url'])
        try: seen[name] = _check_page(page, problems, name, site['widgets'], site['katex'])
        finally: ctx.close()
        assert not problems, f"{name}: {problems}"
    assert seen['plot_check.html']['plots'] >= (2 if site['widgets'] else 1), seen['plot_check.html']
    if site['widgets']:
        assert seen['plot_check.html']['widget_state']
    else:
        print("html-manager not cached (run `make docs` once): widget rendering not checked")
    if site['katex']:
        assert seen['plot_check.html']['katex'] >= 1 and seen['taylor.html']['katex'] >= 1
    else:
        print("KaTeX not cached (run `make docs` once): math rendering not checked")


def test_widget_slider_is_drawn_from_saved_state(site, browser):
    if not site['widgets']:
        pytest.skip("@jupyter-widgets/html-manager is not cached: run `make docs` (npm) once to check widgets.")
    ctx, page, problems = _open(browser, site['url'] + 'plot_check.html', site['url'])
    try:
        page.wait_for_selector('.widget-slider', timeout=30_000)
        page.wait_for_function(PLOTS_DRAWN, timeout=30_000)
        titles = page.eval_on_selector_all('.plotly-graph-div', "ds => ds.map(d => d.layout && d.layout.title && "
                                           "(d.layout.title.text || d.layout.title))")
        assert 'static figure' in titles and 'k=2' in titles, titles
        assert page.locator('.widget-readout').first.inner_text().strip() == '2'
    finally: ctx.close()
    assert not problems, problems


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.ids = [], set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get('id'): self.ids.add(a['id'])
        for key in ('href', 'src'):
            if a.get(key): self.links.append(a[key])


def test_every_internal_link_resolves(site):
    parsed = {}
    for name in site['pages']:
        p = _Links(); p.feed((site['out'] / name).read_text()); parsed[name] = p
    checked, broken, missing_anchor = set(), [], []
    for name, p in parsed.items():
        for link in p.links:
            if re.match(r'^[a-z][a-z0-9+.-]*:', link): continue          # http(s)://, mailto:, data:
            url = urllib.parse.urljoin(site['url'] + name, link)
            target, _, frag = url.partition('#')
            if target not in checked:
                checked.add(target)
                try:
                    with urllib.request.urlopen(target, timeout=10) as r: status = r.status
                except urllib.error.HTTPError as e: status = e.code
                if status != 200: broken.append(f"{name}: {link} -> HTTP {status}")
            page = target[len(site['url']):] or 'index.html'
            if frag and page in parsed and urllib.parse.unquote(frag) not in parsed[page].ids:
                missing_anchor.append(f"{name}: {link}")
    assert len(checked) > len(site['pages'])
    assert not broken, broken
    assert not missing_anchor, missing_anchor


def test_works_from_file_url(site, browser):
    for name in ('index.html', 'plot_check.html'):
        url = (site['out'] / name).resolve().as_uri()
        ctx, page, problems = _open(browser, url, 'file://')
        try: found = _check_page(page, problems, f'file_{name}', site['widgets'], site['katex'])
        finally: ctx.close()
        assert not problems, f"{url}: {problems}"
        if name == 'plot_check.html': assert found['plots'] >= 1


def test_build_emits_no_warnings(site):
    "Sphinx warns on every link to an anchor that does not exist, a heading out of order, a missing page..."
    assert site['warnings'] == [], site['warnings']
    # nbdev links every backticked name it knows; those with no anchor (private, undocumented) are left as code
    for entry in site['unlinked']:
        name = re.search(r'\[`([^`]+)`\]', entry).group(1).split('.')[-1]
        assert name.startswith('_'), f"a public name lost its link (no show_doc for it?): {entry}"


def test_links_to_names_without_an_anchor_are_left_as_code():
    doc_url = 'https://taylormlp.github.io/taylormlp/'
    links = build_docs.Links(doc_url, 'https://github.com/taylormlp/taylormlp', {'00_taylor.ipynb': 'taylor',
                             'taylor.html': 'taylor', 'README.md': 'getting_started'},
                             {'taylor': {'expand', 'taylormlp'}, 'api_taylor': {'taylormlp-load'}, 'getting_started': set()},
                             {'taylor': '.ipynb', 'api_taylor': '.md', 'getting_started': '.md'})
    md = (f"[`expand`]({doc_url}taylor.html#expand), [`_helper`]({doc_url}taylor.html#_helper), "
          f"[`TaylorMLP.load`]({doc_url}taylor.html#taylormlp.load), [the stage](00_taylor.ipynb#expand), "
          f"[code](benchmarks/speed.py)")
    assert links(md, 'getting_started') == (
        "[`expand`](taylor.ipynb#expand), `_helper`, [`TaylorMLP.load`](api_taylor.md#taylormlp-load), "
        "[the stage](taylor.ipynb#expand), [code](https://github.com/taylormlp/taylormlp/blob/main/benchmarks/speed.py)")
    assert links.unlinked == ['getting_started: [`_helper`](taylor.html#_helper)']
    assert links("[`expand`](#expand)", 'taylor') == "[`expand`](#expand)"


def test_search_finds_a_documented_name(site, browser):
    ctx, page, problems = _open(browser, site['url'] + 'search.html?q=expand', site['url'])
    try:
        page.wait_for_selector('#search-results li a', timeout=30_000)
        hits = page.eval_on_selector_all('#search-results li a', 'as => as.map(a => a.getAttribute("href"))')
    finally: ctx.close()
    assert any(h.startswith('taylor.html') for h in hits), hits
    assert not problems, problems
