"""What the host does to run a lowered GPU function: allocate the intermediate tensors,
then launch each kernel with its grid, block and arguments. Derived from the IR alone,
so the code generator, the device runtime and the emulator agree on it."""
from __future__ import annotations

from dataclasses import dataclass

from tensordsl.arith.simplify import simplify_expr
from tensordsl.errors import BuildError
from tensordsl.ir import nodes as n
from tensordsl.ir.visitor import Visitor, substitute
from tensordsl.lower import gpu


@dataclass
class Kernel:
    name: str
    body: n.For                      # the kernel root (outermost bound loop)
    buffers: list[n.Buffer]          # global buffers it touches, in parameter order
    scalars: list[n.Var]             # shape variables it uses
    grid: tuple[n.Expr, n.Expr, n.Expr]
    block: tuple[int, int, int]
    shared_bytes: int

    @property
    def threads(self) -> int:
        return self.block[0] * self.block[1] * self.block[2]

    @property
    def dynamic_shared(self) -> int:
        """Bytes of dynamic shared memory a launch gives it (``gpu.dynamic_shared_bytes``:
        beyond the static limit its arrays are carved from one dynamic array)."""
        return gpu.dynamic_shared_bytes(self.shared_bytes)


@dataclass
class HostPlan:
    temps: list[n.Allocate]          # global intermediates, allocated before any launch
    kernels: list[Kernel]


class _Uses(Visitor):
    def __init__(self):
        self.buffers: dict[int, n.Buffer] = {}
        self.vars: dict[n.Var, None] = {}

    def visit_Load(self, node):
        self.buffers.setdefault(id(node.buffer), node.buffer)
        self.generic_visit(node)

    def visit_Store(self, node):
        self.buffers.setdefault(id(node.buffer), node.buffer)
        self.generic_visit(node)

    def visit_Var(self, node):
        self.vars[node] = None


def host_plan(func: n.PrimFunc) -> HostPlan:
    temps, roots = [], []
    for part in gpu.host_parts(func.body):
        if isinstance(part, n.Allocate):
            temps.append(part)
        elif gpu.is_kernel_root(part):
            roots.append(part)
        else:
            raise BuildError("a statement outside any GPU kernel reached code generation")
    params = [p for p in func.params if isinstance(p, n.Buffer)] + [t.buffer for t in temps]
    scalars = [p for p in func.params if isinstance(p, n.Var)]
    kernels = []
    for k, root in enumerate(roots):
        uses = _Uses()
        uses.visit(root)
        global_bufs = [b for b in params if id(b) in uses.buffers]
        used_scalars = [v for v in scalars if v in uses.vars]
        dims = gpu.launch_dims(root)
        grid = tuple(dims.get(f"blockIdx.{a}", n.IntImm("int64", 1)) for a in "xyz")
        block = tuple(int(dims[f"threadIdx.{a}"].value) if f"threadIdx.{a}" in dims else 1
                      for a in "xyz")
        kernels.append(Kernel(f"{func.name}_kernel{k}", root, global_bufs, used_scalars,
                              grid, block, gpu.shared_bytes(root)))
    return HostPlan(temps, kernels)


def evaluate(expr: n.Expr, scalars: dict) -> int:
    """An index expression of shape variables, given their values, as an int."""
    value = simplify_expr(substitute(expr, {v: n.IntImm("int64", int(x))
                                            for v, x in scalars.items()}))
    if not isinstance(value, n.IntImm):
        raise BuildError(f"cannot evaluate {expr} on the host: it depends on {value}")
    return int(value.value)
