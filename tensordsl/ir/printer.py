"""Prints IR as the loop nest a person would write.

    parallel for i.outer in range(0, 128):
      for j in range(0, 64):
        C[i.outer*64 + j] = A[...] + 1.0f

Distinct variables or buffers that share a name are printed with a numeric suffix, so
the text identifies the program exactly (the compile cache hashes it). A loop variable,
a ``let`` variable or an allocated buffer gives its name back when its scope ends, so
two sibling loops (a loop partitioned in two, say) both read ``i.outer``, as the user
named the axis.
"""
from __future__ import annotations

import hashlib

from . import dtype as dt
from . import nodes as n

_PRECEDENCE = {
    "Or": 1, "And": 2, "Not": 3,
    "EQ": 4, "NE": 4, "LT": 4, "LE": 4, "GT": 4, "GE": 4,
    "Add": 5, "Sub": 5, "Mul": 6, "Div": 6, "FloorDiv": 6, "FloorMod": 6,
}
_SYMBOL = {
    "Add": "+", "Sub": "-", "Mul": "*", "Div": "/", "FloorDiv": "//", "FloorMod": "%",
    "EQ": "==", "NE": "!=", "LT": "<", "LE": "<=", "GT": ">", "GE": ">=",
    "And": " && ", "Or": " || ",
}


class Printer:
    def __init__(self):
        self.names: dict[int, str] = {}
        self.taken: set[str] = set()
        self.lines: list[str] = []
        self.alive: list = []

    def name_of(self, obj, base: str, key=None) -> str:
        key = id(obj) if key is None else key
        name = self.names.get(key)
        if name is None:
            name, k = base, 0
            while name in self.taken:
                k += 1
                name = f"{base}_{k}"
            self.taken.add(name)
            self.names[key] = name
            self.alive.append(obj)  # ids stay unique while the object lives
        return name

    def scoped(self, obj, base: str, key=None):
        """``name_of`` for a binding whose scope is about to be printed; returns the name
        and whether the scope took it (then ``release`` gives it back)."""
        key = id(obj) if key is None else key
        fresh = key not in self.names
        return self.name_of(obj, base, key), (key if fresh else None)

    def release(self, name: str, key):
        if key is not None:
            self.taken.discard(name)
            del self.names[key]

    # ------------------------------------------------------------ expressions
    def expr(self, e, parent_prec: int = 0) -> str:
        kind = type(e).__name__
        if kind in _SYMBOL:
            prec = _PRECEDENCE[kind]
            sep = "*" if kind == "Mul" else f" {_SYMBOL[kind].strip()} "
            text = f"{self.expr(e.a, prec)}{sep}{self.expr(e.b, prec + 1)}"
            return f"({text})" if prec < parent_prec else text
        method = getattr(self, "expr_" + kind)
        return method(e)

    def expr_IntImm(self, e):
        if e.dtype == "bool":
            return "True" if e.value else "False"
        return str(e.value) if e.dtype == dt.INDEX_DTYPE else f"{e.dtype}({e.value})"

    def expr_FloatImm(self, e):
        suffix = {"float32": "f", "float64": ""}.get(e.dtype)
        text = repr(e.value)
        return text + suffix if suffix is not None else f"{e.dtype}({text})"

    def expr_StringImm(self, e):
        return '"' + e.value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    def expr_Var(self, e):
        return self.name_of(e, e.name)

    def expr_Not(self, e):
        return f"!{self.expr(e.a, 9)}"

    def expr_Min(self, e):
        return f"min({self.expr(e.a)}, {self.expr(e.b)})"

    def expr_Max(self, e):
        return f"max({self.expr(e.a)}, {self.expr(e.b)})"

    def expr_Select(self, e):
        return (f"select({self.expr(e.condition)}, {self.expr(e.true_value)}, "
                f"{self.expr(e.false_value)})")

    def expr_Cast(self, e):
        return f"{e.dtype}({self.expr(e.value)})"

    def expr_Call(self, e):
        args = [self.expr(a) for a in e.args]
        if e.name == "call_extern":
            args.insert(0, e.dtype)    # (the C function's return type is not its args')
        return f"{e.name}({', '.join(args)})"

    def expr_Let(self, e):
        return f"(let {self.expr(e.var)} = {self.expr(e.value)} in {self.expr(e.body)})"

    def expr_Ramp(self, e):
        return f"ramp({self.expr(e.base)}, {self.expr(e.stride)}, {e.lanes})"

    def expr_Broadcast(self, e):
        return f"x{e.lanes}({self.expr(e.value)})"

    def expr_Load(self, e):
        text = f"{self.buffer(e.buffer)}[{self.expr(e.index)}]"
        if e.dtype != e.buffer.dtype:
            text += f":{e.dtype}"
        if e.predicate is not None:
            text = f"({text} if {self.expr(e.predicate, 9)})"
        return text

    def expr_TensorRead(self, e):
        return f"{self.tensor(e.tensor)}[{', '.join(self.expr(i) for i in e.indices)}]"

    def expr_Reduce(self, e):
        axes = ", ".join(f"{self.expr(iv.var)} in {self.range(iv.dom)}" for iv in e.axis)
        src = ", ".join(self.expr(s) for s in e.source)
        combine = ", ".join(self.expr(r) for r in e.combiner.result)
        cond = "" if _is_true(e.condition) else f", where={self.expr(e.condition)}"
        return (f"{e.combiner.name}[{e.value_index}]({src}, axis=[{axes}]{cond}, "
                f"combine=({combine}))")

    # ------------------------------------------------------------ names
    def buffer(self, b: n.Buffer) -> str:
        return self.name_of(b, b.name)

    def tensor(self, t) -> str:
        base = t.op.name if t.op.num_outputs == 1 else f"{t.op.name}.v{t.value_index}"
        return self.name_of(t.op, base, key=(id(t.op), t.value_index))

    def range(self, r: n.Range) -> str:
        return f"range({self.expr(r.min)}, {self.end(r.min, r.extent)})"

    def end(self, lo, extent) -> str:
        """``lo + extent``, read as a person writes it: ``b`` for ``lo + (b - lo)``."""
        if _is_zero(lo):
            return self.expr(extent)
        if isinstance(extent, n.Sub) and self.expr(extent.b) == self.expr(lo):
            return self.expr(extent.a)
        return self.expr(n.Add(lo, extent))

    # ------------------------------------------------------------ statements
    def emit(self, depth: int, text: str):
        self.lines.append("  " * depth + text)

    def stmt(self, s, depth: int = 0):
        getattr(self, "stmt_" + type(s).__name__)(s, depth)

    def stmt_Seq(self, s, depth):
        for x in s.stmts:
            self.stmt(x, depth)

    def stmt_For(self, s, depth):
        kind = "" if s.kind == "serial" else f"{s.kind} "
        tag = f"  # {s.thread_tag}" if s.thread_tag else ""
        lo = self.expr(s.min)
        hi = self.end(s.min, s.extent)
        var, fresh = self.scoped(s.var, s.var.name)
        if s.balance is not None:   # the threads' shares: equal parts of this weight
            tag += f"  # balanced by {self.expr(s.balance)}"
        self.emit(depth, f"{kind}for {var} in range({lo}, {hi}):{tag}")
        self.stmt(s.body, depth + 1)
        self.release(var, fresh)

    def stmt_Store(self, s, depth):
        pred = "" if s.predicate is None else f" if {self.expr(s.predicate, 9)}"
        self.emit(depth, f"{self.buffer(s.buffer)}[{self.expr(s.index)}] = {self.expr(s.value)}{pred}")

    def stmt_ProducerStore(self, s, depth):
        idx = ", ".join(self.expr(i) for i in s.indices)
        self.emit(depth, f"{self.tensor(s.tensor)}[{idx}] = {self.expr(s.value)}")

    def stmt_ProducerRealize(self, s, depth):
        bounds = ", ".join(f"{self.expr(r.min)}:{self.end(r.min, r.extent)}"
                           for r in s.bounds)
        self.emit(depth, f"realize {self.tensor(s.tensor)}[{bounds}] "
                         f"{s.tensor.dtype} in {s.scope}:")
        self.stmt(s.body, depth + 1)

    def stmt_Allocate(self, s, depth):
        b = s.buffer
        extent = self.expr(s.extent)
        name, fresh = self.scoped(b, b.name)
        self.emit(depth, f"{name} = allocate({b.dtype}[{extent}], {b.scope})")
        self.stmt(s.body, depth)
        self.release(name, fresh)

    def stmt_IfThenElse(self, s, depth):
        self.emit(depth, f"if {self.expr(s.condition)}:")
        self.stmt(s.then_case, depth + 1)
        if s.else_case is not None:
            self.emit(depth, "else:")
            self.stmt(s.else_case, depth + 1)

    def stmt_While(self, s, depth):
        self.emit(depth, f"while {self.expr(s.condition)}:")
        self.stmt(s.body, depth + 1)

    def stmt_LetStmt(self, s, depth):
        value = self.expr(s.value)
        var, fresh = self.scoped(s.var, s.var.name)
        self.emit(depth, f"{var} = {value}")
        self.stmt(s.body, depth)
        self.release(var, fresh)

    def stmt_Evaluate(self, s, depth):
        self.emit(depth, self.expr(s.value))

    def stmt_Pragma(self, s, depth):
        self.emit(depth, f"pragma {s.key}:")
        self.stmt(s.body, depth + 1)

    def stmt_Barrier(self, s, depth):
        self.emit(depth, f"barrier({s.scope})")

    def stmt_TmaLoad(self, s, depth):
        origin = ", ".join(self.expr(e) for e in s.origin)
        box = ", ".join(str(b) for b in s.box)
        swizzle = f", swizzle {s.swizzle}" if s.swizzle else ""
        self.emit(depth, f"tma_load({self.buffer(s.dst)}[{self.expr(s.dst_offset)}] <- "
                         f"{self.buffer(s.src)}[{origin} : box {box}{swizzle}], "
                         f"mbarrier {self.buffer(s.barrier)}[{self.expr(s.slot)}])")

    def stmt_AllReduce(self, s, depth):
        results = ", ".join(f"{self.buffer(b)}[0]" for b in s.results)
        values = ", ".join(self.expr(v) for v in s.values)
        over = ", ".join(f"{t}<{self.expr(e)}" for t, e in zip(s.thread_tags, s.extents))
        self.emit(depth, f"{results} = allreduce_{s.combiner.name}({values}) over {over}")


def _is_zero(e) -> bool:
    return isinstance(e, n.IntImm) and e.value == 0


def _is_true(e) -> bool:
    return isinstance(e, n.IntImm) and e.dtype == "bool" and e.value == 1


def print_func(f: n.PrimFunc) -> str:
    p = Printer()
    params = []
    for x in f.params:
        if isinstance(x, n.Buffer):
            shape = ", ".join(p.expr(d) for d in x.shape)
            params.append(f"{p.buffer(x)}: {x.dtype}[{shape}]")
        else:
            params.append(f"{p.expr(x)}: {x.dtype}")
    for code in f.attrs.get("import_llvm", ()):
        # (the text decides the binary: its digest keeps the compile cache honest)
        digest = hashlib.sha256(code.encode()).hexdigest()[:16]
        p.lines.append(f"# import_llvm: {len(code)} characters, sha256 {digest}")
    p.lines.append(f"def {f.name}({', '.join(params)}):")
    p.stmt(f.body, 1)
    return "\n".join(p.lines)


def print_ir(node) -> str:
    p = Printer()
    if isinstance(node, n.PrimFunc):
        return print_func(node)
    if isinstance(node, n.Stmt):
        p.stmt(node)
        return "\n".join(p.lines)
    return p.expr(node)
