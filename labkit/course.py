"""Check cells for the notebooks' exercises: apply the learner's answer and judge it live."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from labkit.config import DEFAULT_SOCKET, LabConfig
from labkit.errors import LabkitError
from labkit.lab import Lab

NO_ANSWER = "Not yet: write your answer into `answer` above, then run this cell again."


def _refusal(*steps: Callable[[], object]) -> str | None:
    """Run the steps that set up an exercise and apply an answer; say so if the lab refused."""
    try:
        for step in steps:
            step()
    except LabkitError as error:
        return f"Not yet: the lab refused that answer: {error}"
    return None


def check_socket_fix(lab: Lab, answer: Mapping[str, str] | None) -> str:
    """Judge notebook 1's exercise: one pool directive that lets Nginx in, and no one else.

    The lab first returns to the exercise's starting point (socket `ubuntu:ubuntu 0660`), so
    an earlier wrong answer does not linger; then the answer is applied. It is right when
    the next request gets 200, Nginx still runs as `www-data`, and `mallory` cannot connect.

    Returns:
        A sentence starting with "Right" or "Not yet".
    """
    if answer is None:
        return NO_ANSWER
    if not isinstance(answer, Mapping) or len(answer) != 1:
        return "Not yet: give exactly one pool directive, e.g. {'listen.owner': 'www-data'}."
    start = LabConfig().with_changes({"listen.owner": "ubuntu", "listen.group": "ubuntu"})
    refused = _refusal(lambda: lab.apply_config(start), lambda: lab.apply(pool=dict(answer)))
    if refused:
        return refused
    outcome = lab.request("/whoami.php")
    if outcome.status != 200:
        return f"Not yet: Nginx still answers {outcome.status} ({outcome.cause.value})."
    if who_can_connect(lab, ["mallory"])["mallory"]:
        return "Not yet: Nginx gets in, but so does mallory, an account in no web group."
    socket = outcome.socket
    shown = f"{socket.permissions} {socket.owner}:{socket.group}" if socket else "a TCP port"
    return f"Right: 200, mallory is refused, and the socket is {shown}."


FASTCGI_GET = ["env", "SCRIPT_FILENAME=/var/www/html/whoami.php", "REQUEST_METHOD=GET", "cgi-fcgi"]


def permission_table(lab: Lab, rows: Sequence[tuple[str, str, str]]) -> str:
    """Apply each (listen.owner, listen.group, listen.mode) in turn and tabulate what Nginx got.

    Returns:
        One line per row: the socket as `ls -l` shows it, the status and the cause.
    """
    lines = [f"{'socket':32} {'status':6} cause"]
    for owner, group, mode in rows:
        lab.apply(pool={"listen.owner": owner, "listen.group": group, "listen.mode": mode})
        outcome = lab.request("/whoami.php")
        listing = outcome.socket.listing() if outcome.socket else "-"
        lines.append(
            f"{' '.join(listing.split()[:3]):32} {outcome.status:<6} {outcome.cause.value}"
        )
    return "\n".join(lines)


def who_can_connect(
    lab: Lab, accounts: Sequence[str], socket: str = DEFAULT_SOCKET
) -> dict[str, bool]:
    """Try a FastCGI request on the socket directly, as each account, from PHP-FPM's container.

    The accounts have the same ids in both images, so the answer is the same from Nginx's.
    """
    connect = [*FASTCGI_GET, "-bind", "-connect", socket]
    results = {}
    for account in accounts:
        try:
            results[account] = "user=" in lab.run("php", connect, user=account)
        except LabkitError:
            results[account] = False
    return results


def format_access(results: Mapping[str, bool]) -> str:
    """Return one line per account: whether it could run PHP through the socket."""
    return "\n".join(
        f"{account:10} {'runs PHP as the pool user' if ok else 'refused'}"
        for account, ok in results.items()
    )


def check_group_exercise(lab: Lab, answer: Mapping[str, str] | None) -> str:
    """Judge notebook 2's exercise: Nginx and `ubuntu` get in, `mallory` does not.

    Returns:
        A sentence starting with "Right" or "Not yet".
    """
    if answer is None:
        return NO_ANSWER
    refused = _refusal(lambda: lab.apply_config(LabConfig()), lambda: lab.apply(pool=dict(answer)))
    if refused:
        return refused
    status = lab.request("/whoami.php").status
    access = who_can_connect(lab, ["ubuntu", "mallory"])
    if status != 200:
        return f"Not yet: Nginx gets {status}; www-data must still get in."
    if not access["ubuntu"]:
        return (
            "Not yet: ubuntu cannot connect; it should, as the socket's owner or through its group."
        )
    if access["mallory"]:
        return "Not yet: mallory can connect too; 'other' must get nothing."
    return "Right: Nginx and ubuntu connect, mallory is refused."


def log_lines(lab: Lab, role: str, text: str, lines: int = 200) -> str:
    """Return the distinct recent log lines of a container that contain `text`, in order.

    PHP-FPM prints its start-up messages twice in a container (to stderr, and to its
    error_log, which is stderr as well); one copy is enough to read.
    """
    found = [line for line in lab.logs(role, lines).splitlines() if text in line]
    return "\n".join(dict.fromkeys(found))


def remote_runs_php(lab: Lab, port: int = 9000) -> bool:
    """Tell whether a third host on the lab network can run PHP on PHP-FPM's TCP port."""
    lab.start_remote()
    try:
        lab.run("remote", [*FASTCGI_GET, "-bind", "-connect", f"{lab.address('php')}:{port}"])
    except LabkitError:
        return False
    return True


def check_allowed_clients(lab: Lab, answer: str | None) -> str:
    """Judge notebook 3's exercise: Nginx gets through, the remote host is dropped.

    Returns:
        A sentence starting with "Right" or "Not yet".
    """
    if answer is None:
        return NO_ANSWER
    refused = _refusal(
        lambda: lab.apply_config(
            LabConfig().with_changes({"listen": "9000"}, {"fastcgi_pass": "php:9000"})
        ),
        lambda: lab.apply(pool={"listen.allowed_clients": answer}),
    )
    if refused:
        return refused
    outcome = lab.request("/whoami.php")
    if outcome.status != 200:
        return f"Not yet: Nginx gets {outcome.status} ({outcome.cause.value})."
    if remote_runs_php(lab):
        return "Not yet: the remote host can still run PHP."
    return "Right: Nginx's address is allowed, the remote host's connection is dropped."


def site_pool(account: str) -> dict[str, str]:
    """Return the directives of a per-site pool: its own account, socket and file."""
    return {
        "user": account,
        "group": account,
        "listen": f"/run/php/{account}.sock",
        "listen.owner": account,
        "listen.group": "www-data",
        "listen.mode": "0660",
        "pm": "static",
        "pm.max_children": "1",
    }


def check_site_exercise(lab: Lab, answer: str | None) -> str:
    """Judge notebook 4's exercise: alice.test must run as alice, in pool alice.

    Returns:
        A sentence starting with "Right" or "Not yet".
    """
    if answer is None:
        return NO_ANSWER
    refused = _refusal(lambda: lab.set_site("alice.test", answer))
    if refused:
        return refused
    outcome = lab.request("/whoami.php", host="alice.test")
    if outcome.status != 200:
        return f"Not yet: alice.test answers {outcome.status} ({outcome.cause.value})."
    if "user=alice" not in outcome.body or "pool=alice" not in outcome.body:
        ran_as = outcome.body.splitlines()[0] if outcome.body else "nothing"
        return f"Not yet: alice.test still runs with {ran_as}."
    return "Right: alice.test runs as alice, in pool alice."


def nginx_processes(lab: Lab) -> str:
    """Return `ps` of Nginx's master and the workers that accept requests, with their accounts.

    Right after a reload, an old worker can still be finishing its last request under the
    old account ("worker process is shutting down"); it no longer takes new ones, so it is
    left out.
    """
    listing = lab.run("nginx", ["ps", "-o", "user,group,args", "-C", "nginx"])
    return "\n".join(line for line in listing.splitlines() if "shutting down" not in line)
