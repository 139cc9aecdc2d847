"""What a compiled kernel really runs: its SASS, read from the CUBIN without a GPU.

``disassemble(cubin)`` runs ``cuobjdump -sass`` and ``cuobjdump -res-usage`` on the
CUBIN NVRTC made and returns, per kernel, its instructions, the loops found in them
(backward branches) and the resources the assembler gave it (registers, shared and
local memory). Tests use it to check that a template's inner loop holds the
instructions it is meant to (``LDGSTS`` for ``cp.async``, ``LDSM`` for ``ldmatrix``,
``HMMA`` for tensor cores, ``LDG.E.128`` for 16-byte loads) and that nothing spills
(``LDL``/``STL``: local memory); the GPU benchmark's estimate reads the same counts.

The tools come from pip wheels (``nvidia-cuda-cuobjdump``, ``nvidia-cuda-nvdisasm``,
in the ``test`` extra) or a CUDA toolkit; ``cuobjdump -sass`` calls ``nvdisasm``, which
must be on its ``PATH``. ``missing_tools()`` says what is absent, for a skip's reason.

Example::

    kernels = disassemble(f.cubin)
    k = kernels["main_kernel0"]
    k.registers, k.spills, k.count("FFMA"), k.inner_loops()[0].count("LDS.128")
"""
from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

_TOOLS = ("cuobjdump", "nvdisasm")

# "/*0240*/   @!P0 LDG.E.128.CONSTANT R8, [R46.64+-0x8000] ;" (a shape modifier may hold
# an "x": "HGMMA.64x64x16.F32")
_INSTRUCTION = re.compile(r"^\s*/\*([0-9a-f]+)\*/\s+(?:(@!?U?P[T0-9]+)\s+)?([A-Z][A-Z0-9_.x]*)"
                          r"\s*([^;]*);")
_FUNCTION = re.compile(r"^\s*Function\s*:\s*(\S+)")
_RESOURCES = re.compile(r"^\s*Function\s+(\S+?):\s*$")
_BRANCH_TARGET = re.compile(r"^(0x[0-9a-f]+)\b")


@dataclass(frozen=True)
class Instruction:
    address: int
    opcode: str            # with its modifiers: "LDG.E.128.CONSTANT"
    operands: str
    predicate: str | None  # "@P0", "@!P1", or None

    def is_(self, pattern: str) -> bool:
        """Whether the opcode is ``pattern`` or starts with it followed by more
        modifiers: ``LDG.E.128`` matches ``LDG.E.128.CONSTANT``, not ``LDG.E.64``."""
        return self.opcode == pattern or self.opcode.startswith(pattern + ".")


def _count(instructions, pattern: str) -> int:
    return sum(ins.is_(pattern) for ins in instructions)


def _target(ins) -> int | None:
    """The address a branch goes to (``None``: not a branch to an address)."""
    if ins.opcode.split(".")[0] not in ("BRA", "JMP"):
        return None
    target = _BRANCH_TARGET.match(ins.operands.strip())
    return int(target.group(1), 16) if target else None


@dataclass(frozen=True)
class Loop:
    """The instructions from a backward branch's target to the branch itself."""
    start: int
    end: int
    instructions: tuple[Instruction, ...]

    def count(self, pattern: str) -> int:
        return _count(self.instructions, pattern)

    def contains(self, other: "Loop") -> bool:
        return self.start <= other.start and other.end <= self.end and self != other


@dataclass(frozen=True)
class KernelSass:
    name: str
    arch: str
    instructions: tuple[Instruction, ...]
    registers: int
    shared_bytes: int      # static shared memory
    local_bytes: int       # per-thread local memory (spills, local arrays)
    stack_bytes: int

    def count(self, pattern: str) -> int:
        """How many instructions are ``pattern`` (see ``Instruction.is_``)."""
        return _count(self.instructions, pattern)

    def mix(self) -> Counter:
        """Instruction counts by full opcode (``FFMA``, ``LDS.128``, ...)."""
        return Counter(ins.opcode for ins in self.instructions if ins.opcode != "NOP")

    @property
    def spills(self) -> int:
        """Local-memory loads and stores: register spills (or a local array the
        compiler could not keep in registers)."""
        return self.count("LDL") + self.count("STL")

    @functools.cached_property
    def loops(self) -> tuple[Loop, ...]:
        """The backward branches' loops, less three that run no computation again: a
        warp re-running an instruction until each lane's turn came (``BRA.U.ANY``, as
        around a TMA copy one elected thread issues), a spin on an mbarrier's phase
        (``SYNCS.PHASECHK`` and its branch), and the jump back from such a spin placed
        out of line to just after the branch that left for it."""
        by_address = {ins.address: k for k, ins in enumerate(self.instructions)}
        loops = []
        for k, ins in enumerate(self.instructions):
            if ins.opcode.split(".")[0] not in ("BRA", "JMP") or ins.opcode == "BRA.U.ANY":
                continue
            start = _target(ins)
            if start is None or not start < ins.address or start not in by_address:
                continue
            body = self.instructions[by_address[start]:k + 1]
            if len(body) <= 2 and _count(body, "SYNCS.PHASECHK"):
                continue
            before = by_address[start] - 1
            if ins.predicate is None and before >= 0 and \
                    start < (_target(self.instructions[before]) or -1) <= ins.address:
                continue
            loops.append(Loop(start, ins.address, body))
        return tuple(loops)

    def inner_loops(self) -> list[Loop]:
        """The loops containing no other loop, largest first (a template's main loop
        is normally its largest innermost one)."""
        inner = [lp for lp in self.loops if not any(lp.contains(o) for o in self.loops)]
        return sorted(inner, key=lambda lp: -len(lp.instructions))

    def main_loop(self) -> Loop:
        loops = self.inner_loops()
        if not loops:
            raise ValueError(f"kernel {self.name} ({self.arch}) has no loop")
        return loops[0]


def _search_dirs() -> list[Path]:
    """Where the tools may be: PATH first, then the pip wheels' and a toolkit's bin."""
    dirs = [Path(p) for p in os.environ.get("PATH", "").split(os.pathsep) if p]
    try:
        import nvidia
        for root in nvidia.__path__:
            dirs += sorted(Path(root).glob("cu*/bin"), reverse=True)
    except ImportError:
        pass
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(var):
            dirs.append(Path(os.environ[var]) / "bin")
    dirs.append(Path("/usr/local/cuda/bin"))
    return dirs


@functools.lru_cache(maxsize=None)
def _find(tool: str) -> str | None:
    for d in _search_dirs():
        path = shutil.which(tool, path=str(d))
        if path:
            return path
    return None


def missing_tools() -> str | None:
    """None when the disassembler is at hand, else what is missing and how to get it."""
    absent = [t for t in _TOOLS if _find(t) is None]
    if not absent:
        return None
    return (f"no {' or '.join(absent)} on PATH, in the nvidia pip wheels or a CUDA toolkit: "
            "pip install nvidia-cuda-cuobjdump nvidia-cuda-nvdisasm")


def _run_cuobjdump(flag: str, path: str) -> str:
    missing = missing_tools()
    if missing:
        raise RuntimeError(missing)
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(_find("nvdisasm")).parent),
                                                  os.environ.get("PATH", "")])}
    done = subprocess.run([_find("cuobjdump"), flag, path], capture_output=True, text=True,
                          env=env, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"cuobjdump {flag} failed: {done.stderr.strip()}")
    return done.stdout


def parse_sass(text: str) -> dict[str, tuple[str, list[Instruction]]]:
    """``cuobjdump -sass`` output → {kernel: (arch, instructions)}."""
    out: dict[str, tuple[str, list[Instruction]]] = {}
    arch, current = "", None
    for line in text.splitlines():
        if line.strip().startswith(".target"):
            arch = line.split()[1]
            continue
        m = _FUNCTION.match(line)
        if m:
            current = []
            out[m.group(1)] = (arch, current)
            continue
        m = _INSTRUCTION.match(line)
        if m and current is not None:
            address, predicate, opcode, operands = m.groups()
            if predicate == "@!PT":     # never runs: padding the assembler scheduled
                continue
            current.append(Instruction(int(address, 16), opcode, operands.strip(), predicate))
    return out


def parse_resources(text: str) -> dict[str, dict[str, int]]:
    """``cuobjdump -res-usage`` output → {kernel: {"REG": .., "SHARED": .., ...}}."""
    out, current = {}, None
    for line in text.splitlines():
        m = _RESOURCES.match(line)
        if m:
            current = out.setdefault(m.group(1), {})
            continue
        if current is not None:
            for key, value in re.findall(r"(\w+(?:\[\d+\])?):(\d+)", line):
                current[key] = int(value)
    return out


def disassemble(cubin: bytes) -> dict[str, KernelSass]:
    """Every kernel of ``cubin`` (an ELF image from NVRTC), by name."""
    if cubin[:4] != b"\x7fELF":
        raise ValueError("cubin: expected a CUBIN (an ELF image), got "
                         f"{len(cubin)} bytes starting {cubin[:8]!r}")
    with tempfile.TemporaryDirectory() as d:
        path = str(Path(d) / "module.cubin")
        Path(path).write_bytes(cubin)
        code = parse_sass(_run_cuobjdump("-sass", path))
        resources = parse_resources(_run_cuobjdump("-res-usage", path))
    kernels = {}
    for name, (arch, instructions) in code.items():
        res = resources.get(name, {})
        kernels[name] = KernelSass(name, arch, tuple(instructions), res.get("REG", 0),
                                   res.get("SHARED", 0), res.get("LOCAL", 0),
                                   res.get("STACK", 0))
    return kernels


@dataclass(frozen=True)
class SMLimits:
    """One streaming multiprocessor's resources (CUDA C Programming Guide, compute
    capabilities 8.0 and 9.0)."""
    registers: int = 65536
    threads: int = 2048
    blocks: int = 32
    shared_bytes: int = 164 * 1024
    register_unit: int = 256        # registers are given to a warp in units of this many


SM_LIMITS = {"sm_80": SMLimits(), "sm_90": SMLimits(shared_bytes=228 * 1024)}


def resident_blocks(kernel: KernelSass, threads: int, dynamic_shared: int = 0) -> int:
    """How many blocks of ``threads`` threads an SM holds at once, limited by the
    kernel's registers and shared memory (the occupancy a template can claim; the SASS
    knows the static shared memory only: ``dynamic_shared``, what a launch adds)."""
    limits = SM_LIMITS[kernel.arch[:5]]
    warps = -(-threads // 32)
    per_warp = -(-max(kernel.registers, 1) * 32 // limits.register_unit) * limits.register_unit
    by_registers = limits.registers // (per_warp * warps)
    shared = kernel.shared_bytes + dynamic_shared
    by_shared = limits.shared_bytes // shared if shared else limits.blocks
    return min(limits.blocks, limits.threads // (warps * 32), by_registers, by_shared)
