# Sphinx + myst-nb configuration of the offline docs site. tools/build_docs.py copies this file next to the prepared
# notebooks, with site.json (what this build has: KaTeX, the widget manager, the project's name and description).
import json
from pathlib import Path

site = json.loads(Path('site.json').read_text())
project = site['project']
html_title = f"{site['project']}: {site['description']}"
extensions = ['myst_nb']
nb_execution_mode = 'off'                  # pages show the outputs the notebooks (or a run folder) already have
myst_enable_extensions = ['dollarmath']
myst_update_mathjax = False
myst_heading_anchors = 6
html_theme = 'alabaster'
html_theme_options = {'description': site['description'], 'fixed_sidebar': True, 'page_width': '1200px'}
html_copy_source = html_show_sourcelink = False
html_static_path = ['_static']
html_css_files = ['site.css'] + (['katex/katex.min.css'] if site['katex'] else [])
# plotly.min.js in <head>: the figure scripts call the global `Plotly` where they stand
html_js_files = ['plotly.min.js'] + ([('katex/contrib/auto-render.min.js', {'defer': 'defer'}),
                                      ('site.js', {'defer': 'defer'})] if site['katex'] else [])
# Sphinx's math extension loads this on pages with math: the local KaTeX instead of MathJax from a CDN
mathjax_path = 'katex/katex.min.js' if site['katex'] else 'no-math.js'
nb_ipywidgets_js = {'html-manager/embed.js': {'defer': 'defer'}} if site['widgets'] else {}
exclude_patterns = ['_static', 'site.json']
