"""The benchmark table on a GPU: bench.py with --device cuda (ring at 128/64; timing with
torch.cuda.synchronize() around every sample; peak memory by max_memory_allocated).
Writes benchmarks/results_cuda.md and results_cuda.json.

    python benchmarks/gpu.py [any bench.py option]   # e.g. --quick, --cases ring abjk
"""
import sys

import bench

if __name__ == "__main__":
    sys.exit(bench.main(["--device", "cuda", *sys.argv[1:]]))
