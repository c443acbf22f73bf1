#!/usr/bin/env python
"""Build the offline docs site from the notebooks: `python tools/build_docs.py [--execute] [--out site/]`.

Quarto is not installable here, so this does what `nbdev_docs` would, with nbconvert:

1. every notebook in `nbs/` (index, the numbered stage notebooks, results/speed and any others) goes through nbdev's
   docs processors (`nbdev.processors.FilterDefaults`: frontmatter, `#| hide`, `#| export`, `show_doc` cells, links);
   the `show_doc` cells are rendered from the exported modules (see `_render_show_docs` for why not by
   `nbdev.serve.proc_nbs`);
2. stage pages use executed notebooks from a run folder when there is one (`--execute` makes it with
   `taylormlp run all`);
3. nbconvert renders each page with `docs/templates/site` (JupyterLab's layout plus a shared sidebar); plotly JSON
   outputs become divs drawn by ONE local copy of plotly.min.js (from the installed plotly package); ipywidgets are
   drawn by a local `@jupyter-widgets/html-manager` and math by a local KaTeX, both from npm (cached in
   ~/.cache/taylormlp-docs); without them widgets are replaced by a note and math stays as TeX;
4. a getting-started page from README.md and an API page per exported module.

The result works from file:// and from `python -m http.server`; no page loads anything from the network.
"""
from __future__ import annotations

import argparse, html, importlib, json, os, re, shutil, subprocess, sys, tarfile, tempfile, time, warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / 'docs'
# npm packages drawn into the site; html-manager 1.0.x is the one that renders ipywidgets 8 state
NPM_ASSETS = {'html-manager': ('@jupyter-widgets/html-manager', '1.0.15'), 'katex': ('katex', '0.19.1')}
PLOTLY_MIME = 'application/vnd.plotly.v1+json'
WIDGET_VIEW_MIME = 'application/vnd.jupyter.widget-view+json'
WIDGET_STATE_MIME = 'application/vnd.jupyter.widget-state+json'
SECTIONS = ('Get started', 'Stages', 'Results', 'More notebooks', 'API reference')


def log(msg: str) -> None: print(f"build_docs: {msg}", flush=True)


# --------------------------------------------------------------------------------------------------- vendored assets
def cache_dir() -> Path:
    "Where the npm assets are kept between builds (outside the repo: they are several MB)."
    return Path(os.environ.get('TAYLORMLP_DOCS_CACHE') or
                Path(os.environ.get('XDG_CACHE_HOME') or Path.home() / '.cache') / 'taylormlp-docs')


def npm_asset(key: str, fetch: bool = True) -> Optional[Path]:
    "The unpacked `package/` folder of a pinned npm package: from the cache, else `npm pack` (if `fetch`), else None."
    name, version = NPM_ASSETS[key]
    dest = cache_dir() / f"{key}-{version}"
    if (dest / 'package.json').exists(): return dest
    if not fetch: return None
    npm = shutil.which('npm')
    if npm is None:
        log(f"npm not found: {name} is left out (install Node.js/npm, or copy the package to {dest})")
        return None
    with tempfile.TemporaryDirectory() as tmp:
        # `npm pack` downloads the registry tarball and checks its integrity; nothing is installed or executed
        r = subprocess.run([npm, 'pack', f'{name}@{version}', '--pack-destination', tmp, '--silent'],
                           capture_output=True, text=True, timeout=300)
        tgz = next(Path(tmp).glob('*.tgz'), None)
        if r.returncode != 0 or tgz is None:
            log(f"`npm pack {name}@{version}` failed ({(r.stderr or r.stdout).strip()[-300:]}): it is left out")
            return None
        part = dest.with_name(dest.name + '.part')
        shutil.rmtree(part, ignore_errors=True)
        with tarfile.open(tgz) as tf: tf.extractall(part, filter='data')
        shutil.rmtree(dest, ignore_errors=True)
        (part / 'package').rename(dest)
        shutil.rmtree(part, ignore_errors=True)
    log(f"fetched {name}@{version} into {dest}")
    return dest


def plotly_js() -> Path:
    "plotly.min.js shipped inside the installed plotly package."
    import plotly
    p = Path(plotly.__file__).parent / 'package_data' / 'plotly.min.js'
    if not p.exists(): raise FileNotFoundError(f"{p} is missing: reinstall plotly (pip install --force-reinstall plotly).")
    return p


def write_assets(out: Path, html_manager: Optional[Path], katex: Optional[Path]) -> None:
    "assets/: plotly.min.js, the notebook + site CSS, and the npm files the pages use."
    a = out / 'assets'
    a.mkdir(parents=True, exist_ok=True)
    shutil.copy2(plotly_js(), a / 'plotly.min.js')
    from nbconvert.exporters.templateexporter import TemplateExporter
    lab = next(Path(d) / 'lab' / 'static' for d in TemplateExporter().template_paths
               if (Path(d) / 'lab' / 'static' / 'index.css').exists())
    (a / 'notebook.css').write_text((lab / 'index.css').read_text() + '\n' + (lab / 'theme-light.css').read_text())
    shutil.copy2(DOCS / 'site.css', a / 'site.css')
    shutil.copy2(DOCS / 'site.js', a / 'site.js')
    if html_manager is not None:   # embed.js finds its font files next to itself
        shutil.copytree(html_manager / 'dist', a / 'html-manager', dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns('*.map', 'embed-amd.js', 'libembed-amd.js'))
    if katex is not None:
        shutil.copytree(katex / 'dist', a / 'katex', dirs_exist_ok=True,
                        ignore=lambda d, names: [n for n in names if n.endswith(('.ttf', '.woff', '.mjs', '.map'))
                                                 or (n.endswith('.js') and not n.endswith('.min.js'))
                                                 or n.endswith('.css') and not n.endswith('.min.css')])


# ------------------------------------------------------------------------------------------------------------- pages
@dataclass
class Page:
    href: str                      # output file name, e.g. 'taylor.html'
    section: str
    label: str                     # sidebar text
    source: str                    # what it was built from, shown in the footer
    nb: object = None              # nbformat notebook, ready for nbconvert
    title: str = ''
    description: str = ''
    note: str = ''


def _strip_number(stem: str) -> str: return re.sub(r'^\d+[a-zA-Z0-9]*_', '', stem)


def _label(title: str, stem: str) -> str:
    "Short sidebar text: 'NN · name' for numbered notebooks, else the title's first part."
    short = re.sub(r'[`*_]', '', title.split(':')[0]).strip() or _strip_number(stem)
    m = re.match(r'^(\d+)', stem)
    return f"{m.group(1)} · {short}" if m else short


def find_notebooks(nbs: Path) -> list[Path]:
    "index first, then the numbered notebooks in order, then the rest (results, speed, ...) by name."
    found = [p for p in sorted(nbs.glob('*.ipynb')) if not p.name.startswith(('_', '.'))]
    key = lambda p: (p.stem != 'index', not re.match(r'^\d', p.stem), p.stem)
    return sorted(found, key=key)


def find_run(spec: Optional[str]) -> Optional[Path]:
    "The run folder whose notebooks/ replace the sources: `auto` = runs/docs, else runs/demo, if present."
    if spec in (None, '', 'none'): return None
    if spec == 'auto':
        return next((REPO / 'runs' / n for n in ('docs', 'demo') if (REPO / 'runs' / n / 'notebooks').is_dir()), None)
    p = Path(spec)
    p = p if p.is_absolute() else REPO / p
    if not (p / 'notebooks').is_dir():
        raise FileNotFoundError(f"{p / 'notebooks'} does not exist: pass --runs with a run folder made by "
                                f"`taylormlp run all --out DIR`, or --runs none.")
    return p


def execute_stages(run_dir: Path, params: Sequence[tuple[str, str]], timeout: int) -> int:
    "Run the stage notebooks (then results/speed) so their pages carry real outputs; returns non-zero on a failure."
    exe = shutil.which('taylormlp', path=str(Path(sys.executable).parent)) or shutil.which('taylormlp')
    cmd = [exe] if exe else [sys.executable, '-c', 'import sys; from taylormlp.pipeline import main; sys.exit(main())']
    cmd += ['run', 'all', '--out', str(run_dir), '--timeout', str(timeout), '-p', 'interactive', 'False']
    for n, v in params: cmd += ['-p', n, v]
    log('executing the stage notebooks: ' + ' '.join(cmd))
    failed = subprocess.run(cmd, cwd=REPO).returncode
    if failed:
        log(f"`taylormlp run all` failed (exit {failed}): the site uses the stages that finished; the failed stage's "
            f"page shows its error")
    import papermill as pm
    for name in ('results.ipynb', 'speed.ipynb'):   # they read committed results files: quick
        src = REPO / 'nbs' / name
        if not src.exists(): continue
        log(f'executing {src.relative_to(REPO)}')
        try:
            pm.execute_notebook(str(src), str(run_dir / 'notebooks' / name), kernel_name='python3',
                                cwd=str(src.parent), execution_timeout=timeout, progress_bar=False)
        except Exception as e:
            failed = failed or 1
            log(f"{name} failed: {str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__}")
    return failed


# ------------------------------------------------------------------------------------------------ nbdev processing
_RE_DEFAULT_EXP = re.compile(r'^\s*#\s*\|\s*default_exp\s+(\S+)', re.M)
_RE_PANDOC_ATTR = re.compile(r'\{target="_blank"[^}]*\}')


def _lib() -> tuple[str, str, str]:
    "(lib_name, doc_host + doc_baseurl + '/', git_url) from settings.ini."
    from nbdev.config import get_config
    cfg = get_config(path=REPO)
    return cfg.lib_name, f"{cfg.doc_host.rstrip('/')}{cfg.doc_baseurl.rstrip('/')}/", cfg.git_url


def _module_namespace(lib: str, modname: Optional[str]) -> dict:
    "Names `show_doc(...)` cells may use: the notebook's module first, then every other exported module."
    from nbdev.showdoc import show_doc
    ns: dict = {}
    for py in sorted((REPO / lib).glob('*.py')):
        if py.stem.startswith('_') or py.stem == modname: continue
        try: mod = importlib.import_module(f'{lib}.{py.stem}')
        except Exception: continue   # a module that does not import is reported on its own API page
        ns.update({n: getattr(mod, n) for n in getattr(mod, '__all__', [])})
    if modname: ns.update(vars(importlib.import_module(f'{lib}.{modname}')))
    ns['show_doc'] = show_doc
    return ns


def _show_doc_markdown(obj, name: Optional[str] = None) -> str:
    from nbdev.showdoc import show_doc
    md = show_doc(obj, name=name)._repr_markdown_()
    # Quarto-only syntax and unknown line numbers would show up as text
    return _RE_PANDOC_ATTR.sub('', md).replace('#LNone)', ')')


def _render_show_docs(nb, lib: str, problems: list) -> None:
    """Fill the `show_doc(...)` cells from the exported module.

    nbdev's `proc_nbs` executes every exported and every import-bearing cell of each notebook to do this (6 minutes
    for these notebooks on 2 cores, and cells that mix imports with code fail out of context). The exported module
    already holds the same objects, so evaluating the `show_doc` call in its namespace gives the same output."""
    from nbdev.processors import _is_showdoc
    src = '\n'.join(c.source or '' for c in nb.cells if c.cell_type == 'code')
    m = _RE_DEFAULT_EXP.search(src)
    ns = None
    for cell in nb.cells:
        if not (cell.cell_type == 'code' and cell.source and _is_showdoc(cell)): continue
        if ns is None: ns = _module_namespace(lib, m.group(1) if m else None)
        call = '\n'.join(l for l in cell.source.splitlines() if not l.lstrip().startswith('#|')).strip()
        try:
            md = _RE_PANDOC_ATTR.sub('', eval(call, ns)._repr_markdown_()).replace('#LNone)', ')')
        except Exception as e:
            problems.append(f"{nb.path_}: `{call}` failed ({type(e).__name__}: {e})")
            cell.source = ''
            continue
        cell.outputs = [{'output_type': 'display_data', 'metadata': {}, 'data': {'text/markdown': md}}]
        cell.source = '#| echo: false\n' + call


def nbdev_process(path: Path, lib: str, problems: list):
    "nbdev's docs processors on one notebook -> (nbformat notebook, frontmatter dict)."
    import nbformat, yaml
    from execnb.nbio import read_nb, nb2dict
    from nbdev.processors import FilterDefaults
    from nbdev.process import NBProcessor
    nb = read_nb(path)
    procs = [p for p in FilterDefaults().procs() if p.__name__ != 'exec_show_docs']
    cwd = os.getcwd()
    os.environ['IN_TEST'] = '1'         # as nbdev.serve_drv does: notebooks can skip work in docs builds
    try:
        os.chdir(REPO)
        NBProcessor(nb=nb, procs=procs).process()
        _render_show_docs(nb, lib, problems)
    finally:
        os.chdir(cwd)
        os.environ.pop('IN_TEST', None)
    d = nb2dict(nb)
    d['cells'] = [c for c in d['cells'] if c.get('source') is not None]
    for c in d['cells']:
        if isinstance(c['source'], list): c['source'] = ''.join(c['source'])
        c.setdefault('metadata', {})
        if c['cell_type'] == 'code': c.setdefault('outputs', []); c.setdefault('execution_count', None)
        c.pop('idx_', None)
        c.pop('directives_', None)
    d.setdefault('nbformat', 4); d.setdefault('nbformat_minor', 5)
    fm = {}
    if d['cells'] and d['cells'][0]['cell_type'] == 'raw' and d['cells'][0]['source'].lstrip().startswith('---'):
        fm = yaml.safe_load(d['cells'][0]['source'].strip().strip('-')) or {}
        d['cells'] = d['cells'][1:]
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')   # cell ids: nbformat adds missing ones
        from nbformat.v4.rwbase import rejoin_lines
        nbn = rejoin_lines(nbformat.from_dict(d))   # execnb keeps outputs as lists of lines
        nbformat.validator.normalize(nbn)
    return nbn, fm


# ------------------------------------------------------------------------------------------- cell/output transforms
_RE_DIRECTIVE = re.compile(r'^\s*#\s*\|\s*([\w-]+)\s*:?\s*(.*?)\s*$')


def _directives(cell) -> dict:
    "Quarto `#| key: value` lines at the top of a code cell -> dict; removes them from the source."
    lines, out = cell.source.splitlines(), {}
    i = 0
    while i < len(lines) and (not lines[i].strip() or _RE_DIRECTIVE.match(lines[i])):
        m = _RE_DIRECTIVE.match(lines[i])
        if m: out[m.group(1).lower()] = m.group(2).strip().strip('"\'')
        i += 1
    if out: cell.source = '\n'.join(lines[i:])
    return out


def plotly_html(fig: dict, div_id: str) -> str:
    "A div and the script that draws `fig` with the page's global `Plotly` (assets/plotly.min.js)."
    import plotly.io as pio
    return pio.to_html(fig, include_plotlyjs=False, full_html=False, div_id=div_id, validate=False,
                       config={'responsive': True}, default_width='100%')


_RE_CDN_SCRIPT = re.compile(r'<script[^>]*src="https?://[^"]*"[^>]*>\s*</script>', re.I)


def _convert_outputs(outputs: list, page_id: str, counter: list) -> bool:
    "Plotly JSON -> html div (in place); returns True when a plotly figure is among the outputs."
    has_plotly = False
    for o in outputs:
        data = o.get('data') if isinstance(o, dict) else None
        if not data: continue
        if PLOTLY_MIME in data:
            counter[0] += 1
            fig = data[PLOTLY_MIME]
            fig = json.loads(fig) if isinstance(fig, str) else fig
            o['data'] = {'text/html': plotly_html(fig, f'{page_id}-plot-{counter[0]}')}
            has_plotly = True
        elif 'text/html' in data:
            h = data['text/html']
            h = ''.join(h) if isinstance(h, list) else h
            if 'Plotly.newPlot' in h or 'plotly' in h.lower():
                has_plotly = has_plotly or 'Plotly.newPlot' in h
                data['text/html'] = _RE_CDN_SCRIPT.sub('', h)   # plotly's `notebook_connected` renderer uses a CDN
    return has_plotly


def _widget_note() -> dict:
    return {'output_type': 'display_data', 'metadata': {}, 'data': {'text/html': (
        '<div class="site-widget-note">Interactive widget: open this notebook in JupyterLab to use it '
        '(the static site shows the figures the run saved).</div>')}}


def transform(nb, page_id: str, widgets: bool) -> dict:
    "Quarto directives, plotly figures, widgets and papermill leftovers -> what the template renders. Returns flags."
    counter, flags = [0], {'plotly': False, 'widgets': False}
    state = nb.metadata.get('widgets', {}).get(WIDGET_STATE_MIME, {}).get('state', {})
    keep = []
    for cell in nb.cells:
        cell.metadata.pop('papermill', None)
        cell.metadata.pop('execution', None)
        if cell.cell_type != 'code': keep.append(cell); continue
        d = _directives(cell)
        tags = set(cell.metadata.get('tags', []))
        if d.get('include') == 'false' or 'remove-cell' in tags: continue
        if d.get('echo') == 'false' or 'remove_input' in tags or 'remove-input' in tags: cell.metadata['site_hide_input'] = True
        if d.get('output') == 'false': cell.outputs = []
        if d.get('code-fold') in ('true', 'show'): cell.metadata['site_fold'] = True
        outs = []
        for o in cell.get('outputs', []):
            if WIDGET_VIEW_MIME in o.get('data', {}):
                model = o['data'][WIDGET_VIEW_MIME].get('model_id')
                if widgets and model in state: flags['widgets'] = True; outs.append(o)
                else: outs.append(_widget_note())
            else: outs.append(o)
        cell.outputs = outs
        if _convert_outputs(cell.outputs, page_id, counter): flags['plotly'] = True
        if not cell.source.strip() and not cell.outputs: continue
        keep.append(cell)
    nb.cells = keep
    if 'widgets' in nb.metadata:
        if not (widgets and flags['widgets']): del nb.metadata['widgets']
        else:   # Output widgets hold their own outputs (e.g. the explorer's figure)
            for s in state.values():
                outs = s.get('state', {}).get('outputs')
                if outs and _convert_outputs(outs, page_id, counter): flags['plotly'] = True
    for k in ('papermill', 'jupytext'): nb.metadata.pop(k, None)
    return flags


# ------------------------------------------------------------------------------------------------- HTML post-process
def pandoc_id(text: str) -> str:
    "Pandoc's identifier rule (what Quarto and nbdev's doc links use): lowercase, keep letters/digits/_-., spaces->-."
    s = re.sub(r'[^\w\s.-]', '', text.strip().lower())
    s = re.sub(r'\s+', '-', s)
    return re.sub(r'^[^a-z_]+', '', s) or 'section'


def postprocess(doc: str, page_links: dict, doc_url: str) -> tuple[str, set, set]:
    "Heading ids as Quarto makes them, site-relative links, folded exported source, hidden inputs -> (html, ids, hrefs)."
    from bs4 import BeautifulSoup
    soup = BeautifulSoup(doc, 'html.parser')
    main = soup.find('main') or soup
    seen = {t['id'] for t in soup.select('.site-page-header [id]')}
    for h in main.find_all(['h1', 'h2', 'h3', 'h4', 'h5', 'h6']):
        if 'site-title' in (h.get('class') or []): continue
        for a in h.find_all('a', class_='anchor-link'): a.decompose()
        base = pandoc_id(h.get_text())
        hid, n = base, 1
        while hid in seen: hid, n = f'{base}-{n}', n + 1
        seen.add(hid)
        h['id'] = hid
        a = soup.new_tag('a', href=f'#{hid}', attrs={'class': 'anchor-link'})
        a.string = '¶'
        h.append(a)
    for a in soup.find_all('a', href=True):
        href = a['href']
        if href.startswith(doc_url): href = href[len(doc_url):] or 'index.html'
        path, _, frag = href.partition('#')
        if not re.match(r'^[a-z][a-z0-9+.-]*:', path) and path:   # relative link: .ipynb/.md sources -> pages
            key = Path(path).name
            if key in page_links: href = page_links[key] + (f'#{frag}' if frag else '')
        a['href'] = href
    for cell in main.select('.site-hide-input .jp-Cell-inputWrapper'): cell.decompose()
    for cell in main.select('.site-fold'):
        wrap = cell.select_one('.jp-Cell-inputWrapper')
        if wrap is None: continue
        det = soup.new_tag('details', attrs={'class': 'site-fold'})
        summ = soup.new_tag('summary'); summ.string = 'Exported source'
        wrap.wrap(det)
        det.insert(0, summ)
    ids = {t['id'] for t in soup.find_all(id=True)}
    return str(soup), ids, {a['href'] for a in soup.find_all('a', href=True)}


def _cell_classes(nb) -> None:
    "Mark cells for postprocess through tags (nbconvert's lab template writes tags as classes celltag_<tag>)."
    for c in nb.cells:
        tags = list(c.metadata.get('tags', []))
        if c.metadata.pop('site_hide_input', False): tags.append('site-hide-input')
        fold = c.metadata.pop('site_fold', None)
        if fold: tags.append('site-fold')
        if tags: c.metadata['tags'] = tags


# ---------------------------------------------------------------------------------------------------------- build
def markdown_notebook(markdown_cells: Sequence[str]):
    import nbformat
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(m) for m in markdown_cells]
    return nb


def readme_page(readme: Path) -> Page:
    text = readme.read_text()
    m = re.match(r'^#\s+(.+?)\n+((?:>.*\n?)+)?', text)
    title = m.group(1).strip() if m else 'Getting started'
    desc = re.sub(r'^>\s?', '', m.group(2), flags=re.M).replace('\n', ' ').strip() if m and m.group(2) else ''
    body = text[m.end():] if m else text
    page = Page('getting_started.html', 'Get started', 'Getting started', 'README.md',
                title=f'Getting started with {title}', description=desc)
    page.nb = markdown_notebook([body])
    return page


def copy_readme_images(out: Path) -> None:
    "Local images the README shows (e.g. docs/explorer.png) go into the site at the same relative path."
    readme = REPO / 'README.md'
    for ref in re.findall(r'!\[[^\]]*\]\(([^)\s]+)\)', readme.read_text() if readme.exists() else ''):
        src = REPO / ref
        if not re.match(r'\w+://', ref) and src.is_file():
            (out / ref).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, out / ref)


def api_pages(lib: str, problems: list) -> list[Page]:
    "One page per exported module: every public name with its signature and docstring (nbdev's show_doc)."
    import inspect
    pages = []
    for py in sorted((REPO / lib).glob('*.py')):
        if py.stem.startswith('_'): continue
        modname = f'{lib}.{py.stem}'
        page = Page(f'api_{py.stem}.html', 'API reference', py.stem, str(py.relative_to(REPO)),
                    title=f'API: {modname}')
        try:
            mod = importlib.import_module(modname)
        except Exception as e:
            problems.append(f"{modname} does not import: {type(e).__name__}: {e}")
            page.nb = markdown_notebook([f'`import {modname}` failed: `{type(e).__name__}: {e}`'])
            pages.append(page); continue
        page.description = (inspect.getdoc(mod) or '').split('\n\n')[0]
        cells = []
        for name in getattr(mod, '__all__', []):
            obj = getattr(mod, name, None)
            if not (inspect.isfunction(obj) or inspect.isclass(obj)): continue
            try:
                cells.append(_show_doc_markdown(obj, name))
                if inspect.isclass(obj):
                    for mname, member in obj.__dict__.items():
                        if mname.startswith('_'): continue
                        fn = member.__func__ if isinstance(member, (classmethod, staticmethod)) else member
                        if inspect.isfunction(fn) and fn.__doc__:   # its own docstring, not nn.Module's
                            cells.append(_show_doc_markdown(fn, f'{name}.{mname}'))
            except Exception as e:
                problems.append(f"show_doc({modname}.{name}) failed: {type(e).__name__}: {e}")
        names = re.findall(r'^### (.+)$', '\n'.join(cells), re.M)
        toc = ' · '.join(f'[`{n}`](#{pandoc_id(n)})' for n in names)
        has_page = any(_strip_number(p.stem) == py.stem for p in find_notebooks(REPO / 'nbs'))
        intro = f'Generated from `{modname}` (`__all__`).' + (
            f' The [{py.stem} page]({py.stem}.html) has the same entries with prose and examples.' if has_page else '')
        page.nb = markdown_notebook([f'{intro}\n\n{toc}'] + cells if cells else ['(no public functions or classes)'])
        pages.append(page)
    return pages


def _inline_markdown(text: str) -> str:
    "Title/description text with `code` as <code>, everything else escaped."
    parts = re.split(r'`([^`]+)`', text)
    return ''.join(f'<code>{html.escape(p)}</code>' if i % 2 else html.escape(p) for i, p in enumerate(parts))


def executed_results_page(src: Path) -> Path:
    "results/speed only read the committed data/results files: execute them (seconds) so their pages show tables and figures."
    import papermill as pm, tempfile
    out = Path(tempfile.mkdtemp(prefix='taylormlp-docs-')) / src.name
    log(f'executing {src.relative_to(REPO)} (reads data/results)')
    pm.execute_notebook(str(src), str(out), kernel_name='python3', cwd=str(src.parent), progress_bar=False)
    return out


def build(out: Path = REPO / 'site', nbs: Path = REPO / 'nbs', runs: Optional[Path] = None,
          extra: Sequence[Path] = (), fetch: bool = True, api: bool = True, execute_results: bool = True) -> dict:
    """Build the site into `out`; returns {'pages': [...], 'problems': [...], 'widgets': bool, 'katex': bool}.

    runs: a run folder whose `notebooks/` hold executed copies of notebooks in `nbs` (used instead of them).
    extra: more (executed) notebooks to add as pages, in a 'More notebooks' section.
    fetch: allow `npm pack` for html-manager/KaTeX when they are not cached yet.
    execute_results: execute results/speed (they read committed JSON) when no run folder has executed copies."""
    from traitlets.config import Config
    from nbconvert import HTMLExporter
    t0 = time.perf_counter()
    lib, doc_url, _ = _lib()
    if str(REPO) not in sys.path: sys.path.insert(0, str(REPO))
    problems: list[str] = []
    html_manager, katex = npm_asset('html-manager', fetch), npm_asset('katex', fetch)
    if html_manager is None: log('widgets: html-manager unavailable, widget outputs become a note')
    if katex is None: log('math: KaTeX unavailable, math stays as TeX source')

    pages: list[Page] = []
    page_links = {'README.md': 'getting_started.html'}   # links written against notebooks/README -> their pages
    run_nbs = runs / 'notebooks' if runs else None
    sources = [(p, 'nbs') for p in find_notebooks(nbs)] + [(Path(p), 'extra') for p in extra]
    for src, kind in sources:
        used = run_nbs / src.name if kind == 'nbs' and run_nbs and (run_nbs / src.name).exists() else src
        if used == src and kind == 'nbs' and src.stem in ('results', 'speed') and execute_results:
            try: used = executed_results_page(src)
            except Exception as e: problems.append(f"{src.name} did not execute: {str(e).strip().splitlines()[-1:]}")
        nb, fm = nbdev_process(used, lib, problems)
        stem = src.stem
        href = 'index.html' if stem == 'index' and kind == 'nbs' else str(fm.get('output-file') or
                                                                          _strip_number(stem) + '.html')
        title = str(fm.get('title') or stem)
        if kind == 'extra': section = 'More notebooks'
        elif stem == 'index': section = 'Get started'
        elif re.match(r'^\d', stem): section = 'Stages'
        elif stem in ('results', 'speed'): section = 'Results'
        else: section = 'More notebooks'
        page_links[src.name] = href
        label = 'Home' if href == 'index.html' else _label(title, stem)
        executed_here = not used.resolve().is_relative_to(REPO)
        note = (f"Executed notebook: {'nbs/' + src.name + ' (executed for this build)' if executed_here else os.path.relpath(used, REPO)}"
                if used != src and kind == 'nbs' else
                'Notebook as committed (not executed): build with --execute to show the outputs of a run.'
                if section == 'Stages' and not any(c.get('outputs') for c in nb.cells if c.cell_type == 'code') else '')
        shown = f'nbs/{src.name}, executed' if executed_here else os.path.relpath(used, REPO)
        pages.append(Page(href, section, label, shown, nb, title,
                          str(fm.get('description') or ''), note))
    if (REPO / 'README.md').exists():
        pages.insert(1 if pages and pages[0].href == 'index.html' else 0, readme_page(REPO / 'README.md'))
    if api: pages += api_pages(lib, problems)
    hrefs = [p.href for p in pages]
    dup = {h for h in hrefs if hrefs.count(h) > 1}
    if dup: raise ValueError(f"Two notebooks map to the same page {sorted(dup)}: rename one of them.")

    nav = [{'title': s, 'pages': [{'href': p.href, 'label': p.label} for p in pages if p.section == s]}
           for s in SECTIONS if any(p.section == s for p in pages)]

    c = Config()
    c.HTMLExporter.extra_template_basedirs = [str(DOCS / 'templates')]
    c.HTMLExporter.template_name = 'site'
    c.HTMLExporter.exclude_input_prompt = True
    c.HTMLExporter.exclude_output_prompt = True
    exporter = HTMLExporter(config=c)

    if out.exists(): shutil.rmtree(out)
    out.mkdir(parents=True)
    write_assets(out, html_manager, katex)
    copy_readme_images(out)
    with open(out / '.nojekyll', 'w'): pass
    rendered = {}
    for page in pages:
        page_id = Path(page.href).stem
        flags = transform(page.nb, page_id, widgets=html_manager is not None)
        _cell_classes(page.nb)
        site = dict(project=lib, tagline=_lib_description(), nav=nav, current=page.href, plotly=flags['plotly'],
                    widgets=flags['widgets'], katex=katex is not None, title_id=pandoc_id(page.title),
                    title_html=_inline_markdown(page.title), description_html=_inline_markdown(page.description),
                    source=page.source, source_note=page.note)
        body, _ = exporter.from_notebook_node(page.nb, resources={'site': site, 'metadata': {'name': page.title}})
        rendered[page.href] = postprocess(_fold_classes(body), page_links, doc_url)
    for href, (body, _, links) in rendered.items():
        (out / href).write_text(_fix_anchors(href, body, links, rendered), encoding='utf-8')
    log(f"{len(pages)} pages in {out} ({time.perf_counter() - t0:.1f} s)")
    for p in problems: log(f"problem: {p}")
    return {'pages': [p.href for p in pages], 'problems': problems, 'widgets': html_manager is not None,
            'katex': katex is not None, 'out': out}


def _fix_anchors(href: str, body: str, links: set, rendered: dict) -> str:
    """Links to an anchor a page does not have: to the API page that has it, else to the page itself.

    nbdev links every backticked name it knows, private helpers and undocumented methods included, but only
    documented names get a heading (Quarto then lands at the top of the page, as this does)."""
    for link in links:
        page, _, frag = link.partition('#')
        if not frag or page not in rendered or frag in rendered[page][1]: continue
        api = f'api_{Path(page).stem}.html'
        new = f'{api}#{frag}' if api in rendered and frag in rendered[api][1] else page
        log(f"{href}: link {link} has no such anchor (undocumented or private name): it points to {new}")
        body = body.replace(f'href="{link}"', f'href="{new}"')
    return body


def _fold_classes(body: str) -> str:
    "celltag_site-fold / celltag_site-hide-input (from the lab template) -> the classes postprocess looks for."
    return body.replace('celltag_site-fold', 'site-fold').replace('celltag_site-hide-input', 'site-hide-input')


def _lib_description() -> str:
    from nbdev.config import get_config
    return get_config(path=REPO).get('description', '')


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument('--out', default='site', help='output folder (default site/; it is replaced)')
    p.add_argument('--execute', action='store_true',
                   help='first run the stage notebooks: taylormlp run all --out RUNS -p interactive False')
    p.add_argument('--runs', default='auto',
                   help="run folder whose notebooks/ hold executed stage notebooks; 'auto' (default) takes runs/docs "
                        "or runs/demo if present; 'none' uses nbs/ as committed")
    p.add_argument('-p', '--param', nargs=2, action='append', default=[], metavar=('NAME', 'VALUE'),
                   help='notebook parameter passed to `taylormlp run` with --execute')
    p.add_argument('--timeout', type=int, default=1800, help='seconds per cell with --execute')
    p.add_argument('--extra', action='append', default=[], help='another notebook to add as a page (repeatable)')
    p.add_argument('--offline', action='store_true', help='never call npm: use cached html-manager/KaTeX or go without')
    p.add_argument('--no-api', action='store_true', help='skip the API reference pages')
    a = p.parse_args(argv)
    runs, failed = a.runs, 0
    if a.execute:
        run_dir = REPO / ('runs/docs' if runs in ('auto', 'none') else runs)
        failed = execute_stages(run_dir, a.param, a.timeout)
        runs = str(run_dir)
    try:
        run_dir = find_run(runs)
    except FileNotFoundError as e:
        print(f"build_docs: error: {e}", file=sys.stderr); return 1
    log(f"stage pages from {'executed notebooks in ' + str(run_dir / 'notebooks') if run_dir else 'nbs/ as committed'}")
    out = Path(a.out)
    r = build(out if out.is_absolute() else Path.cwd() / out, runs=run_dir, extra=[Path(x) for x in a.extra],
              fetch=not a.offline, api=not a.no_api)
    print(f"Open {r['out'] / 'index.html'} (file://) or run: python -m http.server -d {r['out']}")
    return 1 if r['problems'] or failed else 0


if __name__ == '__main__':
    sys.exit(main())
