"""A template's knobs (TVM AutoTVM's ``ConfigSpace``): what ``cfg.define_split`` and
``cfg.define_knob`` declare, and the entity each configuration picks.

One class serves the three roles a template's ``cfg`` plays: while a task is created it
records the space (each knob's choices) and answers every ``cfg[name]`` with the knob's
fallback; while a configuration is instantiated or applied it answers with that
configuration's entities; called outside both, it is a fallback configuration (no split,
each knob's first value).
"""
from __future__ import annotations

import math

from ..ir import nodes as n


class SplitEntity:
    """Factors of one axis, outermost first; the first -1 where it takes the rest."""

    def __init__(self, size):
        self.size = [int(x) for x in size]

    def apply(self, s, op, axis):
        """Split ``axis`` of ``op``'s stage by the factors: the new axes, outermost
        first (TVM's ``SplitEntity.apply``)."""
        stage = s[op]
        out = []
        for k in range(len(self.size) - 1):
            outer, axis = stage.split(axis, factor=math.prod(self.size[k + 1:]))
            out.append(outer)
        return out + [axis]

    def to_json(self):
        return self.size

    def __eq__(self, other):
        return isinstance(other, SplitEntity) and self.size == other.size

    def __hash__(self):
        return hash(tuple(self.size))

    def __repr__(self):
        return str(self.size)


class OtherOptionEntity:
    """One value of a knob (``cfg[name].val``)."""

    def __init__(self, val):
        self.val = val

    def to_json(self):
        return self.val

    def __eq__(self, other):
        return isinstance(other, OtherOptionEntity) and self.val == other.val

    def __hash__(self):
        return hash(repr(self.val))

    def __repr__(self):
        return repr(self.val)


class SplitSpace:
    """The ways to split an axis of ``product`` iterations into ``num_outputs`` factors:
    ``"factors"`` (divisors), ``"power2"`` (powers of two; the outer part takes the
    rest, guarded), ``"verbose"`` (both)."""
    kind = "sp"

    def __init__(self, product: int, num_outputs: int, policy: str, max_factor, filter):
        self.product, self.num_outputs, self.policy = product, num_outputs, policy
        if policy == "factors":
            choices = [d for d in range(1, product + 1) if product % d == 0]
        elif policy == "power2":
            choices = [1 << k for k in range(product.bit_length()) if 1 << k <= product]
        elif policy == "verbose":
            choices = sorted({d for d in range(1, product + 1) if product % d == 0} |
                             {1 << k for k in range(product.bit_length())
                              if 1 << k <= product})
        else:
            raise ValueError(f"define_split: policy must be 'factors', 'power2' or "
                             f"'verbose', got {policy!r}")
        if max_factor is not None:
            choices = [c for c in choices if c <= max_factor]
        self.entities = []
        for inner in _tuples(choices, num_outputs - 1, product, policy == "factors"):
            entity = SplitEntity([-1, *inner])
            if filter is None or filter(entity):
                self.entities.append(entity)
        if not self.entities:
            raise ValueError("define_split: the filter leaves no split of the axis")

    def __len__(self):
        return len(self.entities)

    def fallback(self) -> SplitEntity:
        return self.entities[0]     # (TVM's: the first the filter leaves)

    def from_json(self, value) -> SplitEntity:
        return SplitEntity(value)

    def __repr__(self):
        return (f"Split(policy={self.policy}, product={self.product}, "
                f"num_outputs={self.num_outputs}) len={len(self)}")


class OtherOptionSpace:
    """The values of a knob (``define_knob``)."""
    kind = "ot"

    def __init__(self, candidates):
        self.entities = [OtherOptionEntity(c) for c in candidates]
        if not self.entities:
            raise ValueError("define_knob: candidates must not be empty")

    def __len__(self):
        return len(self.entities)

    def fallback(self) -> OtherOptionEntity:
        return self.entities[0]

    def from_json(self, value) -> OtherOptionEntity:
        return OtherOptionEntity(value)

    def __repr__(self):
        return f"OtherOption({[e.val for e in self.entities]}) len={len(self)}"


def _tuples(choices, count: int, product: int, exact: bool):
    """Every ``count``-tuple of ``choices`` (inner factors, outermost first) whose
    product fits in ``product`` iterations (divides it, where ``exact``), in TVM's
    order: the innermost factor varies slowest."""
    def grow(chosen: tuple, prod: int):
        if len(chosen) == count:
            yield chosen[::-1]
            return
        for c in choices:
            p = prod * c
            if p <= product and (not exact or product % p == 0):
                yield from grow(chosen + (c,), p)
    return grow((), 1)


class ConfigSpace:
    """A template's ``cfg``: records knobs; answers ``cfg[name]`` with the entity chosen
    (``chosen``), else the knob's fallback."""

    def __init__(self, chosen: dict | None = None, index: int = -1):
        self.space_map: dict = {}
        self.chosen = dict(chosen or {})
        self.index = index
        self.flop = 0
        self.is_fallback = chosen is None

    # ------------------------------------------------------------ declaring
    def define_split(self, name: str, axis, policy: str = "factors", num_outputs: int = 2,
                     max_factor=None, filter=None, **kwargs):
        """Knob ``name``: the factors splitting ``axis`` (an IterVar of constant extent,
        or an int) into ``num_outputs`` loops (TVM's signature; ``no_tail`` and the
        ``"candidate"`` policy are not supported)."""
        if kwargs:
            raise NotImplementedError(f"define_split {name!r}: options {sorted(kwargs)} "
                                      "are not supported (policy, num_outputs, max_factor "
                                      "and filter are)")
        extent = axis if isinstance(axis, int) else getattr(axis.dom, "extent", None)
        if isinstance(extent, n.IntImm):
            extent = extent.value
        if not isinstance(extent, int) or extent < 1:
            raise ValueError(f"define_split {name!r}: the axis needs a constant extent, "
                             f"got {extent!r}")
        if not isinstance(num_outputs, int) or num_outputs < 2:
            raise ValueError(f"define_split {name!r}: num_outputs must be 2 or more, got "
                             f"{num_outputs!r}")
        self._define(name, lambda: SplitSpace(extent, num_outputs, policy, max_factor,
                                              filter))

    def define_knob(self, name: str, candidates):
        """Knob ``name``: one of ``candidates`` (``cfg[name].val``)."""
        self._define(name, lambda: OtherOptionSpace(list(candidates)))

    def define_reorder(self, name, axes, policy, **kwargs):
        raise NotImplementedError("define_reorder is not supported; express the orders "
                                  "as a define_knob and reorder by its value")

    def define_annotate(self, name, axes, policy, **kwargs):
        raise NotImplementedError("define_annotate is not supported; express the choice "
                                  "as a define_knob and annotate by its value")

    def _define(self, name: str, make):
        if not isinstance(name, str):
            raise TypeError(f"a knob's name must be a string, got {name!r}")
        if name not in self.space_map:
            self.space_map[name] = make()

    def add_flop(self, flop):
        """The operation count of one run (for GFLOPS in the tuner's reports)."""
        self.flop += float(flop)

    # ------------------------------------------------------------ choosing
    def __getitem__(self, name: str):
        if name in self.chosen:
            return self.chosen[name]
        if name not in self.space_map:
            raise KeyError(f"cfg[{name!r}]: no knob of that name is defined "
                           f"(defined: {sorted(self.space_map)})")
        return self.space_map[name].fallback()

    def __len__(self):
        return math.prod(len(s) for s in self.space_map.values())

    def get(self, index: int) -> "ConfigSpace":
        """The configuration of ``index`` (the first knob varies fastest)."""
        if not 0 <= index < len(self):
            raise IndexError(f"config index {index} outside the space of {len(self)}")
        chosen, rest = {}, index
        for name, space in self.space_map.items():
            chosen[name] = space.entities[rest % len(space)]
            rest //= len(space)
        return ConfigSpace(chosen, index)

    def index_of(self, chosen: dict) -> int:
        """The index of the configuration choosing ``chosen`` (name -> entity)."""
        index, stride = 0, 1
        for name, space in self.space_map.items():
            index += space.entities.index(chosen[name]) * stride
            stride *= len(space)
        return index

    def entities_json(self) -> list:
        """``[[name, kind, value], ...]``, as TVM's log files write a configuration."""
        return [[name, _kind(entity), entity.to_json()] for name, entity in self.chosen.items()]

    def __repr__(self):
        if self.chosen:
            return "[" + ", ".join(f"('{k}', {v})" for k, v in self.chosen.items()) + \
                f"],None,{self.index}"
        lines = [f"ConfigSpace (len={len(self)}, space_map="]
        lines += [f"   {k:2d} {name}: {space}" for k, (name, space)
                  in enumerate(self.space_map.items())]
        return "\n".join(lines + [")"])


def _kind(entity) -> str:
    return "sp" if isinstance(entity, SplitEntity) else "ot"
