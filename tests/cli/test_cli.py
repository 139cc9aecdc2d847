import subprocess
import sys
import textwrap

from tensordsl import cli

PROGRAM = textwrap.dedent("""
    import tensordsl as td

    def schedule():
        A = td.placeholder((64,), name="A")
        B = td.compute((64,), lambda i: A[i] + 1.0, name="B")
        s = td.create_schedule(B.op)
        o, i = s[B].split(B.op.axis[0], factor=8)
        s[B].vectorize(i)
        return s, [A, B]
""")


def test_show_ir_llvm_and_pass(tmp_path, capsys):
    path = tmp_path / "prog.py"
    path.write_text(PROGRAM)
    assert cli.main(["show", f"{path}:schedule"]) == 0
    assert "def main(A: float32[64], B: float32[64])" in capsys.readouterr().out
    assert cli.main(["show", f"{path}:schedule", "--llvm"]) == 0
    assert "<8 x float>" in capsys.readouterr().out
    assert cli.main(["show", f"{path}:schedule", "--after", "schedule_ops"]) == 0
    assert "vectorized for i.inner" in capsys.readouterr().out


def test_bad_target_is_one_line_and_exit_2(tmp_path):
    out = subprocess.run([sys.executable, "-m", "tensordsl.cli", "show", "nofile.py:f"],
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "no such file" in out.stderr


def test_show_cuda_and_ptx_of_gpu_templates(capsys):
    assert cli.main(["show", "softmax", "--shape", "4,100", "--cuda", "--arch", "sm_80"]) == 0
    src = capsys.readouterr().out
    assert 'extern "C" __global__' in src and "__shfl_xor_sync" in src
    assert cli.main(["show", "matmul", "--shape", "64,64,64", "--dtype", "float16",
                     "--attr", "out_dtype=float32", "--ptx", "--arch", "sm_90"]) == 0
    ptx = capsys.readouterr().out
    assert ".target sm_90" in ptx and "mma.sync" in ptx
