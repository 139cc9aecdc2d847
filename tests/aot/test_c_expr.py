"""Size expressions printed as C give what the Python runtime computes from them (floor
division and modulo of negative numbers included): one C program evaluates them all."""
from __future__ import annotations

import subprocess

import tensordsl as td
from targets.cuda.plan import evaluate
from tensordsl.export.c_expr import C_HELPERS, c_expr
from tensordsl.ir import nodes as n


def _int(v: int) -> n.IntImm:
    return n.IntImm("int64", v)


def test_c_expressions_agree_with_the_runtime(tmp_path):
    a, b = td.var("a"), td.var("b")
    exprs = [a + b * 3 - 7, td.floordiv(a, 4), td.floormod(a, 4), td.floordiv(a - 9, b),
             td.floormod(a - 9, b), n.Max(a, b), n.Min(a, b),
             n.Select(n.LT(a, b), a * b, a - b), n.And(n.GT(a, _int(0)), n.LE(b, _int(2))),
             n.Not(n.EQ(a, b))]
    names = {a: "a", b: "b"}
    cases = [(7, 3), (-7, 3), (-9, 2), (0, 5), (13, -4)]
    body = [f'    printf("%lld\\n", (long long)({c_expr(e, names)}));' for e in exprs]
    program = "\n".join([
        "#include <stdint.h>", "#include <stdio.h>", "#include <stdlib.h>", C_HELPERS,
        "int main(int argc, char** argv) {", "    (void)argc;",
        "    int64_t a = atoll(argv[1]), b = atoll(argv[2]);", *body, "    return 0;", "}"])
    (tmp_path / "e.c").write_text(program)
    subprocess.run(["cc", "-std=c11", "-Wall", "-Werror", "-o", str(tmp_path / "e"),
                    str(tmp_path / "e.c")], check=True)
    for x, y in cases:
        out = subprocess.run([str(tmp_path / "e"), str(x), str(y)], capture_output=True,
                             text=True, check=True).stdout.split()
        expected = [evaluate(e, {a: x, b: y}) for e in exprs]
        assert [int(v) for v in out] == [int(v) for v in expected], (x, y)
