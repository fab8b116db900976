"""Every input the fuzzers ever flagged (tests/data/fuzz_regressions/<target>/) is now handled, plus a short
seeded run of the random mutator over each target (scripts/fuzz.py has the long, coverage-guided runs)."""

from __future__ import annotations

import importlib.util
import signal
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REGRESSIONS = ROOT / "tests" / "data" / "fuzz_regressions"


def _fuzz_module():
    spec = importlib.util.spec_from_file_location("genomod_fuzz", ROOT / "scripts" / "fuzz.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fuzz = _fuzz_module()
SAVED = sorted(p for p in REGRESSIONS.glob("*/*") if p.is_file())


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    return fuzz.Harness(tmp_path_factory.mktemp("fuzz"))


def test_regression_inputs_exist_for_every_fixed_finding():
    assert {p.parent.name for p in SAVED} >= {"fasta", "vcf", "config"}


def _on_alarm(signum, frame):
    raise TimeoutError("input took more than 60 s (hang)")


@pytest.mark.parametrize("path", SAVED, ids=[f"{p.parent.name}/{p.name}" for p in SAVED])
def test_saved_fuzz_input_is_handled(harness, path):
    """Only GenomodError (a clear message) may come out, within a minute (some findings were hangs)."""
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(60)
    try:
        harness.run(path.parent.name, path.read_bytes())
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("target", fuzz.TARGET_NAMES)
def test_short_random_fuzz_finds_nothing(harness, target, tmp_path):
    result = fuzz.random_fuzz(harness, target, seconds=120, seed=1, max_runs=300, findings=tmp_path)
    assert result["runs"] == 300
    assert result["findings"] == [], result["findings"]
