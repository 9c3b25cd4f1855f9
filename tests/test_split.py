"""The seeded, stratified 4:1:1 split: proportions, determinism across processes, persistence."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

from pinid.data import Dataset, Pin, load_split, make_split, save_split
from pinid.data.split import part_sizes


def _dataset(sizes: dict[str, int]) -> Dataset:
    pins = tuple(
        Pin(f"{user}-{i:03d}", user, "", Path(f"{user}{i}.png"))
        for user, n in sizes.items()
        for i in range(n)
    )
    return Dataset(pins, Path("."), Path("mem"))


def test_paper_proportions():
    assert part_sizes(600) == (400, 100, 100)
    assert part_sizes(3) == (1, 1, 1)
    assert part_sizes(10) == (6, 2, 2)


def test_split_is_stratified_per_user():
    split = make_split(_dataset({"a": 600, "b": 60, "c": 7}), seed=0)
    per = Counter((pin_id.split("-")[0], part) for pin_id, part in split.assignment.items())
    assert [per["a", p] for p in ("train", "val", "test")] == [400, 100, 100]
    assert [per["b", p] for p in ("train", "val", "test")] == [40, 10, 10]
    assert all(per["c", p] >= 1 for p in ("train", "val", "test"))


def test_seed_changes_split_and_user_set_does_not():
    one = make_split(_dataset({"a": 30, "b": 30}), seed=0)
    other_seed = make_split(_dataset({"a": 30, "b": 30}), seed=1)
    alone = make_split(_dataset({"a": 30}), seed=0)
    assert one.assignment != other_seed.assignment
    assert {k: v for k, v in one.assignment.items() if k.startswith("a-")} == alone.assignment


_CHILD = """
import json, sys
from pathlib import Path
from pinid.data import Dataset, Pin, make_split
users = ("zed", "amy", "bo")
pins = tuple(Pin(f"{u}-{i}", u, "", Path("x.png")) for u in users for i in range(20))
split = make_split(Dataset(pins, Path("."), Path("m")), seed=3)
print(json.dumps(split.assignment, sort_keys=True))
"""


def test_same_split_in_processes_with_different_hash_seeds():
    outputs = set()
    for hash_seed in ("1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        result = subprocess.run(
            [sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, check=True
        )
        outputs.add(result.stdout)
    assert len(outputs) == 1
    assert len(json.loads(outputs.pop())) == 60


def test_saved_split_round_trips_and_applies(tmp_path):
    dataset = _dataset({"a": 12, "b": 12})
    split = make_split(dataset, seed=0)
    save_split(split, tmp_path / "split.json")
    loaded = load_split(tmp_path / "split.json")
    assert loaded == split
    train, val, test = (loaded.ids(part) for part in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (16, 4, 4)
    assert not train & test and not train & val and not val & test
