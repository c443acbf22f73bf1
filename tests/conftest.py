"""At the end of a test run, say which optional checks were skipped, why, and the command that enables them.

Optional checks skip cleanly (no chromium for the browser and JupyterLab tests, no `../shared` for the real-data tests,
no GPU, an optional package missing). Their reasons are listed once more after the run, grouped by the command that
enables them, so a skip in the middle of a long run is not missed."""
import re
from collections import defaultdict
from pathlib import Path

_ENABLE = [   # (pattern in a skip reason, the command that enables the check); the first match wins
    (r'apt-get install(?: -y)? [\w.+-]+', None),
    (r"pip install (?:-e )?(?:'[^']+'|\"[^\"]+\"|[\w.\[\]=-]+)", None),
    (r'run `([^`]+)`', None),
    (r'TAYLORMLP_SHARED', 'export TAYLORMLP_SHARED=/path/to/shared   # the folder that holds data/ and models/'),
    (r'CUDA GPU is present|when CUDA is missing', 'run on a machine without a CUDA GPU (the check is of the CPU-only message)'),
    (r'CUDA|GPU', 'run on a machine with a CUDA GPU'),
    (r'C\+\+ compiler|ninja', 'apt-get install -y g++ ninja-build'),
]


def enabling_command(reason: str) -> str:
    "The command named in (or implied by) a skip reason; '' when the reason names none."
    for pattern, command in _ENABLE:
        m = re.search(pattern, reason)
        if m: return command or (m.group(1) if m.groups() else m.group(0))
    return ''


def _skips(terminalreporter):
    for rep in terminalreporter.stats.get('skipped', []):
        if not isinstance(rep.longrepr, tuple) or len(rep.longrepr) != 3: continue
        path, _, reason = rep.longrepr
        yield Path(str(rep.nodeid).split('::')[0] or path).name, re.sub(r'^Skipped: ', '', str(reason))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    groups = defaultdict(lambda: dict(files=set(), reasons=[], n=0))
    for name, reason in _skips(terminalreporter):
        g = groups[enabling_command(reason)]
        g['n'] += 1; g['files'].add(name)
        if reason not in g['reasons']: g['reasons'].append(reason)
    if not groups: return
    total = sum(g['n'] for g in groups.values())
    terminalreporter.section(f'optional checks skipped: {total} (why, and the command that enables them)', sep='=')
    for command, g in sorted(groups.items(), key=lambda kv: -kv[1]['n']):
        terminalreporter.write_line(f"{g['n']} skipped in {', '.join(sorted(g['files']))}")
        for reason in g['reasons'][:3]: terminalreporter.write_line(f'  why: {reason}')
        if len(g['reasons']) > 3: terminalreporter.write_line(f"  ... and {len(g['reasons']) - 3} more reasons like these")
        terminalreporter.write_line(f"  enable: {command or 'see the reason above'}")
