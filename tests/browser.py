"""What the browser tests share: the Chromium binary and flags, the artifacts folder, and a clean skip when the
browser or a Python package it needs is missing (nothing is installed at test time)."""
import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = '/usr/bin/chromium'
CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
                 '--disable-component-update', '--no-first-run', '--disable-sync']
ARTIFACTS = REPO / 'tests' / 'artifacts'
_WHY = {'playwright': "pip install -e '.[dev]' (it drives /usr/bin/chromium; never run `playwright install`)",
        'jupyterlab': "pip install -e '.[dev]' (jupyterlab is a dev requirement)"}


def require_browser(*modules: str) -> None:
    "Skip the calling test module unless Debian's chromium and the given Python modules are available."
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not found: the browser tests need Debian's chromium (apt-get install -y chromium).",
                    allow_module_level=True)
    for mod in modules:
        if importlib.util.find_spec(mod) is None:
            pytest.skip(f"{mod} is not installed: {_WHY.get(mod, 'pip install ' + mod)}.", allow_module_level=True)
