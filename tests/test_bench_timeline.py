"""bench.inlet_timeline's summary: the medians of each step of a turn, in the order they start."""

from bench.inlet_timeline import EMBEDDING, summary


def test_steps_are_named_by_their_place_in_a_turn_and_ordered_by_their_median_start():
    lexical, results = "WITH terms AS (SELECT ...)", "SELECT c.id, r.name AS repo ..."
    turns = [
        [(lexical, 0.000, 0.012), (EMBEDDING, 0.001, 0.004), (results, 0.013, 0.014)],
        [(lexical, 0.000, 0.010), (EMBEDDING, 0.001, 0.005), (results, 0.011, 0.012)],
        [
            (lexical, 0.000, 0.014),
            (EMBEDDING, 0.001, 0.003),
            (results, 0.015, 0.016),
            (results, 0.017, 0.019),  # a second one in this turn only
        ],
    ]
    out = summary(turns, [15.0, 13.0, 20.0])
    assert out["turns"] == 3
    assert (out["turn_p50_ms"], out["turn_p95_ms"]) == (15.0, 20.0)
    steps = {s["step"]: s for s in out["steps"]}
    assert [s["step"] for s in out["steps"]] == [lexical, EMBEDDING, results, f"{results} (#2)"]
    assert steps[lexical] == {
        "step": lexical,
        "per_turn": 1.0,
        "start_ms": 0.0,
        "end_ms": 12.0,
        "duration_ms": 12.0,
    }
    assert steps[EMBEDDING]["duration_ms"] == 3.0  # the median of 3, 4 and 2
    assert steps[f"{results} (#2)"]["per_turn"] == 0.33
    assert steps[f"{results} (#2)"]["start_ms"] == 17.0
