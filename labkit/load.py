"""A small, bounded load test through the lab's Nginx, and a unix-socket-or-TCP comparison.

Every request goes to ``127.0.0.1`` on the lab's published port and nowhere else. A run stops
by itself: after its number of requests, or when its time limit passes (requests in flight
then finish or hit their own timeout).

The client keeps one HTTP/1.1 keep-alive connection per thread. The lesson is about the hop
from Nginx to PHP-FPM; a new client connection per request would add Docker's port
forwarding and a TCP handshake to every request on both sides alike, and so hide the
difference being measured. Nginx itself still opens a new FastCGI connection to PHP-FPM for
each request: unless `fastcgi_keep_conn` is on (with `keepalive` in an `upstream` block),
PHP-FPM closes the connection after each response
(https://nginx.org/en/docs/http/ngx_http_fastcgi_module.html#fastcgi_keep_conn).
"""

from __future__ import annotations

import http.client
import io
import logging
import math
import statistics
import threading
import time
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

from labkit.config import LabConfig
from labkit.errors import ConfigError, LabkitError
from labkit.lab import Lab

logger = logging.getLogger(__name__)

TARGET_HOST = "127.0.0.1"
MAX_REQUESTS = 20_000
MAX_CONCURRENCY = 32
MAX_TIME_LIMIT = 60.0
MAX_REQUEST_TIMEOUT = 30.0
MAX_ROUNDS = 10
# The TCP twin of Debian's `www` pool: the same workers, on loopback TCP instead of the socket.
TCP_POOL = "tcp"
TCP_SITE = "tcp.test"
TCP_ADDRESS = "127.0.0.1:9000"
TRANSPORTS: dict[str, str | None] = {"unix": None, "tcp": TCP_SITE}
# The smallest PHP page. Not whoami.php: its fpm_get_status() crashes workers (SIGSEGV, and
# "scoreboard already in use") when requests run in parallel on PHP 8.2, seen on this lab;
# https://github.com/php/php-src/issues/19974
LOAD_PATH = "/index.php"
# Pool directives that only mean something for a unix socket.
_SOCKET_ONLY = frozenset({"listen.owner", "listen.group", "listen.mode", "listen.acl_users"})

Metric = Literal["p50", "p90", "p99", "rps"]
METRICS: tuple[Metric, ...] = ("p50", "p90", "p99", "rps")


@dataclass(frozen=True)
class LoadRun:
    """What one load run measured.

    Latencies are those of every finished request, failed ones included, in seconds and in
    the order they finished; the percentiles use the nearest-rank method.

    Attributes:
        label: A name for the run, e.g. ``unix`` or ``tcp``.
        requested: How many requests the run was asked to send.
        concurrency: How many requests were kept in flight at once.
        count: How many requests finished (answered or failed).
        errors: Requests that failed: no answer, a timeout, or a status other than 2xx.
        seconds: Wall time from the first request sent to the last one finished.
        latencies: Each finished request's latency in seconds.
        failures: How many failures of each kind, e.g. ``("HTTP 502", 200)``.
        cut_short: The time limit stopped the run before it sent every request.
    """

    label: str
    requested: int
    concurrency: int
    count: int
    errors: int
    seconds: float
    latencies: tuple[float, ...] = field(repr=False)
    failures: tuple[tuple[str, int], ...] = ()
    cut_short: bool = False

    @property
    def rps(self) -> float:
        """Finished requests per second of wall time."""
        return self.count / self.seconds if self.seconds > 0 else 0.0

    @property
    def p50(self) -> float:
        return percentile(self.latencies, 50)

    @property
    def p90(self) -> float:
        return percentile(self.latencies, 90)

    @property
    def p99(self) -> float:
        return percentile(self.latencies, 99)

    def table(self) -> str:
        """Return the run as a small printable table (latencies in milliseconds)."""
        return "\n".join([_ROW_HEADER, _row(self)])


def percentile(values: tuple[float, ...] | list[float], q: float) -> float:
    """Return the `q`-th percentile by nearest rank (a value that occurred), or NaN if empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def run_load(
    lab: Lab,
    path: str = LOAD_PATH,
    host: str | None = None,
    requests: int = 2000,
    concurrency: int = 8,
    time_limit: float = 30.0,
    request_timeout: float = 10.0,
    label: str = "",
) -> LoadRun:
    """Send `requests` GETs through the lab's Nginx, `concurrency` at a time, and measure them.

    Args:
        lab: A running lab; only its published port on 127.0.0.1 is used.
        path: The request path.
        host: The Host header (a site's `server_name`); None reaches the default site.
        requests: How many requests to send, 1 to `MAX_REQUESTS`.
        concurrency: Threads, each with its own keep-alive connection, 1 to `MAX_CONCURRENCY`.
        time_limit: No request starts after this many seconds (at most `MAX_TIME_LIMIT`).
        request_timeout: One request fails after this many seconds without progress.
        label: A name for the run in tables and plots; defaults to `host` or ``default``.

    Returns:
        The measured run. Failed requests are counted, never raised.

    Raises:
        ConfigError: A bound is out of range, or the path or host is malformed.
        LabkitError: The lab has no published port (it is not up).
    """
    _check_bounds(requests, concurrency, time_limit, request_timeout)
    _check_target(path, host)
    if not lab.port:
        raise LabkitError(f"lab {lab.name!r} has no published port; is it up?")

    plan = _Plan(lab.port, path, host or "localhost", requests, request_timeout)
    deadline = time.monotonic() + time_limit
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="labkit-load") as pool:
        tallies = list(pool.map(lambda _: _worker(plan, deadline), range(concurrency)))
    seconds = time.perf_counter() - started

    run = _combine(label or host or "default", plan, concurrency, tallies, seconds)
    logger.debug("load %s: %d requests, %d errors", run.label, run.count, run.errors)
    return run


@dataclass
class _Plan:
    """What every worker thread shares: the target and the tickets left to take."""

    port: int
    path: str
    host: str
    requests: int
    request_timeout: float
    taken: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self) -> bool:
        """Take one request ticket; False when all are gone."""
        with self.lock:
            if self.taken >= self.requests:
                return False
            self.taken += 1
            return True


@dataclass
class _Tally:
    """One worker's results, merged after the threads end (so no lock is needed)."""

    latencies: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)
    first: float = math.inf
    last: float = 0.0
    stopped_by_time: bool = False


def _worker(plan: _Plan, deadline: float) -> _Tally:
    tally = _Tally()
    connection = http.client.HTTPConnection(TARGET_HOST, plan.port, timeout=plan.request_timeout)
    headers = {"Host": plan.host}
    try:
        while True:
            if time.monotonic() >= deadline:
                tally.stopped_by_time = True
                break
            if not plan.take():
                break
            _one_request(connection, plan.path, headers, tally)
    finally:
        connection.close()
    return tally


def _one_request(
    connection: http.client.HTTPConnection, path: str, headers: dict[str, str], tally: _Tally
) -> None:
    """Send one GET on the thread's connection and record its latency and outcome."""
    started = time.perf_counter()
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        response.read()
        failure = "" if 200 <= response.status < 300 else f"HTTP {response.status}"
    except TimeoutError:
        failure = "timeout"
    except (OSError, http.client.HTTPException) as error:
        failure = type(error).__name__
    finished = time.perf_counter()
    if failure:
        # A connection in an unknown state is not reused; the next request opens a new one.
        connection.close()
        tally.failures[failure] += 1
    tally.latencies.append(finished - started)
    tally.first, tally.last = min(tally.first, started), max(tally.last, finished)


def _combine(
    label: str, plan: _Plan, concurrency: int, tallies: list[_Tally], seconds: float
) -> LoadRun:
    latencies = tuple(value for tally in tallies for value in tally.latencies)
    failures: Counter[str] = sum((t.failures for t in tallies), Counter())
    first = min((t.first for t in tallies), default=math.inf)
    last = max((t.last for t in tallies), default=0.0)
    return LoadRun(
        label=label,
        requested=plan.requests,
        concurrency=concurrency,
        count=len(latencies),
        errors=sum(failures.values()),
        seconds=last - first if latencies else seconds,
        latencies=latencies,
        failures=tuple(sorted(failures.items())),
        cut_short=len(latencies) < plan.requests and any(t.stopped_by_time for t in tallies),
    )


def _check_bounds(
    requests: int, concurrency: int, time_limit: float, request_timeout: float
) -> None:
    if not _is_int_in(requests, 1, MAX_REQUESTS):
        raise ConfigError("load", "requests", f"a whole number from 1 to {MAX_REQUESTS}", requests)
    if not _is_int_in(concurrency, 1, MAX_CONCURRENCY):
        allowed = f"a whole number from 1 to {MAX_CONCURRENCY}"
        raise ConfigError("load", "concurrency", allowed, concurrency)
    for name, seconds, limit in (
        ("time_limit", time_limit, MAX_TIME_LIMIT),
        ("request_timeout", request_timeout, MAX_REQUEST_TIMEOUT),
    ):
        if not _is_number_in(seconds, limit):
            raise ConfigError("load", name, f"seconds, more than 0 and at most {limit:g}", seconds)


def _is_int_in(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _is_number_in(value: object, high: float) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return 0 < value <= high


def _check_target(path: object, host: object) -> None:
    if not isinstance(path, str) or not path.startswith("/") or any(c in path for c in " \r\n\t"):
        raise ConfigError("load", "path", "a path starting with `/`, without spaces", path)
    if host is not None and (
        not isinstance(host, str)
        or not host
        or len(host) > 100
        or not all(c.isascii() and (c.isalnum() or c in ".-") for c in host)
    ):
        raise ConfigError("load", "host", "a host name like `tcp.test`, or None", host)


# Both transports, side by side


def serve_both_transports(lab: Lab) -> dict[str, str | None]:
    """Add a TCP twin of the `www` pool and a site for it, so both transports answer at once.

    The `tcp` pool copies `www`'s workers and process manager but listens on
    ``127.0.0.1:9000`` (with `listen.allowed_clients` set to loopback); the `tcp.test` site
    passes PHP there. The default site still uses the unix socket. With both live, runs can
    alternate between transports without restarting anything in between.

    Returns:
        The Host header for each transport: ``{"unix": None, "tcp": "tcp.test"}``.

    Raises:
        ConfigRejected: php-fpm -t or nginx -t refused the files.
        ApplyFailed: A server did not come back.
    """
    twin: dict[str, str] = {}
    for key, value in lab.config.pool("www").directives:
        if key == "listen":
            twin.update({"listen": TCP_ADDRESS, "listen.allowed_clients": "127.0.0.1"})
        elif key not in _SOCKET_ONLY:
            twin[key] = value
    lab.apply_config(lab.config.with_pool(TCP_POOL, twin).with_site(TCP_SITE, TCP_ADDRESS))
    return dict(TRANSPORTS)


@dataclass(frozen=True)
class Comparison:
    """Load runs of several transports, interleaved in rounds, in the order they ran."""

    runs: tuple[LoadRun, ...]

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(run.label for run in self.runs))

    def runs_of(self, label: str) -> tuple[LoadRun, ...]:
        """Return the runs of one transport.

        Raises:
            ConfigError: No run has that label.
        """
        found = tuple(run for run in self.runs if run.label == label)
        if not found:
            raise ConfigError("comparison", "label", "one of " + ", ".join(self.labels), label)
        return found

    def median(self, label: str, metric: Metric) -> float:
        """Return the median over rounds of one metric (seconds, or requests per second)."""
        return statistics.median(self.values(label, metric))

    def spread(self, label: str, metric: Metric) -> tuple[float, float]:
        """Return the lowest and highest value of one metric over the rounds."""
        values = self.values(label, metric)
        return min(values), max(values)

    def values(self, label: str, metric: Metric) -> list[float]:
        """Return one metric of each of a transport's runs, in the order they ran."""
        return [float(getattr(run, metric)) for run in self.runs_of(label)]

    def ratio(self, metric: Metric, label: str = "tcp", baseline: str = "unix") -> float:
        """Return `label`'s median of `metric` divided by `baseline`'s."""
        return self.median(label, metric) / self.median(baseline, metric)

    def is_close(self, metric: Metric, factor: float = 2.0) -> bool:
        """Return whether tcp's and unix's medians of `metric` are within `factor` of each other."""
        return 1 / factor < self.ratio(metric) < factor

    def is_clean(self) -> bool:
        """Return whether every run finished all its requests without an error."""
        return all(run.errors == 0 and run.count == run.requested for run in self.runs)

    def table(self) -> str:
        """Return every run, then each transport's medians and spread, as printable text."""
        lines = [_ROW_HEADER, *(_row(run) for run in self.runs), ""]
        lines.append("median over rounds (lowest-highest):")
        for label in self.labels:
            cells = [_median_cell(self, label, metric) for metric in METRICS]
            lines.append(f"  {label:<6}" + "  ".join(cells))
        return "\n".join(lines)

    def reading(self) -> str:
        """Return what this comparison measured, as lines with its own numbers.

        Raises:
            LabkitError: The runs are not labelled ``unix`` and ``tcp``.
        """
        if set(self.labels) != {"unix", "tcp"}:
            raise LabkitError("a reading needs runs labelled `unix` and `tcp`")
        p50 = {label: self.median(label, "p50") * 1000 for label in ("unix", "tcp")}
        rps = {label: self.median(label, "rps") for label in ("unix", "tcp")}
        widths = [high - low for low, high in (self.spread(x, "p50") for x in ("unix", "tcp"))]
        return "\n".join(
            [
                f"median p50: unix {p50['unix']:.2f} ms, tcp {p50['tcp']:.2f} ms, "
                f"tcp/unix = {self.ratio('p50'):.2f}",
                f"median requests/s: unix {rps['unix']:.0f}, tcp {rps['tcp']:.0f}, "
                f"tcp/unix = {self.ratio('rps'):.2f}",
                f"gap between the two median p50s: {abs(p50['tcp'] - p50['unix']):.2f} ms; "
                f"widest p50 range across one transport's rounds: {max(widths) * 1000:.2f} ms",
            ]
        )

    def plot(self) -> Chart:
        """Draw the latency percentiles and requests per second of each transport."""
        return plot_comparison(self)


def count_time_wait(lab: Lab, port: int = 9000) -> int:
    """Count the TCP connections to or from `port` that are closed and now in TIME_WAIT.

    Each FastCGI request over TCP is a connection of its own, and PHP-FPM closes it after
    the response (Nginx does not ask it to keep it open, see `fastcgi_keep_conn`), so the
    closing side's socket lingers in TIME_WAIT for about a minute; a unix socket has no such
    state. Checked on the lab: 1000 requests over TCP left 1000 sockets on 127.0.0.1:9000 in
    TIME_WAIT. The count is read in PHP-FPM's container, the side that closes first.
    """
    if not _is_int_in(port, 1, 65535):
        raise ConfigError("time-wait count", "port", "1 to 65535", port)
    selector = f"( sport = :{port} or dport = :{port} )"
    output = lab.run("php", ["ss", "-H", "-t", "-a", "-n", "state", "time-wait", selector])
    return len(output.splitlines())


def compare_transports(
    lab: Lab,
    hosts: Mapping[str, str | None] | None = None,
    rounds: int = 4,
    requests: int = 1000,
    concurrency: int = 8,
    warmup: int = 200,
    path: str = LOAD_PATH,
    time_limit: float = 10.0,
) -> Comparison:
    """Load each transport in alternating rounds after a warm-up, and collect the runs.

    Round 1 runs the transports in the given order, round 2 in reverse, and so on, so a
    drift in the machine's load (another lab, a cache warming) falls on both alike. The
    warm-up lets PHP-FPM spawn its workers and is not recorded.

    Args:
        lab: A running lab that serves every transport in `hosts`.
        hosts: The Host header per transport; defaults to `serve_both_transports`' mapping.
        rounds: Measured runs per transport, 1 to `MAX_ROUNDS`.
        requests: Requests per run.
        concurrency: Requests in flight at once.
        warmup: Requests per transport before measuring; 0 skips the warm-up.
        path: The request path.
        time_limit: The time limit of each run, warm-ups included.

    Raises:
        ConfigError: A bound is out of range.
    """
    hosts = dict(TRANSPORTS if hosts is None else hosts)
    if not _is_int_in(rounds, 1, MAX_ROUNDS):
        raise ConfigError("comparison", "rounds", f"1 to {MAX_ROUNDS}", rounds)

    for label, host in hosts.items():
        if warmup:
            run_load(lab, path, host, warmup, concurrency, time_limit, label=f"{label} warm-up")

    runs = []
    for round_number in range(rounds):
        order = list(hosts) if round_number % 2 == 0 else list(reversed(hosts))
        for label in order:
            run = run_load(lab, path, hosts[label], requests, concurrency, time_limit, label=label)
            runs.append(run)
    logger.info("lab %s: compared %s over %d rounds", lab.name, ", ".join(hosts), rounds)
    return Comparison(tuple(runs))


_ROW_HEADER = (
    f"{'run':<8}{'requests':>9}{'errors':>8}{'req/s':>8}{'p50 ms':>9}{'p90 ms':>9}{'p99 ms':>9}"
)


def _row(run: LoadRun) -> str:
    ms = [f"{value * 1000:>9.2f}" for value in (run.p50, run.p90, run.p99)]
    return f"{run.label:<8}{run.count:>9}{run.errors:>8}{run.rps:>8.0f}" + "".join(ms)


def _median_cell(comparison: Comparison, label: str, metric: Metric) -> str:
    scale, digits = (1.0, 0) if metric == "rps" else (1000.0, 2)
    low, high = comparison.spread(label, metric)
    median = comparison.median(label, metric)
    unit = "req/s" if metric == "rps" else "ms"
    return (
        f"{metric} {median * scale:.{digits}f} {unit} "
        f"({low * scale:.{digits}f}-{high * scale:.{digits}f})"
    )


def _ranges_overlap(first: tuple[float, float], second: tuple[float, float]) -> bool:
    return first[0] <= second[1] and second[0] <= first[1]


# The plot


@dataclass(frozen=True, repr=False)
class Chart:
    """A small PNG that Jupyter shows as an image; its text form names what it shows.

    The text form is what a plain console and nbval's comparison see, so it says only what
    does not change from run to run.
    """

    png: bytes
    description: str

    def _repr_png_(self) -> bytes:
        return self.png

    def __repr__(self) -> str:
        return f"<Chart: {self.description}>"


def plot_comparison(comparison: Comparison, dpi: int = 80) -> Chart:
    """Draw latency percentiles (left) and requests per second (right) for each transport.

    Bars are medians over the rounds; the whiskers reach the lowest and highest round.

    Returns:
        The chart as a PNG of 480 by 240 pixels at the default `dpi`.
    """
    # matplotlib comes with the `lab` extra only, so it is imported where the plot is drawn.
    # The figure is built without pyplot: no global figure state, no GUI backend needed.
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, LogLocator, NullLocator

    figure = Figure(figsize=(6, 3), dpi=dpi, layout="constrained")
    latency, throughput = figure.subplots(1, 2, width_ratios=(2, 1))
    labels = comparison.labels
    width = 0.8 / len(labels)
    for index, label in enumerate(labels):
        positions = [m + (index - (len(labels) - 1) / 2) * width for m in range(3)]
        medians, low, high = _bar_values(comparison, label, METRICS[:3], 1000.0)
        latency.bar(positions, medians, width, yerr=(low, high), capsize=3, label=label)
        rps, rps_low, rps_high = _bar_values(comparison, label, ("rps",), 1.0)
        throughput.bar([index], rps, 0.6, yerr=(rps_low, rps_high), capsize=3)
    latency.set_xticks(range(3), ["p50", "p90", "p99"])
    # A log scale keeps the medians readable beside a tail ten times longer.
    latency.set_yscale("log")
    latency.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    latency.yaxis.set_minor_locator(NullLocator())
    latency.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    latency.set_ylabel("latency (ms, log scale)")
    latency.legend(fontsize="small")
    throughput.set_xticks(range(len(labels)), labels)
    throughput.set_ylabel("requests/s")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    rounds = len(comparison.runs_of(labels[0]))
    text = f"latency p50/p90/p99 and requests/s of {', '.join(labels)}, medians of {rounds} rounds"
    return Chart(buffer.getvalue(), text)


def _bar_values(
    comparison: Comparison, label: str, metrics: tuple[Metric, ...], scale: float
) -> tuple[list[float], list[float], list[float]]:
    """Return each metric's median and its distance down and up to the lowest/highest round."""
    medians, below, above = [], [], []
    for metric in metrics:
        median = comparison.median(label, metric)
        low, high = comparison.spread(label, metric)
        medians.append(median * scale)
        below.append((median - low) * scale)
        above.append((high - median) * scale)
    return medians, below, above


# The exercise


def check_broken_tcp(lab: Lab, answer: Mapping[str, str] | None, requests: int = 50) -> str:
    """Judge notebook 6's exercise: one `tcp` pool directive that makes every TCP request fail.

    The answer is applied to the `tcp` pool, a short load runs on both transports, and the
    pool is put back as it was. It is right when every TCP request failed and every unix
    request still succeeded: the error column is what tells a broken run from a fast one.

    Returns:
        A sentence starting with "Right" or "Not yet".
    """
    if answer is None:
        return "Not yet: write your answer into `answer` above, then run this cell again."
    if not isinstance(answer, Mapping) or len(answer) != 1:
        return "Not yet: give exactly one pool directive, e.g. {'listen.allowed_clients': '...'}."
    before: LabConfig = lab.config
    try:
        lab.apply(pool=dict(answer), pool_name=TCP_POOL)
    except LabkitError as error:
        return f"Not yet: the lab refused that answer: {error}"
    try:
        tcp = run_load(lab, host=TCP_SITE, requests=requests, concurrency=2, label="tcp")
        unix = run_load(lab, requests=requests, concurrency=2, label="unix")
    finally:
        lab.apply_config(before)
    return _judge_broken_tcp(tcp, unix)


def _judge_broken_tcp(tcp: LoadRun, unix: LoadRun) -> str:
    if unix.errors:
        return f"Not yet: {unix.errors} of {unix.count} unix requests failed too; change only TCP."
    if tcp.errors < tcp.count:
        return f"Not yet: {tcp.count - tcp.errors} of {tcp.count} TCP requests still succeeded."
    kinds = ", ".join(f"{kind} x{count}" for kind, count in tcp.failures)
    return (
        f"Right: all {tcp.count} TCP requests failed ({kinds}) and all {unix.count} unix "
        "requests succeeded, so the error column, not the latency, tells you the run is broken."
    )
