"""Progress output: redrawn tqdm bars in terminals and notebooks; one line per finished step (what, how many, how
long) where the output is not a terminal, e.g. `taylormlp run all > log`."""
import io, re, sys

import pytest
from tqdm.std import tqdm as std_tqdm

import taylormlp.data as data
from taylormlp.data import StepLog, progress_bar, say


class Terminal(io.StringIO):
    def isatty(self): return True


def lines(text): return [l for l in re.sub(r'\d+\.\d s', 'T s', text).splitlines() if l]


@pytest.mark.parametrize('stage_run', [False, True])
def test_a_log_gets_one_line_per_finished_step(monkeypatch, stage_run):
    log = io.StringIO()
    if stage_run:   # a papermill kernel writes to the stderr of the process that started the run
        monkeypatch.setenv('TAYLORMLP_STAGE_RUN', '1'); monkeypatch.setattr(sys, '__stderr__', log)
    else:
        monkeypatch.delenv('TAYLORMLP_STAGE_RUN', raising=False); monkeypatch.setattr(sys, 'stderr', log)
    monkeypatch.setattr(data, '_in_notebook', lambda: False)
    assert sum(progress_bar(range(300), True, desc='encode', unit='batch')) == sum(range(300))
    bar = progress_bar(None, True, total=6, desc='cluster', unit='fit')
    assert isinstance(bar, StepLog)
    for k in range(6): bar.set_postfix(k=k); bar.update()
    bar.close(); bar.close()                                    # closing twice prints once
    for _ in progress_bar(range(50), True, desc='accuracy on test', unit='batch', leave=False): pass   # quick, inner
    assert lines(log.getvalue()) == ['encode: 300 batches in T s', 'cluster: 6 fits in T s (last: k=5)']


def test_training_resumed_and_stopped_early_says_so(monkeypatch):
    log = io.StringIO()
    bar = StepLog(None, desc='train digits_vit', total=100, initial=40, unit='step', file=log)
    bar.update(30); bar.set_postfix(epoch='7/10', loss='0.1234'); bar.close()
    assert lines(log.getvalue()) == ['train digits_vit: 30 of 100 steps (resumed at 40) in T s (last: epoch=7/10, loss=0.1234)']


@pytest.mark.parametrize('stage_run', [False, True])
def test_a_terminal_keeps_the_tqdm_bar(monkeypatch, stage_run):
    term = Terminal()
    if stage_run:
        monkeypatch.setenv('TAYLORMLP_STAGE_RUN', '1'); monkeypatch.setattr(sys, '__stderr__', term)
    else:
        monkeypatch.delenv('TAYLORMLP_STAGE_RUN', raising=False); monkeypatch.setattr(sys, 'stderr', term)
    monkeypatch.setattr(data, '_in_notebook', lambda: False)
    bar = progress_bar(range(3), True, desc='collect train', unit='batch')
    assert isinstance(bar, std_tqdm) and sum(bar) == 3
    assert 'collect train: 100%' in term.getvalue() and '\r' in term.getvalue()   # redrawn in place


def test_a_notebook_keeps_its_widget_bar(monkeypatch):
    monkeypatch.delenv('TAYLORMLP_STAGE_RUN', raising=False)
    monkeypatch.setattr(sys, 'stderr', io.StringIO())          # a kernel's stderr is not a terminal either
    monkeypatch.setattr(data, '_in_notebook', lambda: True)
    from tqdm.auto import tqdm as auto_tqdm
    bar = progress_bar(range(3), True, desc='decode')
    assert isinstance(bar, auto_tqdm) and not isinstance(bar, StepLog)
    bar.close()


def test_progress_off_prints_nothing(monkeypatch, capsys):
    monkeypatch.setattr(sys, 'stderr', io.StringIO())
    assert sum(progress_bar(range(3), False)) == 3
    say('hidden', False)
    assert sys.stderr.getvalue() == '' and capsys.readouterr().out == ''
