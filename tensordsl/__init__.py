"""tensordsl: tensor expressions, schedules, and a compiler for them (CPU via LLVM).

    import tensordsl as td
    A = td.placeholder((n, 64), name="A")
    B = td.compute((n,), lambda i: td.sum(A[i, k] * A[i, k], axis=k), name="B")
    s = td.create_schedule(B.op)
    f = td.build(s, [A, B])
"""
from .errors import BuildError, DeviceNotAvailable, ScheduleError, TensorDSLError
from .ir.nodes import Expr, IterVar, Var
from .ir.op import (abs, all, any, ceil, const, erf, exp, floor, if_then_else, log,
                    max_value, maximum, min_value, minimum, pow, round, select, sigmoid,
                    sqrt, tanh)
from .lower.pipeline import lower
from .schedule.schedule import Schedule, Stage, create_schedule
from .te.api import (call_extern, call_packed, call_pure_extern, comm_reducer, compute,
                     extern, max, min, placeholder, reduce_axis, scan, sum, thread_axis, var)
from .te.buffer import decl_buffer
from .runtime.packed import get_global_func, register_func
from .te.tensor import Tensor
from .te import ir_builder
from .te.tvm_names import (Select, floordiv, floormod, indexdiv, indexmod, size_var,
                           truncdiv, truncmod)
from .build import build
from .program import Program, build_program
from .export import export, load_module
from .autodiff import grad, gradient, hvp, jvp, stop_gradient, vjp
from .schedule import tensor_intrin
from .schedule.tensor_intrin import decl_tensor_intrin
from .sparse import Format, Level, sparse_placeholder
from . import autotune, autotvm, nd, ops, sparse, target

__version__ = "0.1.0"

__all__ = [
    "BuildError", "DeviceNotAvailable", "ScheduleError", "TensorDSLError", "Expr", "IterVar",
    "Var", "abs", "all", "any", "ceil", "const", "erf", "exp", "floor", "if_then_else", "log",
    "max_value", "maximum", "min_value", "minimum", "pow", "round", "select", "sigmoid",
    "sqrt", "tanh", "lower", "Schedule", "Stage", "create_schedule", "comm_reducer",
    "compute", "max", "min", "placeholder", "reduce_axis", "scan", "sum", "thread_axis", "var",
    "Tensor", "autotune", "autotvm", "target", "build", "nd", "ops", "tensor_intrin",
    "call_packed", "extern",
    "ir_builder", "call_extern", "call_pure_extern", "decl_buffer", "decl_tensor_intrin",
    "get_global_func", "register_func", "grad", "gradient", "hvp", "jvp", "stop_gradient", "vjp",
    "Program", "build_program", "Format", "Level", "sparse", "sparse_placeholder",
    "export", "load_module",
    # TVM's names (te/tvm_names.py)
    "Select", "floordiv", "floormod", "indexdiv", "indexmod", "size_var", "truncdiv",
    "truncmod",
]
