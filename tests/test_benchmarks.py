"""The benchmark harness's own code paths, on the CPU: the CUDA path's plumbing (sync around
samples, GPU sizes), the peak-memory measurement, the PEPS case, one tiny end-to-end run."""
import os
import sys

import pytest
import torch

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
sys.path.insert(0, BENCH)

import bench  # noqa: E402
import cases  # noqa: E402
import timer  # noqa: E402

import tensormagic as tm  # noqa: E402


def test_samples_are_bracketed_by_sync():
    calls = []
    stats = timer.measure({"f": lambda: calls.append("f")}, reps=7, warmup=1, min_sample_s=0.0,
                          sync=lambda: calls.append("sync"))
    assert stats["f"].reps == 7
    # every sample: sync, f × inner, sync
    assert calls.count("sync") == 2 * (7 + 1)
    assert calls[-1] == "sync"


def test_peak_bytes_on_cpu_sees_a_temporary():
    def f():
        x = torch.ones(1 << 18)  # 1 MiB, freed on return
        return float(x.sum())
    assert timer.peak_bytes(f, "cpu") >= 1 << 20


def test_ring_has_gpu_sizes_and_peps_is_well_formed():
    ring = next(c for c in cases.CASES if c.key == "ring")
    assert ring.sizes["a"] == 48 and ring.sizes["i"] == 32
    assert ring.on_cuda().sizes["a"] == 128 and ring.on_cuda().sizes["i"] == 64
    big = cases.peps_norm()
    assert big.n_tensors == 50 and len(big.letters) == 105 and not big.einsum_ok
    peps = cases.peps_norm(3, 2, 2)
    assert peps.n_tensors == 18 and peps.einsum_ok
    fn = tm.tensorgrad(peps.statement)
    xs = [torch.randn(peps.shape(op), dtype=torch.float64) for op in peps.operands]
    import opt_einsum as oe
    torch.testing.assert_close(fn(*xs), oe.contract(peps.equation, *xs, backend="torch"))


def test_cuda_without_a_gpu_is_a_clear_error(capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(SystemExit):
        bench.main(["--device", "cuda", "--output", ""])
    assert "no CUDA device" in capsys.readouterr().err


def test_a_tiny_run_writes_memory_and_targets(tmp_path):
    out = tmp_path / "r.md"
    bench.main(["--quick", "--cases", "trace", "--no-large", "--methods", "einsum", "tm",
                "--output", str(out)])
    text = out.read_text()
    assert "## Peak memory" in text and "## Targets (issue 8)" in text
    assert "trace (tiny)" in text


def test_a_tiny_scaling_run_meets_its_budget_and_spreads_over_two_ranks(tmp_path):
    """benchmarks/scaling.py on a 3x3 PEPS: both parts run, every method agrees with unsliced
    tensormagic, the sliced peak stays within the budget, the slices go round 2 ranks."""
    import scaling
    out = tmp_path / "s.md"
    scaling.main(["--peps", "3", "3", "--budgets", "16KiB", "--reps", "2", "--output", str(out)])
    text = out.read_text()
    rows = {line.split(" | ")[1]: line.split(" | ") for line in text.splitlines()
            if line.startswith("| 16KiB |")}
    assert set(rows) == {"tensormagic, unsliced", "cotengra + autograd, unsliced",
                         "tensormagic, memory_limit", "cotengra slices + checkpoint",
                         "cotengra slices, plain autograd"}
    assert all(float(r[-1].rstrip(" |")) < 1e-4 for r in rows.values())  # max rel. error
    assert float(rows["tensormagic, memory_limit"][3]) <= 1.0  # peak / budget
    assert float(rows["tensormagic, unsliced"][3]) > 1.0
    assert "| 2 ranks, 1 thread each |" in text and "| True |" in text
