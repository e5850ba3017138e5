"""labkit doctor without an engine: reading, the permission and address rules, fixes, the CLI.

Every rule asserted here is also run against the live lab in tests/test_doctor_live.py.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from doctor_support import (
    GROUP,
    PASSWD,
    SITE,
    accounts,
    debian_files,
    facts,
    pool_text,
    run_doctor,
    write_files,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from labkit.cli import main as cli_main
from labkit.doctor import examine
from labkit.doctor_rules import FileMode, Worker, may_access, octal
from labkit.errors import DoctorInputError

SOCKET = "/run/php/php8.2-fpm.sock"


def only_cause(report_causes: list[str]) -> str:
    assert len(report_causes) == 1, report_causes
    return report_causes[0]


def predict(
    tmp_path: Path, fastcgi_pass: str = f"unix:{SOCKET}", user: str = "www-data", **pool: str | None
) -> str:
    report = run_doctor(tmp_path, debian_files(fastcgi_pass, {"www": pool_text(**pool)}, user))
    return only_cause(report.causes())


# The kernel's permission rule


WWW = Worker("www-data", 33, 33, frozenset({33}))


@pytest.mark.parametrize(
    ("file", "allowed"),
    [
        pytest.param(FileMode(33, 33, 0o660), True, id="owner-rw"),
        pytest.param(FileMode(33, 1000, 0o066), False, id="owner-bits-only-apply-to-owner"),
        pytest.param(FileMode(1000, 33, 0o606), False, id="group-bits-only-apply-to-members"),
        pytest.param(FileMode(1000, 1000, 0o606), True, id="other-bits-for-strangers"),
        pytest.param(FileMode(33, 33, 0o200), True, id="write-alone-is-enough"),
        pytest.param(FileMode(33, 33, 0o440), False, id="read-is-not-enough"),
        pytest.param(FileMode(0, 0, 0o660, acl_users=(33,)), True, id="acl-user"),
        pytest.param(FileMode(0, 0, 0o660, acl_groups=(33,)), True, id="acl-group"),
        pytest.param(FileMode(0, 0, 0o660, acl_users=(1001,)), False, id="acl-other-user"),
        pytest.param(FileMode(0, 0, 0o666, acl_users=(1001,)), True, id="acl-other-user-mode-0666"),
    ],
)
def test_write_permission_follows_the_kernel_rule(file: FileMode, allowed: bool) -> None:
    assert may_access(WWW, file, 2) is allowed


def test_root_worker_passes_every_check() -> None:
    root = Worker("root", 0, 0, frozenset({0}))

    assert may_access(root, FileMode(1000, 1000, 0o000), 2)


def test_listen_mode_is_read_like_strtoul_base_8() -> None:
    assert [octal("0660"), octal("666"), octal("0689"), octal("x"), octal(None)] == [
        0o660, 0o666, 0o6, 0, 0o660,
    ]  # fmt: skip


def test_initgroups_adds_every_group_that_lists_the_user() -> None:
    group = GROUP.replace("alice:x:1001:", "alice:x:1001:www-data")

    found = accounts(PASSWD, group).initgroups("www-data", 33)

    assert found == {33, 1001}


# Pool files read the way PHP-FPM reads them (F1, F2, F5, F6, F8)


@pytest.mark.parametrize(
    ("pool", "cause"),
    [
        pytest.param({}, "ok", id="debian-default"),
        pytest.param(
            {"listen__owner": "ubuntu", "listen__group": "ubuntu"},
            "socket-permission-denied",
            id="article-ubuntu",
        ),
        pytest.param(
            {"listen__owner": "ubuntu", "listen__group": "ubuntu", "listen__mode": "0666"},
            "ok",
            id="mode-0666",
        ),
        pytest.param(
            {"listen__owner": None, "listen__group": None},
            "socket-permission-denied",
            id="F5-unset-is-root",
        ),
        pytest.param({"listen__owner": "www-data", "listen__group": None}, "ok", id="owner-alone"),
        pytest.param(
            {"listen__owner": "alice", "listen__group": None},
            "socket-permission-denied",
            id="owner-alone-gives-owners-group",
        ),
        pytest.param({"listen__owner": None, "listen__group": "www-data"}, "ok", id="group-alone"),
        pytest.param(
            {"listen__acl_users": "www-data", "listen__owner": "ubuntu", "listen__group": "ubuntu"},
            "ok",
            id="F6-acl-overrides-owner",
        ),
        pytest.param(
            {"listen__acl_users": "alice"}, "socket-permission-denied", id="F6-acl-drops-owner"
        ),
        pytest.param(
            {"listen__acl_groups": "www-data", "listen__owner": None, "listen__group": None},
            "ok",
            id="acl-group",
        ),
    ],
)
def test_socket_ownership_prediction(
    tmp_path: Path, pool: dict[str, str | None], cause: str
) -> None:
    assert predict(tmp_path, **pool) == cause


def test_directive_names_are_case_insensitive_F1(tmp_path: Path) -> None:
    text = (
        pool_text()
        .replace("listen = ", "Listen = ")
        .replace("listen.owner = www-data", "LISTEN.OWNER = ubuntu")
    )
    text = text.replace("listen.group = www-data", "Listen.Group = ubuntu")

    report = run_doctor(tmp_path, debian_files(pools={"www": text}))

    assert report.causes() == ["socket-permission-denied"]
    assert report.rejections == ()


def test_later_file_wins_in_sorted_include_order_F2(tmp_path: Path) -> None:
    pools = {"www": pool_text(), "zz-docker": "[www]\nlisten = 9000\n"}

    report = run_doctor(tmp_path, debian_files(pools=pools))

    assert report.causes() == ["socket-missing"]
    assert [p.listen for p in report.pools] == ["9000"]


def test_pool_section_names_match_case_insensitively(tmp_path: Path) -> None:
    pools = {"www": pool_text(), "zz": "[WWW]\nlisten = /run/php/other.sock\n"}

    report = run_doctor(tmp_path, debian_files(pools=pools))

    assert [p.name for p in report.pools] == ["www"]
    assert report.causes() == ["socket-missing"]


def test_pool_variable_is_replaced_by_the_pool_name(tmp_path: Path) -> None:
    pools = {"site": pool_text("site", listen="/run/php/$pool.sock", listen__owner="$pool")}
    files = debian_files("unix:/run/php/site.sock", pools)
    the_facts = facts(nginx_accounts=accounts(PASSWD + "site:x:1010:33::/:/bin/false\n"))

    report = run_doctor(tmp_path, files, the_facts)

    assert [p.listen for p in report.pools] == ["/run/php/site.sock"]
    assert report.causes() == ["ok"]


def test_relative_include_resolves_against_the_prefix_F8(tmp_path: Path) -> None:
    files = debian_files()
    files["/etc/php/8.2/fpm/php-fpm.conf"] = "[global]\ninclude=pool.d/*.conf\n"

    report = run_doctor(tmp_path, files)

    assert report.causes() == ["config-rejected"]
    assert any("include /usr/pool.d/*.conf lies outside" in note for note in report.notes)
    assert any("No pool defined" in r.reason for r in report.rejections)


def test_glob_matching_nothing_is_only_a_warning_F8(tmp_path: Path) -> None:
    files = debian_files()
    files["/etc/php/8.2/fpm/php-fpm.conf"] = FPM_WITH_EXTRA

    report = run_doctor(tmp_path, files)

    assert report.causes() == ["ok"]
    assert any("Nothing matches the include pattern" in n for n in report.notes)


FPM_WITH_EXTRA = (
    "[global]\ninclude=/etc/php/8.2/fpm/pool.d/*.conf\ninclude=/etc/php/8.2/fpm/pool.d/*.extra\n"
)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        pytest.param("Listen 127.0.0.1:9000", "value is NULL", id="article-no-equals"),
        pytest.param("# Listen on localhost port 9000", "value is NULL", id="hash-comment"),
        pytest.param("listen.owner = a=b", "unexpected '='", id="equals-in-value"),
        pytest.param("Include = /tmp/x", "unknown entry 'Include'", id="include-is-case-sensitive"),
        pytest.param("[www", "expecting ']'", id="unclosed-section"),
        pytest.param("pm.max_children = many", "not a valid number", id="bad-number"),
    ],
)
def test_lines_php_fpm_refuses_are_config_rejected(tmp_path: Path, line: str, reason: str) -> None:
    text = pool_text() + line + "\n"

    report = run_doctor(tmp_path, debian_files(pools={"www": text}))

    assert report.causes() == ["config-rejected"]
    assert any(reason in r.reason and r.origin is not None for r in report.rejections)


def test_nginx_prefix_pasted_into_listen_fails_at_start_F3(tmp_path: Path) -> None:
    report = run_doctor(
        tmp_path, debian_files(pools={"www": pool_text(listen="unix:/run/php/php8.2-fpm.sock")})
    )

    assert report.causes() == ["config-rejected"]
    assert [r.stage for r in report.rejections] == ["start"]
    assert "invalid port value '/run/php/php8.2-fpm.sock'" in report.rejections[0].reason


def test_duplicate_listen_in_one_master_is_refused_F4(tmp_path: Path) -> None:
    pools = {
        "a": pool_text("a", listen="127.0.0.1:9000"),
        "b": pool_text("b", listen="127.0.0.1:9000"),
    }

    report = run_doctor(tmp_path, debian_files("127.0.0.1:9000", pools))

    assert report.causes() == ["config-rejected"]
    assert "[pool b] unable to set listen address as it's already used in another pool 'a'" in [
        r.reason for r in report.rejections
    ]


# Nginx


def test_server_block_inside_server_is_refused_with_its_line(tmp_path: Path) -> None:
    site = SITE.format(fastcgi_pass=f"unix:{SOCKET}").replace(
        "location ~ \\.php$", "server ~ \\.php$"
    )

    report = run_doctor(tmp_path, debian_files(site=site))

    assert report.causes() == ["config-rejected"]
    rejection = report.findings[0].rejections[0]
    assert rejection.reason == '"server" directive is not allowed here'
    assert str(rejection.origin) == "/etc/nginx/sites-enabled/default:11"
    assert report.findings[0].fix is not None
    assert "location ~ \\.php$ {" in report.findings[0].fix.edits[0].new


def test_fastcgi_pass_through_an_upstream_block(tmp_path: Path) -> None:
    site = "upstream php {\n    server unix:/run/php/php8.2-fpm.sock;\n}\n" + SITE.format(
        fastcgi_pass="php"
    )

    report = run_doctor(tmp_path, debian_files(site=site))

    assert report.causes() == ["ok"]
    assert report.findings[0].pool == "www"


def test_upstream_name_with_a_port_is_refused(tmp_path: Path) -> None:
    site = "upstream php {\n    server 127.0.0.1:9000;\n}\n" + SITE.format(fastcgi_pass="php:9000")

    report = run_doctor(tmp_path, debian_files(site=site))

    assert [r.reason for r in report.rejections] == ['upstream "php" may not have port 9000']


@pytest.mark.parametrize(
    ("user", "pool", "cause"),
    [
        pytest.param("alice", {}, "socket-permission-denied", id="other-user"),
        pytest.param("alice www-data", {}, "ok", id="named-group"),
        pytest.param("root", {"listen__mode": "0600", "listen__owner": "ubuntu"}, "ok", id="root"),
        pytest.param("nosuch", {}, "config-rejected", id="unknown-user"),
    ],
)
def test_nginx_user_and_group(tmp_path: Path, user: str, pool: dict[str, str], cause: str) -> None:
    assert predict(tmp_path, user=user, **pool) == cause


def test_nginx_without_user_runs_as_nobody(tmp_path: Path) -> None:
    files = debian_files()
    files["/etc/nginx/nginx.conf"] = files["/etc/nginx/nginx.conf"].replace("user www-data;\n", "")

    report = run_doctor(tmp_path, files)

    assert report.causes() == ["socket-permission-denied"]
    assert report.worker.startswith("nobody")


def test_commented_fastcgi_pass_is_predicted_as_if_enabled(tmp_path: Path) -> None:
    site = SITE.format(fastcgi_pass=f"unix:{SOCKET}").replace(
        "fastcgi_pass", "#fastcgi_pass unix:/run/php/php7.4-fpm.sock;\n        #fastcgi_pass"
    )

    report = run_doctor(tmp_path, debian_files(site=site))

    assert report.findings == ()
    assert any("would give socket-missing" in note for note in report.notes)
    assert any("would give ok" in note for note in report.notes)


def test_socket_path_mismatch_is_socket_missing_R05(tmp_path: Path) -> None:
    assert predict(tmp_path, "unix:/run/php/php7.4-fpm.sock") == "socket-missing"


def test_var_run_is_the_same_directory_as_run(tmp_path: Path) -> None:
    assert predict(tmp_path, "unix:/var/run/php/php8.2-fpm.sock") == "ok"


# TCP and the source address


@pytest.mark.parametrize(
    ("topology", "listen", "fastcgi_pass", "clients", "cause"),
    [
        pytest.param(
            "pod", "127.0.0.1:9000", "127.0.0.1:9000", "127.0.0.1", "ok", id="pod-loopback"
        ),
        pytest.param(
            "pod", "9000", "127.0.0.1:9000", "10.1.2.3", "client-not-allowed", id="pod-not-listed"
        ),
        pytest.param("pod", "[::]:9000", "127.0.0.1:9000", "127.0.0.1", "ok", id="pod-dual-stack"),
        pytest.param(
            "pod", "9000", "127.0.0.1:9000", "::1", "client-not-allowed", id="pod-v4-is-not-v6"
        ),
        pytest.param(
            "pod", "127.0.0.1:9000", "127.0.0.1:9001", None, "connection-refused", id="pod-port"
        ),
        pytest.param(
            "pod",
            "9000",
            "192.168.5.2:9000",
            "127.0.0.1",
            "client-not-allowed",
            id="pod-own-address",
        ),
        pytest.param(
            "network", "9000", "127.0.0.1:9000", None, "connection-refused", id="R09-loopback"
        ),
        pytest.param(
            "network",
            "127.0.0.1:9000",
            "php:9000",
            None,
            "connection-refused",
            id="net-loopback-listen",
        ),
        pytest.param(
            "network",
            "9000",
            "php:9000",
            "127.0.0.1",
            "client-not-allowed",
            id="net-loopback-client",
        ),
        pytest.param("network", "9000", "php:9000", "172.18.0.2", "ok", id="net-nginx-listed"),
        pytest.param(
            "network",
            "9000",
            "php:9000",
            "127.0.0.1, 172.18.0.2",
            "client-not-allowed",
            id="net-space-in-list",
        ),
        pytest.param("network", "9000", "php:9000", "", "client-not-allowed", id="net-empty-list"),
    ],
)
def test_tcp_prediction(
    tmp_path: Path, topology: str, listen: str, fastcgi_pass: str, clients: str | None, cause: str
) -> None:
    the_facts = facts(
        topology=topology,
        hosts={"localhost": ("127.0.0.1",), "php": ("172.18.0.3",)},
        fpm_addresses=("172.18.0.3",) if topology == "network" else ("192.168.5.2",),
        nginx_addresses=("172.18.0.2",) if topology == "network" else ("192.168.5.2",),
        ipv6="off",
    )
    pool = pool_text(listen=listen, listen__allowed_clients=clients)

    report = run_doctor(tmp_path, debian_files(fastcgi_pass, {"www": pool}), the_facts)

    assert report.causes() == [cause]


# Fixes are checked by reading the changed configuration again


@pytest.mark.parametrize(
    ("fastcgi_pass", "pool"),
    [
        pytest.param(
            f"unix:{SOCKET}",
            {"listen__owner": "ubuntu", "listen__group": "ubuntu"},
            id="permission",
        ),
        pytest.param("unix:/run/php/php7.4-fpm.sock", {}, id="path"),
        pytest.param("127.0.0.1:9000", {}, id="transport"),
        pytest.param(
            "127.0.0.1:9000",
            {"listen": "9000", "listen__allowed_clients": "10.0.0.9"},
            id="clients",
        ),
        pytest.param(f"unix:{SOCKET}", {"listen": "unix:" + SOCKET}, id="unix-prefix"),
    ],
)
def test_every_fix_predicts_ok_when_applied(
    tmp_path: Path, fastcgi_pass: str, pool: dict[str, str]
) -> None:
    files = debian_files(fastcgi_pass, {"www": pool_text(**pool)})
    report = run_doctor(tmp_path / "before", files)
    fix = report.findings[0].fix
    assert report.causes() != ["ok"] and fix is not None and fix.edits

    changed = dict(files)
    for edit in fix.edits:
        path = "/etc/nginx/sites-available/default" if "sites-enabled" in edit.file else edit.file
        lines = changed[path].split("\n")
        if edit.insert:
            lines.insert(edit.line, edit.new)
        else:
            assert lines[edit.line - 1] == edit.old
            lines[edit.line - 1] = edit.new
        changed[path] = "\n".join(lines)

    assert run_doctor(tmp_path / "after", changed).causes() == ["ok"]


# Bad input: a clear message, never a traceback


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        pytest.param(lambda p: p / "missing", "no such file", id="missing"),
        pytest.param(lambda p: _write(p / "x.bin", b"\x7fELF\x00\x01\x02"), "binary", id="binary"),
        pytest.param(lambda p: _sparse(p / "huge.conf"), "larger than", id="huge"),
        pytest.param(
            lambda p: _write(p / "notes.txt", b"shopping list\n"),
            "does not look like Nginx",
            id="not-config",
        ),
        pytest.param(lambda p: _fifo(p / "pipe"), "not a regular file", id="fifo"),
        pytest.param(lambda p: _mkdir(p / "empty"), "no nginx.conf", id="directory-without-main"),
    ],
)
def test_bad_nginx_input_is_a_clear_error(tmp_path: Path, make: object, reason: str) -> None:
    write_files(tmp_path / "t", debian_files())
    path = make(tmp_path)  # type: ignore[operator]

    with pytest.raises(DoctorInputError, match=reason):
        examine(path, [tmp_path / "t/etc/php/8.2/fpm"], facts())


def test_nginx_include_loop_is_reported_not_followed(tmp_path: Path) -> None:
    files = debian_files()
    files["/etc/nginx/conf.d/a.conf"] = "include /etc/nginx/conf.d/b.inc;\n"
    files["/etc/nginx/conf.d/b.inc"] = "include /etc/nginx/conf.d/a.conf;\n"

    report = run_doctor(tmp_path, files)

    assert report.causes() == ["config-rejected"]
    assert any("include loop" in r.reason for r in report.rejections)


def test_fpm_include_loop_fails_like_php_fpm(tmp_path: Path) -> None:
    files = debian_files()
    files["/etc/php/8.2/fpm/pool.d/loop.conf"] = "include=/etc/php/8.2/fpm/pool.d/loop.conf\n"

    report = run_doctor(tmp_path, files)

    assert report.causes() == ["config-rejected"]
    assert any(
        "more than 5 files recursively (an include loop" in r.reason for r in report.rejections
    )


def test_symbolic_link_loop_is_a_clear_error(tmp_path: Path) -> None:
    files = debian_files()
    files["/etc/nginx/conf.d/x.conf"] = "-> /etc/nginx/conf.d/y.conf"
    files["/etc/nginx/conf.d/y.conf"] = "-> /etc/nginx/conf.d/x.conf"

    with pytest.raises(DoctorInputError, match="symbolic links"):
        run_doctor(tmp_path, files)


# A write-only kernel file: even root gets EACCES reading it, so the test needs no second account.
WRITE_ONLY = Path("/proc/sys/vm/compact_memory")


@pytest.mark.skipif(not WRITE_ONLY.exists(), reason="needs Linux's /proc/sys/vm/compact_memory")
def test_unreadable_file_exits_1_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_files(tmp_path, debian_files())

    code = cli_main(
        ["doctor", "--nginx", str(WRITE_ONLY), "--fpm", str(tmp_path / "etc/php/8.2/fpm")]
    )

    assert code == 1
    assert f"{WRITE_ONLY}: permission denied" in capsys.readouterr().err


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _sparse(path: Path) -> Path:
    with path.open("wb") as handle:
        handle.truncate(5 << 20)
    return path


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=300))
def test_any_pool_text_gives_a_report_or_a_clear_error(tmp_path: Path, text: str) -> None:
    root = tmp_path / uuid.uuid4().hex
    try:
        report = run_doctor(root, debian_files(pools={"www": pool_text(), "zz": text}))
    except DoctorInputError:
        return
    assert report.findings


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    text=st.text(alphabet=st.sampled_from(list("server location{};#\\ \n\"'$:/.a9")), max_size=200)
)
def test_any_site_text_gives_a_report_or_a_clear_error(tmp_path: Path, text: str) -> None:
    root = tmp_path / uuid.uuid4().hex
    try:
        report = run_doctor(root, debian_files(site=text))
    except DoctorInputError:
        return
    assert isinstance(report.causes(), list)


# The command line


def test_cli_exit_codes_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_files(
        tmp_path,
        debian_files(pools={"www": pool_text(listen__owner="ubuntu", listen__group="ubuntu")}),
    )
    (tmp_path / "passwd").write_text(PASSWD)
    (tmp_path / "group").write_text(GROUP)
    common = [
        "doctor",
        "--nginx",
        str(tmp_path / "etc/nginx"),
        "--fpm",
        str(tmp_path / "etc/php/8.2/fpm"),
    ]
    common += ["--passwd", str(tmp_path / "passwd"), "--group", str(tmp_path / "group")]

    code = cli_main([*common, "--json"])
    data = json.loads(capsys.readouterr().out)
    fixed = cli_main([*common, "--nginx-user", "ubuntu"])
    capsys.readouterr()
    missing = cli_main(["doctor", "--nginx", str(tmp_path / "nope"), "--fpm", str(tmp_path)])

    assert (code, fixed, missing) == (3, 0, 1)
    assert data["findings"][0]["cause"] == "socket-permission-denied"
    assert data["findings"][0]["fix"]["checked"] is True
    assert "nope: no such file or directory" in capsys.readouterr().err


# --live: the socket and its directories as this machine has them now


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A directory every account may search (pytest's own tmp_path is private to its owner)."""
    path = Path(tempfile.mkdtemp(prefix="labkit-doctor-live-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def bind_socket(path: Path, mode: int) -> socket.socket:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen()
    path.chmod(mode)
    return server


def test_live_socket_left_by_a_reload_outweighs_the_files(tmp_path: Path, public_dir: Path) -> None:
    path = public_dir / "php.sock"
    pool = pool_text(listen=str(path))
    write_files(tmp_path, debian_files(f"unix:{path}", {"www": pool}))

    with bind_socket(path, 0o660):
        report = examine(tmp_path / "etc/nginx", [tmp_path / "etc/php/8.2/fpm"], facts(), live=True)

    finding = report.findings[0]
    assert finding.cause == "socket-permission-denied"
    assert any("reloaded, not restarted" in reason for reason in finding.reasons)
    assert finding.fix is not None and finding.fix.edits == ()


def test_live_directory_without_search_permission_denies(tmp_path: Path, public_dir: Path) -> None:
    path = public_dir / "php.sock"
    write_files(tmp_path, debian_files(f"unix:{path}", {"www": pool_text(listen=str(path))}))

    with bind_socket(path, 0o666):
        public_dir.chmod(0o700)
        report = examine(tmp_path / "etc/nginx", [tmp_path / "etc/php/8.2/fpm"], facts(), live=True)

    assert report.causes() == ["socket-permission-denied"]
    assert f"may not search {public_dir}" in report.findings[0].reasons[0]


def test_live_missing_socket_is_socket_missing(tmp_path: Path, public_dir: Path) -> None:
    path = public_dir / "php.sock"
    write_files(tmp_path, debian_files(f"unix:{path}", {"www": pool_text(listen=str(path))}))

    report = examine(tmp_path / "etc/nginx", [tmp_path / "etc/php/8.2/fpm"], facts(), live=True)

    assert report.causes() == ["socket-missing"]
    assert "is PHP-FPM running?" in report.findings[0].reasons[0]
