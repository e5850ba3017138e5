"""The command line refuses bad input with exit status 2 before it contacts any engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from labkit.cli import main


@pytest.fixture(autouse=True)
def unreachable_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Point the docker SDK at a socket that does not exist.

    Reaching the engine then fails with exit status 1, so a test passes only when the input
    was refused before that, and no test here can touch a real engine.
    """
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        pytest.param(["apply", "--pool", "listen.mode=9999"], ["listen.mode", "9999"], id="mode"),
        pytest.param(
            ["apply", "--pool", "listen=unix:/run/php/php8.2-fpm.sock"],
            ["`listen`", "unix:/run/php/php8.2-fpm.sock"],
            id="listen-with-unix-prefix",
        ),
        pytest.param(
            ["apply", "--pool", "listen.allowed_clients=172.19.0.0/16"],
            ["listen.allowed_clients", "172.19.0.0/16"],
            id="allowed-clients-cidr",
        ),
        pytest.param(
            ["apply", "--pool", "listen.mode=0660", "--pool", "listen.owner=eve"],
            ["listen.owner", "eve"],
            id="second-pool-value-bad",
        ),
        pytest.param(
            ["apply", "--pool", "listen mode=0660"], ["listen mode"], id="directive-name-space"
        ),
        pytest.param(["apply", "--pool", "badpair"], ["--pool", "badpair"], id="pool-no-equals"),
        pytest.param(["apply", "--pool", "=0660"], ["--pool", "=0660"], id="pool-no-key"),
        pytest.param(["apply", "--nginx", "badpair"], ["--nginx", "badpair"], id="nginx-no-equals"),
        pytest.param(["apply"], ["--pool", "--nginx"], id="apply-nothing"),
        pytest.param(["apply", "--nginx", "user=eve"], ["user", "eve"], id="nginx-user"),
        pytest.param(
            ["apply", "--nginx", "fastcgi_pass=/run/php/php8.2-fpm.sock"],
            ["fastcgi_pass", "/run/php/php8.2-fpm.sock"],
            id="fastcgi-pass-without-unix-prefix",
        ),
        pytest.param(
            ["apply", "--nginx", "fastcgi_read_timeout=60s"],
            ["fastcgi_read_timeout", "60s"],
            id="read-timeout-with-unit",
        ),
        pytest.param(["apply", "--nginx", "colour=blue"], ["colour"], id="nginx-unknown-key"),
        pytest.param(
            ["apply", "--lab", "Bad Name", "--pool", "listen.mode=0660"],
            ["name", "Bad Name"],
            id="apply-bad-lab-name",
        ),
        pytest.param(["request", "--lab", "Bad Name"], ["name", "Bad Name"], id="request-lab"),
        pytest.param(["status", "--lab", "Bad Name"], ["name", "Bad Name"], id="status-lab"),
        pytest.param(["up", "--lab", "Bad Name"], ["name", "Bad Name"], id="up-lab"),
        pytest.param(["down", "--lab", "Bad Name"], ["name", "Bad Name"], id="down-lab"),
    ],
)
def test_main_refuses_bad_input_with_status_2_before_the_engine(
    argv: list[str], named: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(argv)

    out, err = capsys.readouterr()
    assert status == 2, err
    assert out == ""
    assert err.startswith("labkit: refused: ")
    for part in named:
        assert part in err


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        pytest.param(["up", "--topology", "mesh"], ["--topology", "mesh"], id="unknown-topology"),
        pytest.param(["launch"], ["launch"], id="unknown-command"),
        pytest.param([], ["command"], id="no-command"),
    ],
)
def test_main_exits_2_when_arguments_do_not_parse(
    argv: list[str], named: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        main(argv)

    err = capsys.readouterr().err
    assert caught.value.code == 2
    for part in named:
        assert part in err
