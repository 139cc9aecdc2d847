"""``python -m benchmarks [cpu] [--quick]``"""
import argparse

from . import cpu

parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
parser.add_argument("suite", nargs="?", default="cpu", choices=["cpu"])
parser.add_argument("--quick", action="store_true", help="one round per system")
args = parser.parse_args()
cpu.run(quick=args.quick)
