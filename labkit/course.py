"""Check cells for the notebooks' exercises: apply the learner's answer and judge it live."""

from __future__ import annotations

from collections.abc import Mapping

from labkit.errors import LabkitError
from labkit.lab import Lab


def check_socket_fix(lab: Lab, answer: Mapping[str, str]) -> str:
    """Judge notebook 1's exercise: one pool directive that lets Nginx in, and no one else.

    The answer is applied to the running lab; it is right when the next request gets 200,
    Nginx still runs as `www-data`, and the socket gives other accounts nothing.

    Returns:
        A sentence starting with "Right" or "Not yet".
    """
    if not isinstance(answer, Mapping) or len(answer) != 1:
        return "Not yet: give exactly one pool directive, e.g. {'listen.owner': 'www-data'}."
    try:
        lab.apply(pool=dict(answer))
    except LabkitError as error:
        return f"Not yet: the lab refused that answer: {error}"
    outcome = lab.request("/whoami.php")
    socket = outcome.socket
    if outcome.status != 200:
        return f"Not yet: Nginx still answers {outcome.status} ({outcome.cause.value})."
    if lab.config.nginx.user.split()[0] != "www-data":
        return "Not yet: Nginx no longer runs as www-data; that is fix 1, with its cost."
    if socket is None or socket.mode[-1] != "0":
        return "Not yet: the socket lets every account in; that is fix 2, with its cost."
    return (
        f"Right: 200, and the socket is {socket.permissions} {socket.owner}:{socket.group}, "
        "so Nginx gets in through the socket's group or owner and other accounts do not."
    )
