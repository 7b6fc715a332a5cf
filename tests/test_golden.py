"""Pinned results: short runs of ``fewshot``, ``drift`` and ``ber`` must reproduce, bit for bit on CPU, the
numbers recorded by ``tests/golden/record.py`` *before* the seam refactor (issue 9). Nothing here is computed
from the code under test's own output: ``tests/golden/values.json`` is the frozen pre-refactor reference."""

from __future__ import annotations

import importlib.util
import json
import math
import os

import pytest
import torch

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden")
_spec = importlib.util.spec_from_file_location("golden_record", os.path.join(HERE, "record.py"))
record = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(record)

with open(os.path.join(HERE, "values.json")) as _f:
    PINNED = json.load(_f)


def _same(a, b) -> bool:
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    return a == b


@pytest.mark.parametrize("name", sorted(record.CASES))
def test_results_are_bit_identical_to_the_pre_refactor_reference(name, tmp_path):
    torch.set_num_threads(1)
    record.run_case(name, str(tmp_path))
    got = record.results_of(name, str(tmp_path))
    want = PINNED[name]
    missing = sorted(set(want) - set(got))
    assert not missing, f"{name}: results lost {len(missing)} pinned numbers, e.g. {missing[:5]}"
    diff = [(k, want[k], got[k]) for k in want if not _same(want[k], got[k])]
    assert not diff, f"{name}: {len(diff)} numbers changed, e.g. {diff[:5]}"
