"""``python -m benchmarks [cpu|dense|gpu] [--quick] [--only OP]``"""
import argparse

from . import cpu, dense, gpu

parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
parser.add_argument("suite", nargs="?", default="cpu", choices=["cpu", "dense", "gpu"],
                    help="cpu: the foundation's kernels; dense: the operator library; "
                         "gpu: the CUDA templates beside PyTorch CUDA")
parser.add_argument("--quick", action="store_true", help="one round per system")
parser.add_argument("--only", help="dense: only this operator (matmul, conv2d, ...)")
args = parser.parse_args()
if args.suite == "cpu":
    cpu.run(quick=args.quick)
elif args.suite == "gpu":
    gpu.run()
else:
    dense.run(quick=args.quick, only=args.only)
