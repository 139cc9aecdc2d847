"""The models suite's layer lists and sides (benchmarks/model_ops.py): the layers are
ResNet-50's, MobileNetV2's and BERT-base's, and ours computes each like PyTorch (small
stand-ins of each kind, checked against PyTorch in float64)."""
from __future__ import annotations

import pytest

from benchmarks import model_ops, workers

pytest.importorskip("torch")


def test_the_layer_lists_are_the_models():
    resnet = model_ops.resnet50(1)
    assert len(resnet) == 23                     # the distinct convolutions per batch size
    strides = [p["stride"] for _, kind, p in resnet]
    assert strides.count(2) == 7                 # the stem, 3 strided 3x3s, 3 projections
    assert sum(model_ops.flops(k, p) for _, k, p in resnet) == pytest.approx(4.1e9, rel=0.15)
    mobile = model_ops.mobilenet_v2()
    depthwise = [p for _, _, p in mobile if p["groups"] > 1]
    assert depthwise and all(p["groups"] == p["x"][1] == p["w"][0] for p in depthwise)
    kinds = [kind for _, kind, _ in model_ops.bert_base()]
    assert kinds.count("dense") == 3 and kinds.count("batch_matmul") == 2


SMALL = [
    ("conv", {"x": (1, 8, 14, 14), "w": (16, 8, 3, 3), "stride": 2, "pad": 1, "groups": 1}),
    ("conv", {"x": (1, 8, 7, 7), "w": (8, 1, 3, 3), "stride": 1, "pad": 1, "groups": 8}),
    ("dense", {"x": (16, 24), "w": (40, 24)}),
    ("batch_matmul", {"a": (3, 16, 8), "b": (3, 16, 8), "transpose_b": True}),
    ("softmax", {"shape": (3, 16, 16)}),
    ("layer_norm", {"shape": (16, 48)}),
]


@pytest.mark.parametrize("kind, params", SMALL)
def test_ours_matches_pytorch_on_each_kind(kind, params):
    assert model_ops.check(kind, params) < 1e-5


def test_a_worker_times_every_layer_and_says_which_used_records(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")    # (the worker sets it: restored after)
    result = workers.layers_tensordsl({"layers": [list(x) for x in SMALL[:3]], "repeat": 1,
                                       "options": {"records": False}, "threads": 1})
    assert len(result["seconds"]) == 3 and all(s > 0 for s in result["seconds"])
    assert result["tuned"] == [False, False, False]
