"""Every table on a GPU, in one run: the contraction table (bench.py --device cuda: ring at
128/64; timing with torch.cuda.synchronize() around every sample; peak memory by
max_memory_allocated) into benchmarks/results_cuda.md and results_cuda.json, then the language
table (language.py --device cuda) in float32 and in bfloat16 into benchmarks/language_cuda.md
and language_cuda_bf16.md.

    python benchmarks/gpu.py [any bench.py option]   # e.g. --quick, --cases ring abjk
"""
import os
import subprocess
import sys

import bench

HERE = os.path.dirname(os.path.abspath(__file__))

if __name__ == "__main__":
    status = bench.main(["--device", "cuda", *sys.argv[1:]])
    for dtype, out in (("float32", "language_cuda.md"), ("bfloat16", "language_cuda_bf16.md")):
        status = status or subprocess.call([sys.executable, os.path.join(HERE, "language.py"),
                                            "--device", "cuda", "--dtype", dtype,
                                            "--out", os.path.join(HERE, out)])
    sys.exit(status)
