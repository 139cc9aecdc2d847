"""AutoTVM's log files: one JSON line per measured configuration, as TVM writes them —
``{"input": [target, task name, args, {}], "config": {"index": i, "entity": [[knob,
kind, value], ...]}, "result": [costs, error_no, all_cost, timestamp], "version":
0.2}`` (a failure's costs ``[1e9]``), as TVM writes its logs."""
from __future__ import annotations

import json
from pathlib import Path

LOG_VERSION = 0.2


def encode(inp, result) -> str:
    return json.dumps({
        "input": [inp.task.target, inp.task.name, list(inp.task.args), {}],
        "config": {"index": inp.config.index, "code_hash": None,
                   "entity": inp.config.entities_json()},
        # (a failure's costs are TVM's 1e9, its text stays in the result object)
        "result": [list(result.costs) if result.error_no == 0 else [1e9], result.error_no,
                   result.all_cost, result.timestamp],
        "version": LOG_VERSION, "tvm_version": "tensordsl"})


def load_from_file(path):
    """The log's records as dicts (``input``, ``config``, ``result``), in order."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"apply_history_best: no log file {str(path)!r}")
    out = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            row = json.loads(line)
            row["input"][1], row["config"]["entity"], row["result"][1]
        except (ValueError, KeyError, IndexError, TypeError):
            raise ValueError(f"{path}:{number}: not an AutoTVM log line: {line[:80]!r}") \
                from None
        out.append(row)
    return out


def best_by_workload(records) -> dict:
    """``{(task name, args as JSON): entities}`` of the fastest error-free record of
    each template and arguments (``records``: a path, or (input, result) pairs)."""
    if isinstance(records, (str, Path)):
        rows = load_from_file(records)
    else:
        rows = [json.loads(encode(inp, res)) for inp, res in records]
    best: dict = {}
    for row in rows:
        costs, error_no = row["result"][0], row["result"][1]
        if error_no != 0 or not costs:
            continue
        key = (row["input"][1], json.dumps(row["input"][2]))
        cost = sum(costs) / len(costs)
        if key not in best or cost < best[key][0]:
            best[key] = (cost, row["config"]["entity"])
    return {key: entities for key, (_, entities) in best.items()}
