"""Tests of the window splitter and the part recovery measured in bench/retrieval/multivector.py."""

from __future__ import annotations

import numpy as np

from bench.retrieval.multivector import _split_mean, split_windows


def words(line: str) -> int:
    return len(line.split())


def test_windows_keep_every_line_in_order_within_the_budget():
    lines = [f"local x{i} = f(a, b)" for i in range(40)]
    runs = split_windows(lines, words, budget=20)
    assert [ln for run in runs for ln in run] == lines
    assert len(runs) > 1
    assert all(sum(words(ln) + 1 for ln in run) <= 20 for run in runs)


def test_a_line_over_the_budget_is_a_window_of_its_own():
    long = " ".join(["word"] * 50)
    runs = split_windows(["a = 1", long, "b = 2"], words, budget=10)
    assert runs == [["a = 1"], [long], ["b = 2"]]


def test_a_short_text_is_one_window():
    assert split_windows(["return 1"], words, budget=200) == [["return 1"]]
    assert split_windows([], words, budget=200) == []


def test_the_other_part_of_a_normalised_mean_comes_back():
    rng = np.random.default_rng(0)
    f, n = (v / np.linalg.norm(v) for v in rng.normal(size=(2, 384)))
    mean = (f + n) / np.linalg.norm(f + n)
    assert np.allclose(_split_mean(mean, f), n, atol=1e-9)
    assert np.allclose(_split_mean(mean, n), f, atol=1e-9)
