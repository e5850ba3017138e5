"""The exercise checks: right answers pass, and wrong or door-opening answers do not."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from labkit import Lab, cases, course

pytestmark = pytest.mark.engine

MakeLab = Callable[..., Lab]


@pytest.mark.parametrize(
    ("answer", "verdict"),
    [
        ({"listen.group": "www-data"}, "Right"),
        ({"listen.acl_users": "www-data,mallory"}, "Not yet: Nginx gets in, but so does mallory"),
        ({"listen.mode": "0666"}, "Not yet: Nginx gets in, but so does mallory"),
        (None, "Not yet: write your answer"),
    ],
    ids=["group", "acl-with-mallory", "mode-0666", "no-answer"],
)
def test_socket_fix_check_judges_the_answer(
    make_lab: MakeLab, answer: dict[str, str] | None, verdict: str
) -> None:
    assert course.check_socket_fix(make_lab("pod"), answer).startswith(verdict)


@pytest.mark.parametrize(
    ("key", "topology", "pool", "nginx", "verdict"),
    [
        ("R01", "pod", {"listen.owner": "www-data", "listen.group": "www-data"}, None, "Right"),
        ("R01", "pod", {"listen.owner": "mallory", "listen.group": "www-data"}, None, "mallory"),
        ("R01", "pod", None, {"user": "www-data root"}, "Nginx no longer runs"),
        ("R19", "pod", {"listen": "127.0.0.1:9000"}, None, "listens on TCP"),
        ("R18", "pod", {"pm.max_children": "2"}, None, "Right"),
        ("R18", "pod", {"request_terminate_timeout": "2"}, None, "cuts the slow request"),
    ],
    ids=["r01-right", "r01-mallory-owns", "r01-root-group", "r19-tcp", "r18-right", "r18-kill"],
)
def test_case_check_judges_the_fix(
    make_lab: MakeLab,
    key: str,
    topology: str,
    pool: dict[str, str] | None,
    nginx: dict[str, str] | None,
    verdict: str,
) -> None:
    assert verdict in cases.check_case(make_lab(topology), key, pool=pool, nginx=nginx)


def test_r14_check_refuses_a_list_that_lets_the_remote_host_in(make_lab: MakeLab) -> None:
    lab = make_lab("network")
    remote = lab.start_remote()
    nginx = lab.address("nginx")

    both = cases.check_case(lab, "R14", pool={"listen.allowed_clients": f"{nginx},{remote}"})
    only_nginx = cases.check_case(lab, "R14", pool={"listen.allowed_clients": str(nginx)})

    assert "the remote host can still run PHP" in both
    assert only_nginx.startswith("Right")
