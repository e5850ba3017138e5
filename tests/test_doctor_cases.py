"""Every field case of ../shared/field-cases/cases.md, predicted by the doctor from configuration.

Each test writes the case's reduced configuration in a server's layout, with the case's
accounts, and asserts the outcome the report describes. tests/test_doctor_live.py has the
cases the live lab can reproduce, and says why the others cannot be.
"""

from __future__ import annotations

from pathlib import Path

from doctor_support import GROUP, PASSWD, SITE, accounts, debian_files, facts, pool_text, run_doctor

from labkit.doctor import FileMode

# Field-case configurations name sockets under /var/run, as the reports did.
PHP5_SOCKET = "/var/run/php5-fpm.sock"


def test_field_case_r01_cve_2014_0185_root_socket_denies_www_data(tmp_path: Path) -> None:
    pool = pool_text(listen=PHP5_SOCKET, listen__owner=None, listen__group=None)
    files = debian_files(
        f"unix:{PHP5_SOCKET}", {"www": pool.replace("[www]", "[www]\n;listen.owner = www-data")}
    )

    report = run_doctor(tmp_path, files)
    insecure = run_doctor(
        tmp_path / "0666",
        debian_files(f"unix:{PHP5_SOCKET}", {"www": pool + "listen.mode = 0666\n"}),
    )

    finding = report.findings[0]
    assert finding.cause == "socket-permission-denied"
    assert "root:root 0660" in report.pools[0].socket
    assert finding.fix is not None and "restart PHP-FPM" in finding.fix.then[0]
    assert "0666" not in finding.fix.summary
    assert insecure.causes() == ["ok"]


def test_field_case_r02_socket_group_nginx_while_nginx_runs_as_www_data(tmp_path: Path) -> None:
    group = GROUP + "nginx:x:998:\n"
    the_facts = facts(nginx_accounts=accounts(PASSWD, group))
    pool = pool_text(
        "example.test",
        listen="/var/run/php5-example.test.sock",
        user="alice",
        listen__owner="alice",
        listen__group="nginx",
        listen__mode="0660",
    )

    report = run_doctor(
        tmp_path,
        debian_files("unix:/var/run/php5-example.test.sock", {"example.test": pool}),
        the_facts,
    )

    assert report.causes() == ["socket-permission-denied"]
    fix = report.findings[0].fix
    assert fix is not None and fix.summary == "listen.group = www-data"


def test_field_case_r03_user_directive_does_not_set_the_socket_owner(tmp_path: Path) -> None:
    # The container's init remaps abc to 65534:100; Nginx and the pool both run as abc.
    passwd = PASSWD.replace("nobody:x:65534", "abc:x:65534")
    group = GROUP + "abc:x:100:\n"
    group = group.replace("users:x:100:\n", "")
    site = SITE.format(fastcgi_pass="unix:/tmp/php-fpm.sock").replace(
        "location ~ \\.php$", "location = /fpm-ping"
    )
    pool = pool_text(
        user="abc", group="abc", listen="/tmp/php-fpm.sock", listen__owner=None, listen__group=None
    )
    the_facts = facts(nginx_accounts=accounts(passwd, group))

    report = run_doctor(
        tmp_path, debian_files(pools={"www": pool}, user="abc", site=site), the_facts
    )

    # The client saw 404 only because the error_page file was missing; the cause is the socket.
    assert report.causes() == ["socket-permission-denied"]
    assert "root:root 0660" in report.pools[0].socket
    fix = report.findings[0].fix
    assert fix is not None and "listen.group = abc" in fix.summary


def test_field_case_r04_reload_keeps_the_old_socket(tmp_path: Path) -> None:
    the_accounts = accounts(PASSWD + "apache:x:48:48::/:/sbin/nologin\n", GROUP + "apache:x:48:\n")
    pool = pool_text(
        "test-pool",
        user="apache",
        group="apache",
        listen="/run/php-fpm/$pool.sock",
        listen__owner="apache",
        listen__group="apache",
    )
    files = debian_files("unix:/run/php-fpm/test-pool.sock", {"test-pool": pool}, user="apache")
    live_socket = {"/run/php-fpm/test-pool.sock": FileMode(0, 0, 0o660)}

    from_files = run_doctor(tmp_path / "files", files, facts(nginx_accounts=the_accounts))
    from_machine = run_doctor(
        tmp_path / "live", files, facts(nginx_accounts=the_accounts, sockets=live_socket, live=True)
    )

    assert from_files.causes() == ["ok"]
    assert from_machine.causes() == ["socket-permission-denied"]
    finding = from_machine.findings[0]
    assert any("reloaded, not restarted" in reason for reason in finding.reasons)
    assert (
        finding.fix is not None
        and finding.fix.edits == ()
        and "restart PHP-FPM" in finding.fix.then[0]
    )


def test_field_case_r05_socket_name_with_another_php_version(tmp_path: Path) -> None:
    pool = pool_text(listen="/var/run/php/php-fpm.sock")

    report = run_doctor(tmp_path, debian_files("unix:/var/run/php/php7.4-fpm.sock", {"www": pool}))
    same_file = run_doctor(
        tmp_path / "run", debian_files("unix:/run/php/php-fpm.sock", {"www": pool})
    )

    assert report.causes() == ["socket-missing"]
    fix = report.findings[0].fix
    assert fix is not None and fix.summary.endswith("fastcgi_pass unix:/var/run/php/php-fpm.sock;")
    assert same_file.causes() == ["ok"]


OFFICIAL_MAIN = "[global]\nerror_log = /proc/self/fd/2\ninclude=etc/php-fpm.d/*.conf\n"


def official_image_files(listen_file: str) -> dict[str, str]:
    """The php:*-fpm image's layout under /usr/local/etc, with `listen = 9000` in `listen_file`."""
    site = SITE.format(fastcgi_pass="unix:/run/php/php.sock")
    files = debian_files(site=site, pools={})
    del files["/etc/php/8.2/fpm/php-fpm.conf"]
    files["/usr/local/etc/php-fpm.conf"] = OFFICIAL_MAIN.replace("etc/", "/usr/local/etc/")
    files["/usr/local/etc/php-fpm.d/www.conf"] = (
        "[www]\nlisten = /run/php/php.sock\nlisten.owner = www-data\nlisten.group = www-data\n"
    )
    base = pool_text(listen=None, listen__owner=None, listen__group=None)
    files["/usr/local/etc/php-fpm.d/aa-base.conf"] = base
    files[f"/usr/local/etc/php-fpm.d/{listen_file}"] = (
        "[global]\ndaemonize = no\n[www]\nlisten = 9000\n"
    )
    return files


def test_field_case_r07_zz_docker_conf_overrides_the_socket(tmp_path: Path) -> None:
    network = facts(
        topology="network",
        hosts={"php": ("172.18.0.3",)},
        fpm_addresses=("172.18.0.3",),
        nginx_addresses=("172.18.0.2",),
    )

    before = run_doctor(
        tmp_path / "old", official_image_files("zz-docker.conf"), network, fpm=["/usr/local/etc"]
    )
    after = run_doctor(
        tmp_path / "new", official_image_files("docker.conf"), network, fpm=["/usr/local/etc"]
    )

    assert before.causes() == ["socket-missing"]
    assert [p.listen for p in before.pools] == ["9000"]
    assert after.causes() == ["ok"]


def test_field_case_r07_numeric_ids_differ_between_images(tmp_path: Path) -> None:
    alpine_php = accounts(
        PASSWD.replace("www-data:x:33:33", "www-data:x:82:82"),
        GROUP.replace("www-data:x:33:", "www-data:x:82:"),
    )
    nginx_image = accounts(PASSWD + "nginx:x:101:101::/:/sbin/nologin\n", GROUP + "nginx:x:101:\n")
    the_facts = facts(nginx_accounts=nginx_image, fpm_accounts=alpine_php)

    report = run_doctor(tmp_path, debian_files(user="nginx"), the_facts)

    assert report.causes() == ["socket-permission-denied"]
    assert "www-data:www-data 0660" in report.pools[0].socket
    fix = report.findings[0].fix
    assert fix is not None and fix.summary == "listen.group = 101"


def test_field_case_r09_loopback_in_the_nginx_container(tmp_path: Path) -> None:
    network = facts(
        topology="network",
        hosts={"php": ("172.17.0.3",)},
        fpm_addresses=("172.17.0.3",),
        nginx_addresses=("172.17.0.2",),
    )

    report = run_doctor(
        tmp_path, debian_files("127.0.0.1:9000", {"www": pool_text(listen="9000")}), network
    )

    assert report.causes() == ["connection-refused"]
    fix = report.findings[0].fix
    assert fix is not None and fix.summary.endswith("fastcgi_pass php:9000;")


def test_field_case_r12_ipv6_wildcard_on_a_kernel_without_ipv6(tmp_path: Path) -> None:
    files = debian_files("app:9000", {"www": pool_text(listen="[::]:9000")})
    hosts = {"app": ("172.18.0.3",)}
    network = {"topology": "network", "hosts": hosts, "fpm_addresses": ("172.18.0.3",)}

    without = run_doctor(tmp_path / "absent", files, facts(ipv6="absent", **network))
    with_ipv6 = run_doctor(tmp_path / "on", files, facts(ipv6="on", **network))

    assert without.causes() == ["config-rejected"]
    assert "Address family not supported by protocol (97)" in without.rejections[0].reason
    assert without.rejections[0].stage == "start"
    fix = without.findings[0].fix
    assert fix is not None and fix.summary == "listen = 9000"
    assert with_ipv6.causes() == ["ok"]


def test_field_case_r14_jail_sources_loopback_from_its_own_address(tmp_path: Path) -> None:
    pool = pool_text(listen="127.0.0.1:9999", listen__allowed_clients="127.0.0.1")

    report = run_doctor(
        tmp_path, debian_files("127.0.0.1:9999", {"www": pool}), facts(jail_address="192.0.2.50")
    )

    assert report.causes() == ["client-not-allowed"]
    fix = report.findings[0].fix
    assert fix is not None and fix.summary == "listen.allowed_clients = 127.0.0.1,192.0.2.50"


def test_field_case_r18_busy_workers_are_not_a_connect_failure(tmp_path: Path) -> None:
    # Limitation shown here: a 504 from exhausted workers depends on load, not on the files;
    # the doctor can only say that Nginx reaches the pool.
    pool = pool_text(listen=PHP5_SOCKET, pm__max_children="8", pm__max_spare_servers="3")

    report = run_doctor(tmp_path, debian_files(f"unix:{PHP5_SOCKET}", {"www": pool}))

    assert report.causes() == ["ok"]


def test_field_case_r19_transport_mismatch_then_unix_prefix(tmp_path: Path) -> None:
    socket = "/run/php/php7.0-fpm.sock"

    attempt_a = run_doctor(
        tmp_path / "a", debian_files("127.0.0.1:9000", {"www": pool_text(listen=socket)})
    )
    attempt_b = run_doctor(
        tmp_path / "b", debian_files("127.0.0.1:9000", {"www": pool_text(listen=f"unix:{socket}")})
    )
    attempt_c = run_doctor(
        tmp_path / "c", debian_files("127.0.0.1:9000", {"www": pool_text(listen="127.0.0.1:9000")})
    )

    assert attempt_a.causes() == ["connection-refused"]
    assert attempt_b.causes() == ["config-rejected"]
    assert attempt_b.rejections[0].stage == "start"
    fix = attempt_b.findings[0].fix
    assert fix is not None and len(fix.edits) == 2
    assert attempt_c.causes() == ["ok"]


def test_field_case_r20_two_masters_on_one_port(tmp_path: Path) -> None:
    files = debian_files(
        "unix:/run/php/php7.4-fpm.sock", {"www": pool_text(listen="/run/php/php7.4-fpm.sock")}
    )
    files = {k.replace("/8.2/", "/7.4/"): v.replace("8.2", "7.4") for k, v in files.items()}
    files["/etc/php/7.4/fpm/pool.d/panel.conf"] = pool_text("panel", listen="127.0.0.1:9000")
    files["/etc/php/7.3/fpm/php-fpm.conf"] = "[global]\ninclude=/etc/php/7.3/fpm/pool.d/*.conf\n"
    files["/etc/php/7.3/fpm/pool.d/www.conf"] = pool_text(listen="127.0.0.1:9000")

    report = run_doctor(tmp_path, files, fpm=["/etc/php/7.3/fpm", "/etc/php/7.4/fpm"])

    assert report.causes() == ["config-rejected"]
    clash = [r for r in report.rejections if r.stage == "start"]
    assert "Address already in use (98)" in clash[0].reason
    assert str(clash[0].origin).startswith("/etc/php/7.4/fpm/pool.d/panel.conf")
    fix = report.findings[0].fix
    assert fix is not None and "listen = /run/php/php-fpm-panel.sock" in fix.summary
