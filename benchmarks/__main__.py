"""``python -m benchmarks [cpu|dense|gpu|autodiff|nn|sparse|capsule|models|aot|dask|tune_model]
[--quick] [--only OP] [--estimate]``"""
import argparse

from . import (aot, autodiff, capsule, cpu, dask_tuning, dense, gpu, gpu_estimate, models, nn,
               sparse, tune_model)

parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
parser.add_argument("suite", nargs="?", default="cpu", choices=["cpu", "dense", "gpu",
                                                       "autodiff", "nn", "sparse",
                                                       "capsule", "models", "aot", "dask",
                                                       "tune_model"],
                    help="cpu: the foundation's kernels; dense: the operator library; "
                         "gpu: the CUDA templates beside PyTorch CUDA; autodiff: derived "
                         "gradients and hvp beside their forward and PyTorch; nn: training steps "
                         "and layers beside PyTorch eager; sparse: SpMM, SpMV, SDDMM, "
                         "sparse_add beside scipy.sparse and torch.sparse; capsule: dynamic "
                         "routing beside numpy, PyTorch eager and torch.compile; models: "
                         "the layers of ResNet-50, MobileNetV2 and BERT-base beside "
                         "PyTorch CPU; aot: exported kernels (td.export, called through "
                         "ctypes) beside the JIT kernels they come from; dask: a tuning "
                         "job's wall time on a LocalCluster of 1 and 2 workers; "
                         "tune_model: a training step before and after tensordsl "
                         "tune-model")
parser.add_argument("--quick", action="store_true", help="one round per system")
parser.add_argument("--only", help="dense, autodiff: only this operator (matmul, conv2d, "
                                    "...; autodiff also mlp); nn: only this case (mlp_step, "
                                    "cnn_step, linear, conv2d); sparse: only this operator "
                                    "(spmm, spmv, sddmm, sparse_add) or matrix (rmat, ...); "
                                    "capsule: forward, backward or step (the CapsNet "
                                    "training step); models: resnet50, mobilenetv2 or bert; "
                                    "aot: matmul, bias_tanh or row_norms")
parser.add_argument("--estimate", action="store_true",
                    help="gpu: no GPU needed; estimate each CUDA template's time from its "
                         "SASS and datasheet peaks (a roofline), printed as an estimate "
                         "(--only: one template: matmul_fp32, softmax, ...)")
args = parser.parse_args()
if args.suite == "cpu":
    cpu.run(quick=args.quick)
elif args.suite == "gpu" and args.estimate:
    gpu_estimate.run(only=args.only)
elif args.suite == "gpu":
    gpu.run()
elif args.suite == "nn":
    nn.run(quick=args.quick, only=args.only)
elif args.suite == "sparse":
    sparse.run(quick=args.quick, only=args.only)
elif args.suite == "capsule":
    capsule.run(quick=args.quick, only=args.only)
elif args.suite == "models":
    models.run(quick=args.quick, only=args.only)
elif args.suite == "dask":
    dask_tuning.run(quick=args.quick)
elif args.suite == "tune_model":
    tune_model.run(quick=args.quick)
elif args.suite == "aot":
    aot.run(quick=args.quick, only=args.only)
elif args.suite == "autodiff":
    autodiff.run(quick=args.quick, only=args.only)
else:
    dense.run(quick=args.quick, only=args.only)
