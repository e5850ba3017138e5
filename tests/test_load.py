"""The load generator: bounds and statistics without an engine, real runs through a real lab."""

from __future__ import annotations

import math
import struct
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labkit import ConfigError, Lab, LabkitError
from labkit.load import (
    Comparison,
    LoadRun,
    check_broken_tcp,
    compare_transports,
    count_time_wait,
    percentile,
    plot_comparison,
    run_load,
    serve_both_transports,
)

MakeLab = Callable[..., Lab]


def made_run(label: str, latencies: list[float], seconds: float = 1.0, errors: int = 0) -> LoadRun:
    return LoadRun(
        label=label,
        requested=len(latencies),
        concurrency=2,
        count=len(latencies),
        errors=errors,
        seconds=seconds,
        latencies=tuple(latencies),
    )


def made_comparison() -> Comparison:
    return Comparison(
        (
            made_run("unix", [0.001, 0.002, 0.003, 0.010], seconds=0.5),
            made_run("tcp", [0.002, 0.003, 0.004, 0.020], seconds=1.0),
            made_run("tcp", [0.002, 0.004, 0.005, 0.030], seconds=2.0),
            made_run("unix", [0.001, 0.003, 0.004, 0.020], seconds=1.0),
        )
    )


# Statistics, without an engine


@pytest.mark.parametrize(
    ("q", "expected"),
    [(50, 50.0), (90, 90.0), (99, 99.0), (100, 100.0), (0, 1.0)],
    ids=["p50", "p90", "p99", "p100", "p0"],
)
def test_percentile_is_the_nearest_rank(q: float, expected: float) -> None:
    values = [float(n) for n in range(100, 0, -1)]

    assert percentile(values, q) == expected


def test_percentile_of_no_values_is_nan() -> None:
    assert math.isnan(percentile([], 50))


@given(st.lists(st.floats(min_value=0, max_value=60, allow_nan=False), min_size=1, max_size=300))
def test_percentiles_are_ordered_values_that_occurred(values: list[float]) -> None:
    run = made_run("any", values)

    assert run.p50 <= run.p90 <= run.p99
    assert {run.p50, run.p90, run.p99} <= set(values)


def test_run_table_shows_counts_and_milliseconds() -> None:
    run = made_run("unix", [0.001, 0.002, 0.003, 0.004], seconds=0.5, errors=1)

    header, row = run.table().splitlines()

    assert header.split()[:4] == ["run", "requests", "errors", "req/s"]
    assert row.split() == ["unix", "4", "1", "8", "2.00", "4.00", "4.00"]


def test_comparison_takes_medians_spreads_and_ratios_over_rounds() -> None:
    comparison = made_comparison()

    assert comparison.labels == ("unix", "tcp")
    assert comparison.median("unix", "rps") == pytest.approx(6.0)
    assert comparison.spread("tcp", "rps") == (2.0, 4.0)
    assert comparison.ratio("rps") == pytest.approx(0.5)
    assert comparison.is_close("rps", factor=2.5)
    assert not comparison.is_close("rps", factor=2.0)
    assert comparison.is_clean()


def test_comparison_table_and_reading_name_both_transports() -> None:
    comparison = made_comparison()

    table = comparison.table()
    reading = comparison.reading()

    assert table.count("\nunix ") == 2 and table.count("\ntcp ") == 2
    assert "tcp/unix = 0.50" in reading


def test_comparison_of_an_unknown_transport_is_refused() -> None:
    with pytest.raises(ConfigError) as refused:
        made_comparison().median("udp", "p50")

    assert refused.value.field == "label"


def test_plot_is_a_small_png_with_a_stable_text_form() -> None:
    chart = plot_comparison(made_comparison())

    width, height = struct.unpack(">II", chart.png[16:24])

    assert chart.png.startswith(b"\x89PNG\r\n\x1a\n")
    assert (width, height) == (480, 240)
    assert len(chart.png) < 40_000
    assert repr(chart) == (
        "<Chart: latency p50/p90/p99 and requests/s of unix, tcp, medians of 2 rounds>"
    )


# Bounds, checked before any request


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"requests": 0}, "requests"),
        ({"requests": 20_001}, "requests"),
        ({"requests": True}, "requests"),
        ({"concurrency": 0}, "concurrency"),
        ({"concurrency": 33}, "concurrency"),
        ({"time_limit": 0}, "time_limit"),
        ({"time_limit": 61}, "time_limit"),
        ({"time_limit": math.nan}, "time_limit"),
        ({"request_timeout": math.inf}, "request_timeout"),
        ({"path": "index.php"}, "path"),
        ({"path": "/a b"}, "path"),
        ({"host": "tcp.test\r\nX: 1"}, "host"),
    ],
    ids=[
        "no-requests",
        "too-many-requests",
        "bool-requests",
        "no-concurrency",
        "too-much-concurrency",
        "zero-time-limit",
        "long-time-limit",
        "nan-time-limit",
        "endless-request-timeout",
        "relative-path",
        "path-with-space",
        "header-injection-in-host",
    ],
)
def test_out_of_bounds_load_is_refused_before_any_request(
    arguments: dict[str, object], field: str
) -> None:
    never_started = Lab("load-bounds")

    with pytest.raises(ConfigError) as refused:
        run_load(never_started, **arguments)

    assert refused.value.field == field


def test_load_on_a_lab_that_is_not_up_is_refused() -> None:
    with pytest.raises(LabkitError, match="no published port"):
        run_load(Lab("load-not-up"), requests=1)


# Real runs through a real lab


@pytest.mark.engine
def test_small_runs_on_unix_and_tcp_have_no_errors_and_ordered_percentiles(
    make_lab: MakeLab,
) -> None:
    lab = make_lab("pod", tag="load")
    hosts = serve_both_transports(lab)

    runs = [run_load(lab, host=host, requests=200, label=name) for name, host in hosts.items()]

    for run in runs:
        assert (run.count, run.errors, run.failures, run.cut_short) == (200, 0, (), False)
        assert len(run.latencies) == 200
        assert 0 < run.p50 <= run.p90 <= run.p99
        assert run.rps > 0


@pytest.mark.engine
def test_socket_owner_mismatch_counts_every_502_as_an_error(make_lab: MakeLab) -> None:
    lab = make_lab("pod", tag="load")
    lab.apply(pool={"listen.owner": "ubuntu", "listen.group": "ubuntu"})

    run = run_load(lab, requests=50, concurrency=4)

    assert (run.count, run.errors) == (50, 50)
    assert run.failures == (("HTTP 502", 50),)


@pytest.mark.engine
def test_run_never_sends_more_than_its_requests(make_lab: MakeLab) -> None:
    lab = make_lab("pod", tag="load")

    run = run_load(lab, requests=7, concurrency=3)

    assert (run.count, run.errors, run.cut_short) == (7, 0, False)


@pytest.mark.engine
def test_time_limit_stops_the_run_before_its_requests_are_sent(make_lab: MakeLab) -> None:
    lab = make_lab("pod", tag="load")

    # Each request holds a worker for 0.5 s, longer than the whole limit, so no thread gets
    # to start a second one.
    run = run_load(lab, "/sleep.php?s=0.5", requests=1000, concurrency=2, time_limit=0.2)

    assert run.cut_short
    assert run.count <= run.concurrency
    assert run.errors == 0


@pytest.mark.engine
def test_request_timeout_counts_as_an_error(make_lab: MakeLab) -> None:
    lab = make_lab("pod", tag="load")

    run = run_load(lab, "/sleep.php?s=2", requests=2, concurrency=2, request_timeout=0.3)

    assert (run.count, run.errors) == (2, 2)
    assert run.failures == (("timeout", 2),)


@pytest.mark.engine
def test_comparison_alternates_transports_and_tcp_leaves_time_wait(make_lab: MakeLab) -> None:
    lab = make_lab("pod", tag="load")
    hosts = serve_both_transports(lab)

    comparison = compare_transports(lab, hosts, rounds=2, requests=50, concurrency=2, warmup=10)

    assert [run.label for run in comparison.runs] == ["unix", "tcp", "tcp", "unix"]
    assert comparison.is_clean()
    # One closed FastCGI connection per TCP request, warm-up included.
    assert count_time_wait(lab) >= 2 * 50 + 10


@pytest.mark.engine
@pytest.mark.parametrize(
    ("answer", "verdict"),
    [
        ({"listen.allowed_clients": "127.0.0.2"}, "Right: all 50 TCP requests failed"),
        ({"pm.max_spare_servers": "2"}, "Not yet: 50 of 50 TCP requests still succeeded"),
        ({"listen.mode": "66x"}, "Not yet: the lab refused that answer"),
    ],
    ids=["clients-exclude-nginx", "harmless-change", "refused-value"],
)
def test_broken_tcp_exercise_judges_the_answer_and_restores_the_pool(
    make_lab: MakeLab, answer: dict[str, str], verdict: str
) -> None:
    lab = make_lab("pod", tag="load")
    serve_both_transports(lab)
    before = lab.config

    result = check_broken_tcp(lab, answer)

    assert result.startswith(verdict)
    assert lab.config == before
    assert run_load(lab, host="tcp.test", requests=10).errors == 0
