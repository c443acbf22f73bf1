"""`make test` ends with the optional checks that were skipped, why, and the command that enables each (tests/conftest.py)."""
import shutil, subprocess, sys
from pathlib import Path

from conftest import enabling_command

SKIPS = '''
import pytest
def test_browser(): pytest.skip("/usr/bin/chromium not found: the browser tests need Debian's chromium (apt-get install -y chromium).")
def test_lab(): pytest.skip("/usr/bin/chromium not found: the browser tests need Debian's chromium (apt-get install -y chromium).")
def test_playwright(): pytest.skip("playwright is not installed: pip install -e '.[dev]' (it drives /usr/bin/chromium).")
def test_data(): pytest.skip("../shared/data/cifar10/test.npz not found: set TAYLORMLP_SHARED to the folder holding data/")
@pytest.mark.skipif(True, reason='needs a CUDA GPU')
def test_gpu(): pass
def test_runs(): pass
'''


def test_the_run_ends_with_what_was_skipped_and_how_to_enable_it(tmp_path):
    shutil.copy(Path(__file__).with_name('conftest.py'), tmp_path / 'conftest.py')
    (tmp_path / 'test_optional.py').write_text(SKIPS)
    out = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', str(tmp_path)],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path).stdout
    tail = out[out.index('optional checks skipped: 5'):]
    assert "2 skipped in test_optional.py\n  why: /usr/bin/chromium not found" in tail
    assert '  enable: apt-get install -y chromium' in tail
    assert "  enable: pip install -e '.[dev]'" in tail
    assert '  enable: export TAYLORMLP_SHARED=/path/to/shared' in tail
    assert '  enable: run on a machine with a CUDA GPU' in tail
    assert out.rstrip().endswith('1 passed, 5 skipped in ' + out.rstrip().split(' in ')[-1])


def test_no_skips_no_section(tmp_path):
    shutil.copy(Path(__file__).with_name('conftest.py'), tmp_path / 'conftest.py')
    (tmp_path / 'test_plain.py').write_text('def test_ok(): pass\n')
    out = subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', str(tmp_path)],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path).stdout
    assert 'optional checks skipped' not in out and '1 passed' in out


def test_the_commands_named_by_the_real_skip_reasons():
    assert enabling_command("/usr/bin/chromium not found: ... (apt-get install -y chromium).") == 'apt-get install -y chromium'
    assert enabling_command("jupyterlab is not installed: pip install -e '.[dev]' (jupyterlab is a dev requirement).") \
        == "pip install -e '.[dev]'"
    assert enabling_command("@jupyter-widgets/html-manager is not cached: run `make docs` (npm) once to check widgets.") \
        == 'make docs'
    assert enabling_command('a CUDA GPU is present: nothing to refuse').startswith('run on a machine without a CUDA GPU')
    assert enabling_command('the C++ route could not be compiled here (no C++ compiler or ninja)') == \
        'apt-get install -y g++ ninja-build'
    assert enabling_command('something else entirely') == ''
