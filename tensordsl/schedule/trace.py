"""Schedules as data: every primitive appends a ``Step`` naming its stage and axes, so a
schedule can be stored (JSON) and replayed on a fresh copy of the same computation.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from ..errors import ScheduleError


@dataclass(frozen=True)
class Step:
    kind: str
    stage: str
    args: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"kind": self.kind, "stage": self.stage, "args": self.args}

    @staticmethod
    def from_json(d: dict) -> "Step":
        return Step(d["kind"], d["stage"], dict(d.get("args", {})))


def dumps(steps) -> str:
    return json.dumps([s.to_json() for s in steps])


def loads(text: str) -> list[Step]:
    return [Step.from_json(d) for d in json.loads(text)]


def replay(steps, outputs):
    """A new schedule for ``outputs`` with ``steps`` applied, resolved by name."""
    from .schedule import create_schedule
    s = create_schedule(outputs)
    for step in steps:
        _apply(s, step)
    return s


def _stage(s, name: str):
    found = [st for st in s.stages if st.name == name]
    if len(found) != 1:
        raise ScheduleError(f"replay: {len(found)} stages are named {name!r}")
    return found[0]


def _axis(stage, name: str):
    for iv in reversed(stage.all_iter_vars):
        if iv.name == name:
            return iv
    raise ScheduleError(f"replay: stage {stage.name!r} has no axis {name!r}")


def _tensor_named(s, name: str):
    for st in s.stages:
        for t in st.op.outputs:
            if t.name == name:
                return t
    raise ScheduleError(f"replay: no tensor named {name!r}")


def _pos_named(s, name: str):
    """A segment's ``pos``: a tensor of the schedule, or the level of row ids it reads."""
    for st in s.stages:
        for t in st.op.outputs:
            pos = getattr(t.op, "row_ids_of", None)
            if t.name == name or (pos is not None and pos.name == name):
                return t if t.name == name else pos
    raise ScheduleError(f"replay: no tensor named {name!r}")


def _apply(s, step: Step):
    a = step.args
    if step.kind == "cache_read":
        readers = [_stage(s, r).op for r in a["readers"]]
        s.cache_read(_tensor_named(s, a["tensor"]), a["scope"], readers)
        return
    if step.kind == "pack":
        readers = [_stage(s, r).op for r in a["readers"]]
        s.pack(_tensor_named(s, a["tensor"]), a["axis"], a["factor"], readers)
        return
    if step.kind == "cache_write":
        s.cache_write(_tensor_named(s, a["tensor"]), a["scope"], a.get("layout"))
        return
    st = _stage(s, step.stage)
    if step.kind == "rfactor":
        s.rfactor(_tensor_named(s, a["tensor"]), _axis(st, a["axis"]), a["factor_axis"])
    elif step.kind == "split":
        st.split(_axis(st, a["axis"]), factor=a["factor"], nparts=a["nparts"],
                 tail=a.get("tail", "guard"))
    elif step.kind == "segment":
        st.segment(_axis(st, a["axis"]), _pos_named(s, a["pos"]))
    elif step.kind in ("fuse", "reorder"):
        getattr(st, step.kind)(*[_axis(st, x) for x in a["axes"]])
    elif step.kind in ("vectorize", "unroll", "parallel"):
        getattr(st, step.kind)(_axis(st, a["axis"]))
    elif step.kind == "bind":
        from ..te.api import thread_axis
        st.bind(_axis(st, a["axis"]), thread_axis(a["thread"]))
    elif step.kind == "pragma":
        st.pragma(_axis(st, a["axis"]), a["key"], a.get("value"))
    elif step.kind == "prefetch":
        st.prefetch(_tensor_named(s, a["tensor"]), _axis(st, a["axis"]), a["offset"])
    elif step.kind == "compute_at":
        parent = _stage(s, a["parent"])
        st.compute_at(parent, _axis(parent, a["axis"]))
    elif step.kind in ("compute_inline", "compute_root", "double_buffer", "swizzle"):
        getattr(st, step.kind)()
    elif step.kind == "pipeline":
        st.pipeline(a["stages"], tma=a.get("tma", False))
    elif step.kind == "set_scope":
        st.set_scope(a["scope"])
    elif step.kind == "tensorize":
        from .tensor_intrin import by_name
        if a.get("declared"):
            raise ScheduleError(f"replay: tensorize with {a['intrin']!r}, an intrinsic "
                                "declared by td.decl_tensor_intrin, which a trace cannot "
                                "rebuild (its compute and fcompute are Python objects)")
        st.tensorize(_axis(st, a["axis"]), by_name(a["intrin"], a.get("shape")))
    elif step.kind == "storage_align":
        st.storage_align(_axis(st, a["axis"]), a["factor"], a["offset"])
    elif step.kind == "set_store_predicate":
        raise ScheduleError("replay: set_store_predicate holds an expression, which a "
                            "trace does not record; apply it again by hand")
    else:
        raise ScheduleError(f"replay: unknown step {step.kind!r}")
