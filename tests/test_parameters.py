"""Every notebook's `parameters` cell parses cleanly with papermill's own parameter parser.

papermill reads a parameters cell line by line; a line it cannot parse (for example a comment that contains `=`)
is logged as a warning and the parameter is silently missing from `papermill --help-notebook`. This test fails on
any such warning, and on any top-level assignment of the cell that the parser did not report.
"""
import ast
import logging
from pathlib import Path

import pytest

pytest.importorskip('papermill')
from papermill.inspection import _infer_parameters
from papermill.iorw import load_notebook_node

NBS = Path(__file__).resolve().parents[1] / 'nbs'
NOTEBOOKS = sorted(p for p in NBS.glob('*.ipynb')
                   if any('parameters' in (c.get('metadata', {}).get('tags') or []) for c in load_notebook_node(str(p)).cells))


def _parameters_cell(nb):
    return next(c for c in nb.cells if 'parameters' in c.metadata.tags)


def test_stage_notebooks_have_parameters_cells():
    stems = {p.stem for p in NOTEBOOKS}
    for stage in ('01_data', '02_adapt', '03_weights', '04_collect', '05_cluster', '06_validate'):
        assert stage in stems, f'{stage}.ipynb has no cell tagged "parameters"'


@pytest.mark.parametrize('path', NOTEBOOKS, ids=lambda p: p.name)
def test_parameters_cell_parses_without_warnings(path, caplog):
    nb = load_notebook_node(str(path))
    with caplog.at_level(logging.WARNING, logger='papermill'):
        params = _infer_parameters(nb, name='python3', language='python')
    warnings = [r.getMessage() for r in caplog.records if r.name.startswith('papermill') and r.levelno >= logging.WARNING]
    assert not warnings, f'{path.name}: papermill could not parse its parameters cell: {warnings}'
    assigned = [t.id for node in ast.parse(_parameters_cell(nb).source).body if isinstance(node, ast.Assign)
                for t in node.targets if isinstance(t, ast.Name)]
    parsed = [p.name for p in params]
    missing = [n for n in assigned if n not in parsed]
    assert not missing, f'{path.name}: papermill does not see the parameters {missing}'
    assert assigned, f'{path.name}: its parameters cell assigns nothing'
