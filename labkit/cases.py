"""Broken setups from real reports, as the troubleshooting lesson serves them.

Each case is data: how to break a lab, the question a learner answers, a hint, and what a
right answer must achieve on the live lab. The cases follow `shared/field-cases` (R01, R05,
R09, R14, R18, R19); the lab, not the report, decides what each one looks like.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from labkit import course
from labkit.config import DEFAULT_SOCKET, LabConfig, Topology, UnixSocket
from labkit.errors import LabkitError
from labkit.lab import Lab

# A slow request reaches its worker within milliseconds; a second leaves a wide margin.
SETTLE_SECONDS = 1.0


@dataclass(frozen=True)
class Case:
    """One broken setup and what fixes it."""

    key: str
    title: str
    topology: Topology
    pool: Mapping[str, str | None]
    nginx: Mapping[str, str | None]
    question: str
    hint: str
    busy_workers: int = 0
    expected_secure: bool = True
    extra: Mapping[str, str] = field(default_factory=dict)


CASES: dict[str, Case] = {
    case.key: case
    for case in (
        Case(
            "R01",
            "After a security update, every PHP page is a 502",
            "pod",
            {"listen.owner": None, "listen.group": None},
            {},
            "The pool file no longer sets listen.owner and listen.group. Which pool settings "
            "bring Nginx back without opening the socket to every account?",
            "Look at the socket's owner in the summary: who creates the socket when no owner "
            "is named?",
        ),
        Case(
            "R05",
            "A new PHP version, and the site is a 502",
            "pod",
            {},
            {"fastcgi_pass": "unix:/run/php/php7.4-fpm.sock"},
            "Nginx still names the old version's socket. Which Nginx setting fixes it?",
            "Compare the path in Nginx's error line with `ls /run/php`.",
        ),
        Case(
            "R09",
            "Nginx in its own container passes to 127.0.0.1:9000",
            "network",
            {"listen": "9000"},
            {"fastcgi_pass": "127.0.0.1:9000"},
            "PHP-FPM listens on port 9000 in its own container. Which Nginx setting reaches it?",
            "Inside Nginx's container, 127.0.0.1 is Nginx's container. PHP-FPM's container is "
            "called `php` on the lab network.",
        ),
        Case(
            "R14",
            "PHP-FPM only allows 127.0.0.1, and Nginx is elsewhere",
            "network",
            {"listen": "9000", "listen.allowed_clients": "127.0.0.1"},
            {"fastcgi_pass": "php:9000"},
            "Which pool setting lets Nginx in and nobody else?",
            "PHP-FPM's log line names the address it dropped.",
        ),
        Case(
            "R19",
            "The pool moved to a socket, Nginx still dials TCP",
            "pod",
            {"listen": DEFAULT_SOCKET},
            {"fastcgi_pass": "127.0.0.1:9000"},
            "Pick one transport on both sides. Which Nginx setting matches the pool?",
            "Nginx writes a socket as `unix:/path`; the pool writes the path alone.",
        ),
        Case(
            "R18",
            "Every worker is busy: the page hangs, then 504",
            "pod",
            {
                "pm": "dynamic",
                "pm.max_children": "1",
                "pm.start_servers": "1",
                "pm.min_spare_servers": "1",
                "pm.max_spare_servers": "1",
            },
            {"fastcgi_read_timeout": "3"},
            "One slow request holds the only worker. Which pool setting lets a second request "
            "through while the first is still running?",
            "PHP-FPM's own log says which limit it reached.",
            busy_workers=1,
        ),
    )
}


def break_lab(lab: Lab, key: str) -> Case:
    """Put a lab into a case's broken state, starting from Debian's defaults.

    Raises:
        LabkitError: Unknown case, or the lab's topology is not the case's.
    """
    case = _case(key)
    if lab.topology != case.topology:
        raise LabkitError(f"case {key} needs a {case.topology} lab, this one is {lab.topology}")
    lab.apply_config(LabConfig().with_changes(dict(case.pool), dict(case.nginx)))
    return case


def occupy_workers(lab: Lab, count: int, seconds: float = 8.0) -> list[threading.Thread]:
    """Hold `count` PHP workers busy with slow requests, in the background.

    Returns once the slow requests have had a second to reach their workers, so that a
    request sent next finds them busy.
    """
    threads = [
        threading.Thread(target=lab.request, args=(f"/sleep.php?s={seconds}",), daemon=True)
        for _ in range(count)
    ]
    for thread in threads:
        thread.start()
    if threads:
        time.sleep(SETTLE_SECONDS)
    return threads


def check_case(
    lab: Lab,
    key: str,
    pool: Mapping[str, str | None] | None = None,
    nginx: Mapping[str, str | None] | None = None,
) -> str:
    """Apply a learner's fix to a broken lab and judge it on the live result.

    A fix is right when the next request gets 200 (with the case's slow requests still
    running, where it has them), without opening the socket to every account and without
    running Nginx as another account.

    Returns:
        A sentence starting with "Right" or "Not yet".
    """
    case = _case(key)
    if pool is None and nginx is None:
        return "Not yet: write your fix into `fix` above, then run this cell again."
    try:
        break_lab(lab, key)
        lab.apply(pool=pool, nginx=nginx)
    except LabkitError as error:
        return f"Not yet: the lab refused that change: {error}"
    busy = occupy_workers(lab, case.busy_workers)
    outcome = lab.request("/whoami.php")
    for thread in busy:
        thread.join(timeout=30)
    if outcome.status != 200:
        return f"Not yet: the lab answers {outcome.status} ({outcome.cause.value})."
    problem = _opened_door(lab, key)
    if problem:
        return f"Not yet: it works, but {problem}"
    return f"Right: {case.key} answers 200 again, and no other door opened."


def _opened_door(lab: Lab, key: str) -> str | None:
    """Return what a working fix broke elsewhere: who else got in, or what was traded away."""
    pool = lab.config.pool("www")
    if lab.config.nginx.user != "www-data":
        return "Nginx no longer runs as plain www-data, so its workers hold other rights."
    upstream = lab.config.nginx.upstream
    if isinstance(upstream, UnixSocket):
        if course.who_can_connect(lab, ["mallory"], socket=upstream.path)["mallory"]:
            return "mallory, an account in no web group, can run PHP through the socket."
    elif lab.topology == "pod":
        return "PHP-FPM listens on TCP now, where every local account can reach it."
    if key == "R14" and course.remote_runs_php(lab):
        return "the remote host can still run PHP."
    if key == "R18" and (
        pool.get("request_terminate_timeout") or lab.config.nginx.fastcgi_read_timeout != "3"
    ):
        return "that cuts the slow request short or waits longer; let a second worker run."
    return None


def _case(key: str) -> Case:
    if key not in CASES:
        raise LabkitError(f"no case {key!r}; cases: {', '.join(CASES)}")
    return CASES[key]
