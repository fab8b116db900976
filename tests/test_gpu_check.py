"""scripts/gpu_check.py --dry-run: every step of the GPU check runs at tiny shapes on the CPU and reports."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HAS_TRITON = importlib.util.find_spec("triton") is not None
HAS_TORCHAO = importlib.util.find_spec("torchao") is not None
STEPS = ["environment", "cuda_tests", "kernel_parity", "bench_kernels", "evo2_7b_forward", "scoring"]


@pytest.mark.slow
def test_gpu_check_dry_run(tmp_path):
    out = tmp_path / "gpu_check.json"
    # a subprocess: the dry run must choose the Triton interpreter before triton is first imported
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "gpu_check.py"), "--dry-run", "--out", str(out),
                           "--timeout-scale", "4"], cwd=tmp_path, capture_output=True, text=True, timeout=1800)
    report = json.loads(out.read_text())
    steps = report["steps"]
    assert report["dry_run"] is True and list(steps) == STEPS
    failed = {k: v.get("error") or v for k, v in steps.items() if v["status"] != "ok"}
    assert not failed, failed
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert report["summary"] == {"ok": 6, "failed": 0, "skipped": 0}
    assert steps["environment"]["triton_interpret"] == "1"

    ops = steps["kernel_parity"]["ops"]
    assert ops["LI"]["status"] == "ok"  # plain torch: always runs
    for kind in ("SE", "MR"):
        assert ops[kind]["status"] == ("ok" if HAS_TRITON else "skipped"), ops[kind]
    for op in ops.values():
        if op["status"] == "ok":
            assert op["rel_err"] and all(0 <= e < 2e-2 for e in op["rel_err"].values()), op
    assert steps["cuda_tests"]["files"] and steps["cuda_tests"]["returncode"] in (0, 5)

    bench = steps["bench_kernels"]["runs"][0]
    assert bench["status"] == "ok" and bench["report"]["results"]["ops"]

    fwd = steps["evo2_7b_forward"]
    assert fwd["layers"] == 32 and fwd["dtype"] == "bfloat16"
    assert [r["length"] for r in fwd["lengths"]] == [128, 256, 512, 1024, 2048]
    assert all(r["status"] == "ok" and r["tokens_per_s"] > 0 for r in fwd["lengths"])
    assert fwd["longest_chunked_length"] == 2048

    rows = steps["scoring"]["results"]
    assert [(r["dtype"], r["quantize"]) for r in rows] == [("bfloat16", "none"), ("float32", "none")] + (
        [("float32", "int8")] if HAS_TORCHAO else [])
    for r in rows:
        assert r["exact"]["scored"] == 8 and r["fast"]["scored"] == 48 and r["fast"]["variants_per_s"] > 0


def test_time_fit_predicts_between_linear_and_quadratic():
    spec = importlib.util.spec_from_file_location("genomod_gpu_check", ROOT / "scripts" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    fit = mod._fit_time([(1000, 1.0 + 0.001), (4000, 4.0 + 0.016)])  # t = 1e-3 L + 1e-9 L^2
    assert abs(fit(16000) - (16.0 + 0.256)) < 1e-9
    assert abs(mod._fit_time([(1000, 2.0), (2000, 3.0)])(4000) - 6.0) < 1e-9  # b < 0: linear from last point
    assert abs(mod._fit_time([(1000, 1.0), (2000, 8.0)])(4000) - 32.0) < 1e-9  # a < 0: quadratic
