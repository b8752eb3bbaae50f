"""The benchmark's figures: medians of the runs with min and max, ratios to the floor run by run,
requests by verb (tests/bench/bench_figures.py)."""

from __future__ import annotations

from types import SimpleNamespace

from bench_figures import Requests, Runs, by_verb, ratio, summary, table


def test_a_figure_is_the_median_of_the_runs_with_min_and_max() -> None:
    assert summary([30.9, 24.1, 27.0]) == "27.0 [24.1-30.9]"
    assert summary([17.844, 17.65, 16.39], 2) == "17.65 [16.39-17.84]"
    assert summary([3, 1, 10]) == "3 [1-10]"


def test_one_run_is_shown_alone_and_missing_values_are_left_out() -> None:
    assert summary([25.9]) == "25.9"
    assert summary([None, 4.0, None]) == "4.0"
    assert summary([None, None]) == "-"
    assert summary([]) == "-"


def test_an_even_number_of_runs_has_the_mean_of_the_middle_two_as_median() -> None:
    assert summary([1.0, 2.0, 4.0, 10.0]) == "3.0 [1.0-10.0]"
    assert summary([1, 2]) == "1.5 [1-2]"


def test_requests_show_the_median_run_with_its_breakdown() -> None:
    runs = [Requests(3.23, "1222 patch apptasks/status"),
            Requests(3.00, "1000 patch deployments"),
            Requests(3.01, "1000 patch deployments, 3 list apptasks")]
    assert summary(runs) == "3.01 [3.00-3.23] (1000 patch deployments, 3 list apptasks)"
    assert summary([Requests(2.0, "none")]) == "2.00 (none)"


def test_requests_are_counted_by_verb_and_resource_without_watches() -> None:
    def event(verb: str, resource: str, subresource: str = "") -> SimpleNamespace:
        return SimpleNamespace(verb=verb, resource=resource, subresource=subresource)

    events = [event("patch", "deployments"), event("patch", "apptasks", "status"),
              event("patch", "deployments"), event("watch", "deployments"),
              event("list", "apptasks")]
    assert by_verb(events, 2) == Requests(
        2.0, "2 patch deployments, 1 patch apptasks/status, 1 list apptasks")
    assert str(by_verb([], 10)) == "0.00 (none)"


def test_the_ratio_to_the_floor_is_the_median_of_each_runs_ratio() -> None:
    # the median of 2.0, 1.0 and 3.0, where the ratio of the medians would be 20/10
    assert ratio([20.0, 20.0, 30.0], [10.0, 20.0, 10.0]) == 2.0
    assert ratio([None, 5.0], [2.0, 2.5]) == 2.0
    assert ratio([5.0], [0.0]) is None
    assert ratio([None], [1.0]) is None


def test_the_table_has_a_row_per_contender_with_medians_and_ratios() -> None:
    results: Runs = {("new", "1000"): {
        "floor": [{"applied": 10.0, "ready": None, "busy": 99.0},
                  {"applied": 20.0, "ready": None, "busy": 98.0},
                  {"applied": 10.0, "ready": None, "busy": 97.0}],
        "go": [{"applied": 20.0, "ready": 40.0, "busy": 99.0},
               {"applied": 20.0, "ready": 41.0, "busy": 99.5},
               {"applied": 30.0, "ready": 45.0, "busy": 98.5}],
    }}
    assert table(results).splitlines() == [
        "new        1000 floor       applied=10.0 [10.0-20.0]  ready=-  busy=98.0 [97.0-99.0]%",
        "new        1000 go          applied=20.0 [20.0-30.0] (2.00x)  ready=41.0 [40.0-45.0]  "
        "busy=99.0 [98.5-99.5]%",
    ]
