#!/usr/bin/env python
"""Build the offline docs site from the notebooks: `python tools/build_docs.py [--execute] [--out site/]`.

Sphinx with myst-nb renders the site (`docs/conf.py`: search, navigation, math, widgets, warnings); this script only
prepares its input, since Quarto (what `nbdev_docs` uses) is not installable here:

1. every notebook in `nbs/` goes through nbdev's docs processors (frontmatter, `#| hide`, `#| export`, links to the
   exported names); the `show_doc` cells are filled from the exported modules (see `_render_show_docs`);
2. stage pages use executed notebooks from a run folder when there is one (`--execute` makes it with
   `taylormlp run all`); results/speed are executed here (they only read data/results);
3. what Quarto would interpret becomes what myst-nb understands: `#| echo: false` -> a `remove-input` tag, plotly
   JSON -> a div drawn by ONE local plotly.min.js, `show_doc` output -> a markdown section (so each documented name
   has an anchor), nbdev's links -> links between pages; a link to a name that has no anchor (a private helper, an
   undocumented method) is left as plain code;
4. a getting-started page from README.md, an API page per exported module, and the navigation from the notebooks
   found (a new notebook needs no list to be kept).

Widgets are drawn by a local `@jupyter-widgets/html-manager` and math by a local KaTeX, both from npm (cached in
~/.cache/taylormlp-docs); without them widgets become a note and math stays as TeX. No page loads anything from the
network; the site works from file:// and from `python -m http.server`. Any Sphinx warning fails the build.
"""
from __future__ import annotations

import argparse, importlib, inspect, json, os, re, shutil, subprocess, sys, tarfile, tempfile, time, warnings
from pathlib import Path
from typing import Optional, Sequence

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / 'docs'
# npm packages drawn into the site; html-manager 1.0.x is the one that renders ipywidgets 8 state
NPM_ASSETS = {'html-manager': ('@jupyter-widgets/html-manager', '1.0.15'), 'katex': ('katex', '0.19.1')}
PLOTLY_MIME = 'application/vnd.plotly.v1+json'
WIDGET_VIEW_MIME = 'application/vnd.jupyter.widget-view+json'
WIDGET_STATE_MIME = 'application/vnd.jupyter.widget-state+json'


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


def write_static(static: Path, html_manager: Optional[Path], katex: Optional[Path]) -> None:
    "_static/: plotly.min.js from the installed plotly package, the site's CSS/JS, and the npm files the pages use."
    import plotly
    static.mkdir(parents=True, exist_ok=True)
    js = Path(plotly.__file__).parent / 'package_data' / 'plotly.min.js'
    if not js.exists(): raise FileNotFoundError(f"{js} is missing: reinstall plotly (pip install --force-reinstall plotly).")
    shutil.copy2(js, static / 'plotly.min.js')
    for name in ('site.css', 'site.js'): shutil.copy2(DOCS / name, static / name)
    (static / 'no-math.js').write_text('// KaTeX is not cached: math stays as TeX (run `make docs` once, with npm)\n')
    if html_manager is not None:   # embed.js finds its font files next to itself
        shutil.copytree(html_manager / 'dist', static / 'html-manager', dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns('*.map', '*amd.js'))
    if katex is not None:
        shutil.copytree(katex / 'dist', static / 'katex', dirs_exist_ok=True,
                        ignore=lambda d, names: [n for n in names if n.endswith(('.ttf', '.woff', '.mjs', '.map', '.md'))
                                                 or (n.endswith('.js') and not n.endswith('.min.js'))
                                                 or n.endswith('.css') and not n.endswith('.min.css')])


# ------------------------------------------------------------------------------------------------------- notebooks
def _strip_number(stem: str) -> str: return re.sub(r'^\d+[a-zA-Z0-9]*_', '', stem)


def find_notebooks(nbs: Path) -> list[Path]:
    "index first, then the numbered notebooks in order, then the rest (results, speed, ...) by name."
    found = [p for p in sorted(nbs.glob('*.ipynb')) if not p.name.startswith(('_', '.'))]
    return sorted(found, key=lambda p: (p.stem != 'index', not re.match(r'^\d', p.stem), p.stem))


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
    cmd = [exe] if exe else [sys.executable, '-m', 'taylormlp.pipeline']
    cmd += ['run', 'all', '--out', str(run_dir), '--timeout', str(timeout), '-p', 'interactive', 'False']
    for n, v in params: cmd += ['-p', n, v]
    log('executing the stage notebooks: ' + ' '.join(cmd))
    failed = subprocess.run(cmd, cwd=REPO).returncode
    if failed:
        log(f"`taylormlp run all` failed (exit {failed}): the site uses the stages that finished; the failed stage's "
            f"page shows its error")
    for name in ('results.ipynb', 'speed.ipynb'):
        try: execute_results_page(REPO / 'nbs' / name, run_dir / 'notebooks' / name, timeout)
        except Exception as e:
            failed = failed or 1
            log(f"{name} failed: {str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__}")
    return failed


def execute_results_page(src: Path, dest: Path, timeout: int = 600) -> Path:
    "results/speed only read the committed data/results files: execute them (seconds) so they show tables and figures."
    import papermill as pm
    log(f'executing {src.relative_to(REPO)} (reads data/results)')
    pm.execute_notebook(str(src), str(dest), kernel_name='python3', cwd=str(src.parent), progress_bar=False,
                        execution_timeout=timeout)
    return dest


# ------------------------------------------------------------------------------------------------ nbdev processing
_RE_DEFAULT_EXP = re.compile(r'^\s*#\s*\|\s*default_exp\s+(\S+)', re.M)
_RE_PANDOC_ATTR = re.compile(r'\{target="_blank"[^}]*\}')


def _config():
    from nbdev.config import get_config
    return get_config(path=REPO)


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


def _show_doc_markdown(obj, name: Optional[str] = None, ns: Optional[dict] = None, call: str = '') -> str:
    from nbdev.showdoc import show_doc
    doc = eval(call, ns) if call else show_doc(obj, name=name)
    # Quarto-only syntax and unknown line numbers would show up as text
    return _RE_PANDOC_ATTR.sub('', doc._repr_markdown_()).replace('#LNone)', ')')


def _render_show_docs(nb, lib: str, problems: list) -> None:
    """Fill the `show_doc(...)` cells from the exported module.

    nbdev's `proc_nbs` executes every exported and every import-bearing cell of each notebook to do this (minutes on
    2 cores, and cells that mix imports with code fail out of context). The exported module already holds the same
    objects, so evaluating the `show_doc` call in its namespace gives the same output in seconds."""
    from nbdev.processors import _is_showdoc
    src = '\n'.join(c.source or '' for c in nb.cells if c.cell_type == 'code')
    m = _RE_DEFAULT_EXP.search(src)
    ns = None
    for cell in nb.cells:
        if not (cell.cell_type == 'code' and cell.source and _is_showdoc(cell)): continue
        if ns is None: ns = _module_namespace(lib, m.group(1) if m else None)
        call = '\n'.join(l for l in cell.source.splitlines() if not l.lstrip().startswith('#|')).strip()
        try: md = _show_doc_markdown(None, ns=ns, call=call)
        except Exception as e:
            problems.append(f"{nb.path_}: `{call}` failed ({type(e).__name__}: {e})")
            cell.source = ''
            continue
        cell.outputs = [{'output_type': 'display_data', 'metadata': {}, 'data': {'text/markdown': md}}]
        cell.source = '#| echo: false\n' + call


def nbdev_process(path: Path, lib: str, problems: list) -> dict:
    "nbdev's docs processors on one notebook -> notebook dict (frontmatter as the first raw cell, like `proc_nbs`)."
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
        for o in c.get('outputs', []):   # execnb keeps text as lists of lines
            for k, v in o.get('data', {}).items():
                if isinstance(v, list) and not k.endswith('json'): o['data'][k] = ''.join(v)
            if isinstance(o.get('text'), list): o['text'] = ''.join(o['text'])
    return d


# ----------------------------------------------------------------------------------- what Quarto would interpret
_RE_DIRECTIVE = re.compile(r'^\s*#\s*\|\s*([\w-]+)\s*:?\s*(.*?)\s*$')
_RE_CDN_SCRIPT = re.compile(r'<script[^>]*src="https?://[^"]*"[^>]*>\s*</script>', re.I)
_RE_LINK = re.compile(r'(!?\[(?:[^\]\\]|\\.)*\])\(([^)\s]+)\)')
_RE_HEADING = re.compile(r'^(#{1,6})\s+(.+?)\s*#*\s*$', re.M)


def _directives(source: str) -> tuple[dict, str]:
    "Quarto `#| key: value` lines at the top of a code cell -> (dict, the source without them)."
    lines, out, i = source.splitlines(), {}, 0
    while i < len(lines) and (not lines[i].strip() or _RE_DIRECTIVE.match(lines[i])):
        m = _RE_DIRECTIVE.match(lines[i])
        if m: out[m.group(1).lower()] = m.group(2).strip().strip('"\'')
        i += 1
    return out, '\n'.join(lines[i:])


def _plotly_divs(outputs: list, counter: list, page: str) -> None:
    "Plotly JSON -> a div drawn by the page's global `Plotly` (in place); CDN script tags are dropped."
    import plotly.io as pio
    for o in outputs:
        data = o.get('data') if isinstance(o, dict) else None
        if not data: continue
        if PLOTLY_MIME in data:
            counter[0] += 1
            fig = data[PLOTLY_MIME]
            o['data'] = {'text/html': pio.to_html(json.loads(fig) if isinstance(fig, str) else fig,
                                                  include_plotlyjs=False, full_html=False, validate=False,
                                                  div_id=f'{page}-plot-{counter[0]}', default_width='100%',
                                                  config={'responsive': True})}
        elif 'text/html' in data:
            h = data['text/html']
            data['text/html'] = _RE_CDN_SCRIPT.sub('', ''.join(h) if isinstance(h, list) else h)


def _widget_note() -> dict:
    return {'output_type': 'display_data', 'metadata': {}, 'data': {'text/html': (
        '<div class="site-widget-note">Interactive widget: open this notebook in JupyterLab to use it '
        '(the static site shows the figures the run saved).</div>')}}


def _source_below(md: str) -> str:
    "show_doc puts its [source] link above the name's heading: below it, the link stays with its entry."
    return re.sub(r'^(\[source\]\([^)]*\))\s*\n+(#{1,6} .+)$', r'\2\n\n\1', md, flags=re.M)


def _md(source: str) -> dict: return {'cell_type': 'markdown', 'metadata': {}, 'source': source}


def myst_cells(d: dict, page: str, widgets: bool, note: str = '') -> tuple[dict, list[str]]:
    """nbdev's processed notebook -> what myst-nb renders; returns (notebook, the headings that get anchors).

    The frontmatter becomes the page title, Quarto directives become cell tags, `show_doc` output becomes a
    markdown section one level below the section it stands in, plotly JSON becomes a div."""
    import yaml
    cells, headings, level, counter = [], [], 1, [0]
    state = d.get('metadata', {}).get('widgets', {}).get(WIDGET_STATE_MIME, {}).get('state', {})
    has_widget = False
    for c in d['cells']:
        src = c['source']
        if c['cell_type'] == 'raw' and src.lstrip().startswith('---'):
            fm = yaml.safe_load(src.strip().strip('-')) or {}
            title = str(fm.get('title') or page)
            desc = str(fm.get('description') or '')
            cells.append(_md(f"# {title}\n" + (f"\n> {desc}\n" if desc else '') + (f"\n*{note}*\n" if note else '')))
            headings.append(title)
            continue
        if c['cell_type'] == 'markdown':
            found = _RE_HEADING.findall(src)
            if found: level = len(found[-1][0])
            headings += [h for _, h in found]
            cells.append({**_md(src), **({'attachments': c['attachments']} if c.get('attachments') else {})})
            continue
        if c['cell_type'] != 'code': continue
        d_, source = _directives(src)
        if d_.get('include') == 'false': continue
        tags = [t for t in c.get('metadata', {}).get('tags', []) if t != 'parameters']
        if d_.get('echo') == 'false': tags.append('remove-input')
        if d_.get('code-fold') in ('true', 'show'): tags.append('hide-input')
        outputs = [] if d_.get('output') == 'false' else c.get('outputs', [])
        keep = []

        def code_cell():   # the source with the outputs gathered so far; later parts of the cell hide the source
            _plotly_divs(keep, counter, page)
            cells.append({'cell_type': 'code', 'metadata': {'tags': list(tags)} if tags else {}, 'source': source,
                          'outputs': list(keep), 'execution_count': None})
            keep.clear()
            if 'remove-input' not in tags: tags.append('remove-input')
        for o in outputs:
            data = o.get('data', {})
            if 'text/markdown' in data:   # show_doc, Markdown(): part of the page, as Quarto renders it
                if keep or 'remove-input' not in tags: code_cell()
                md = _source_below(re.sub(r'^---\s*$', '', data['text/markdown'], flags=re.M))   # no transition opens a section
                found = _RE_HEADING.findall(md)
                shift = level + 1 - min(len(h) for h, _ in found) if found else 0   # below the enclosing section
                md = _RE_HEADING.sub(lambda m: '#' * max(1, min(len(m.group(1)) + shift, 6)) + ' ' + m.group(2), md)
                headings += [h for _, h in _RE_HEADING.findall(md)]
                cells.append(_md(md.strip()))
                continue
            if WIDGET_VIEW_MIME in data:
                if widgets and data[WIDGET_VIEW_MIME].get('model_id') in state: has_widget = True
                else: o = _widget_note()
            keep.append(o)
        if keep or (source.strip() and 'remove-input' not in tags): code_cell()
    meta = {'kernelspec': {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'},
            'language_info': {'name': 'python'}}
    if has_widget:   # Output widgets hold their own outputs (e.g. the explorer's figure)
        for s in state.values(): _plotly_divs(s.get('state', {}).get('outputs') or [], counter, page)
        meta['widgets'] = d['metadata']['widgets']
    return {'cells': cells, 'metadata': meta, 'nbformat': 4, 'nbformat_minor': 5}, headings


# ----------------------------------------------------------------------------------------------------- links
def anchor(text: str) -> str:
    "The id docutils gives a section with this title (what a `page#id` link must name)."
    from docutils.nodes import make_id
    return make_id(re.sub(r'[`*]', '', text))


class Links:
    """Links written against notebooks, README.md or the published site (nbdev's links to exported names) ->
    links between the site's pages. nbdev links every backticked name it knows, private helpers and undocumented
    methods included; a name without an anchor on its page (nor on its module's API page) is left as plain code."""

    def __init__(self, doc_url: str, git_url: str, pages: dict, anchors: dict, suffix: dict):
        self.doc_url, self.git_url, self.pages, self.anchors = doc_url, git_url.rstrip('/'), pages, anchors
        self.suffix = suffix   # page -> its source's suffix ('.ipynb' or '.md'): myst links name the source
        self.unlinked: list[str] = []

    def __call__(self, text: str, page: str) -> str:
        return _RE_LINK.sub(lambda m: self._one(m.group(1), m.group(2), page), text)

    def _one(self, label: str, url: str, page: str) -> str:
        nbdev = url.startswith(self.doc_url)
        if nbdev: url = url[len(self.doc_url):]
        path, _, frag = url.partition('#')
        if re.match(r'^[a-z][a-z0-9+.-]*:', path) or (not path and not frag): return f'{label}({url})'
        if path and not label.startswith('!'):
            doc = self.pages.get(Path(path).name)
            if doc is None and not nbdev:   # another file of the repository: its page on the forge
                return f'{label}({self.git_url}/blob/main/{os.path.normpath(path)})'
        else: doc = self.pages.get(Path(path).name) if path else page
        if doc is None and nbdev:
            self.unlinked.append(f'{page}: {label}({url})')
            return label[1:-1]
        if doc is None: return f'{label}({url})'
        if not frag: return f'{label}({doc}{self.suffix[doc]})'
        ref = anchor(frag)
        for target in (doc, f'api_{doc}') if nbdev else (doc,):
            if ref in self.anchors.get(target, ()):
                return f'{label}({"" if target == page else target + self.suffix[target]}#{ref})'
        if not nbdev: return f'{label}({"" if doc == page else doc + self.suffix[doc]}#{ref})'   # Sphinx warns
        self.unlinked.append(f'{page}: {label}({url})')
        return label[1:-1]   # the bracketed text, i.e. the backticked name, without a link


# --------------------------------------------------------------------------------------------------- other pages
def api_page(lib: str, modname: str, has_notebook: bool, problems: list) -> tuple[str, list[str]]:
    "Markdown for one exported module: every public name in `__all__`, with signature and docstring (show_doc)."
    full = f'{lib}.{modname}'
    try: mod = importlib.import_module(full)
    except Exception as e:
        problems.append(f"{full} does not import: {type(e).__name__}: {e}")
        return f'# API: `{full}`\n\n`import {full}` failed: `{type(e).__name__}: {e}`\n', [f'API: {full}']
    parts = []
    for name in getattr(mod, '__all__', []):
        obj = getattr(mod, name, None)
        if not (inspect.isfunction(obj) or inspect.isclass(obj)): continue
        try:
            parts.append(_show_doc_markdown(obj, name))
            for mname, member in (obj.__dict__.items() if inspect.isclass(obj) else ()):
                fn = member.__func__ if isinstance(member, (classmethod, staticmethod)) else member
                if not mname.startswith('_') and inspect.isfunction(fn) and fn.__doc__:   # its own, not nn.Module's
                    parts.append(_show_doc_markdown(fn, f'{name}.{mname}'))
        except Exception as e:
            problems.append(f"show_doc({full}.{name}) failed: {type(e).__name__}: {e}")
    body = _source_below(re.sub(r'^---\s*$', '', '\n\n'.join(parts), flags=re.M))
    body = _RE_HEADING.sub(lambda m: '## ' + m.group(2), body)
    names = [h for _, h in _RE_HEADING.findall(body)]
    summary = (inspect.getdoc(mod) or '').split('\n\n')[0]
    intro = f'Generated from `{full}` (`__all__`).' + (
        f' The [{modname} page]({modname}.html) has the same entries with prose and examples.' if has_notebook else '')
    return (f'# API: `{full}`\n\n' + (f'> {summary}\n\n' if summary else '') + intro + '\n\n' +
            (body or '(no public functions or classes)') + '\n'), [f'API: {full}'] + names


def readme_page(readme: Path) -> tuple[str, list[str]]:
    text = readme.read_text()
    m = re.match(r'^#\s+(.+?)\n', text)
    title = f'Getting started with {m.group(1).strip()}' if m else 'Getting started'
    body = text[m.end():] if m else text
    return f'# {title}\n{body}', [title] + [h for _, h in _RE_HEADING.findall(body)]


def toctree(caption: str, docs: Sequence[str]) -> str:
    return f'```{{toctree}}\n:caption: {caption}\n:hidden:\n\n' + '\n'.join(docs) + '\n```'


# ---------------------------------------------------------------------------------------------------------- build
def build(out: Path = REPO / 'site', nbs: Path = REPO / 'nbs', runs: Optional[Path] = None,
          extra: Sequence[Path] = (), fetch: bool = True, api: bool = True, execute_results: bool = True) -> dict:
    """Build the site into `out`; returns {'pages', 'problems', 'warnings', 'unlinked', 'widgets', 'katex', 'out'}.

    runs: a run folder whose `notebooks/` hold executed copies of notebooks in `nbs` (used instead of them).
    extra: more (executed) notebooks to add as pages, in a 'More notebooks' section.
    fetch: allow `npm pack` for html-manager/KaTeX when they are not cached yet.
    execute_results: execute results/speed (they read committed JSON) when no run folder has executed copies.
    problems: what failed, Sphinx's warnings included (any of them fails `main`)."""
    from sphinx.cmd.build import build_main
    t0 = time.perf_counter()
    cfg = _config()
    lib, git_url = cfg.lib_name, cfg.git_url
    doc_url = f"{cfg.doc_host.rstrip('/')}{cfg.doc_baseurl.rstrip('/')}/"
    if str(REPO) not in sys.path: sys.path.insert(0, str(REPO))
    problems: list[str] = []
    html_manager, katex = npm_asset('html-manager', fetch), npm_asset('katex', fetch)
    if html_manager is None: log('widgets: html-manager unavailable, widget outputs become a note')
    if katex is None: log('math: KaTeX unavailable, math stays as TeX source')
    tmp = Path(tempfile.mkdtemp(prefix='taylormlp-docs-'))
    src_dir = tmp / 'src'
    src_dir.mkdir()

    # 1. the notebooks, processed; `sections` is the navigation: every notebook found, in find_notebooks' order
    run_nbs = runs / 'notebooks' if runs else None
    docs, anchors, pages, sections = {}, {}, {'README.md': 'getting_started'}, {}
    sources = [(p, 'nbs') for p in find_notebooks(nbs)] + [(Path(p), 'extra') for p in extra]
    for src, kind in sources:
        used = run_nbs / src.name if kind == 'nbs' and run_nbs and (run_nbs / src.name).exists() else src
        if used == src and kind == 'nbs' and src.stem in ('results', 'speed') and execute_results:
            try: used = execute_results_page(src, tmp / src.name)
            except Exception as e: problems.append(f"{src.name} did not execute: {str(e).strip().splitlines()[-1:]}")
        doc = 'index' if src.stem == 'index' and kind == 'nbs' else _strip_number(src.stem)
        if doc in docs: raise ValueError(f"Two notebooks map to the page {doc}.html: rename one of them.")
        executed = used != src and kind == 'nbs'
        has_outputs = any(c.get('outputs') for c in json.loads(used.read_text())['cells'] if c['cell_type'] == 'code')
        note = ('' if executed or doc == 'index' or not re.match(r'^\d', src.stem) or has_outputs else
                'Notebook as committed (not executed): build with `--execute` to show the outputs of a run.')
        docs[doc], anchors[doc] = myst_cells(nbdev_process(used, lib, problems), doc, html_manager is not None, note)
        pages[src.name] = pages[f'{doc}.html'] = doc   # nbdev links to the page, notebooks to the source
        section = ('More notebooks' if kind == 'extra' else 'Stages' if re.match(r'^\d', src.stem) else
                   'Results' if src.stem in ('results', 'speed') else None if doc == 'index' else 'More notebooks')
        short = re.sub(r'[`*]', '', anchors[doc][0].split(':')[0]).strip() if anchors[doc] else doc
        num = re.match(r'^(\d+[a-z]?)_', src.stem)
        if section: sections.setdefault(section, []).append(f"{num.group(1) + ' · ' if num else ''}{short} <{doc}>")

    # 2. the markdown pages: getting started (README) and one API page per exported module
    md_pages = {}
    if (REPO / 'README.md').exists(): md_pages['getting_started'], anchors['getting_started'] = readme_page(REPO / 'README.md')
    if api:
        for py in sorted((REPO / lib).glob('*.py')):
            if py.stem.startswith('_'): continue
            md_pages[f'api_{py.stem}'], anchors[f'api_{py.stem}'] = api_page(lib, py.stem, py.stem in docs, problems)
    anchors = {k: {anchor(h) for h in v} for k, v in anchors.items()}

    # 3. links between pages, then the sources Sphinx reads
    links = Links(doc_url, git_url, pages, anchors, {**{d: '.ipynb' for d in docs}, **{d: '.md' for d in md_pages}})
    for doc, nb in docs.items():
        for c in nb['cells']:
            if c['cell_type'] == 'markdown': c['source'] = links(c['source'], doc)
    for doc in md_pages: md_pages[doc] = links(md_pages[doc], doc)
    nav = [('Get started', ['getting_started'] if 'getting_started' in md_pages else []),
           *[(s, sections[s]) for s in ('Stages', 'Results', 'More notebooks') if s in sections],
           ('API reference', [f'{d[4:]} <{d}>' for d in md_pages if d.startswith('api_')])]
    if 'index' not in docs: raise FileNotFoundError(f"{nbs / 'index.ipynb'} is missing: it is the home page.")
    docs['index']['cells'].append(_md('\n\n'.join(toctree(s, d) for s, d in nav if d)))
    import nbformat
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')   # cell ids: nbformat adds missing ones
        for doc, nb in docs.items():
            node = nbformat.from_dict(nb)
            nbformat.validator.normalize(node)
            nbformat.write(node, src_dir / f'{doc}.ipynb')
    for doc, text in md_pages.items(): (src_dir / f'{doc}.md').write_text(text, encoding='utf-8')
    readme = (REPO / 'README.md').read_text() if (REPO / 'README.md').exists() else ''
    for ref in re.findall(r'!\[[^\]]*\]\(([^)\s]+)\)', readme):   # local images the README shows
        if not re.match(r'\w+://', ref) and (REPO / ref).is_file():
            (src_dir / ref).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / ref, src_dir / ref)
    write_static(src_dir / '_static', html_manager, katex)
    shutil.copy2(DOCS / 'conf.py', src_dir / 'conf.py')
    (src_dir / 'site.json').write_text(json.dumps({'project': lib, 'description': cfg.get('description', ''),
                                                   'katex': katex is not None, 'widgets': html_manager is not None}))

    # 4. Sphinx
    if out.exists(): shutil.rmtree(out)
    warn_file = tmp / 'warnings.txt'
    from sphinx.deprecation import RemovedInSphinx11Warning
    with warnings.catch_warnings():   # myst-parser 5.2 still uses an API Sphinx 11 removes (one warning per reference)
        warnings.simplefilter('ignore', RemovedInSphinx11Warning)
        code = build_main(['-b', 'html', '-q', '-w', str(warn_file), '-d', str(tmp / 'doctrees'), str(src_dir), str(out)])
    sphinx_warnings = [l.replace(str(src_dir) + '/', '') for l in
                       (warn_file.read_text().splitlines() if warn_file.exists() else []) if l.strip()]
    problems += [f'sphinx: {w}' for w in sphinx_warnings]
    if code: problems.append(f'sphinx-build exited with {code}')
    (out / '.nojekyll').touch()
    shutil.rmtree(tmp, ignore_errors=True)
    built = [f'{d}.html' for d in list(docs) + list(md_pages)]
    log(f"{len(built)} pages in {out} ({time.perf_counter() - t0:.1f} s); {len(links.unlinked)} links to names "
        f"without an anchor left as code")
    for p in problems: log(f"problem: {p}")
    return {'pages': built, 'problems': problems, 'warnings': sphinx_warnings, 'unlinked': links.unlinked,
            'widgets': html_manager is not None, 'katex': katex is not None, 'out': out}


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
