"""Several pools and sites, a forced reload, and a remote host: the lab features lessons use."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from labkit import Cause, ConfigRejected, Lab, LabkitError
from labkit.course import FASTCGI_GET

pytestmark = pytest.mark.engine

MakeLab = Callable[..., Lab]


def site_pool(user: str) -> dict[str, str]:
    return {
        "user": user,
        "group": user,
        "listen": f"/run/php/{user}.sock",
        "listen.owner": "www-data",
        "listen.group": "www-data",
        "pm": "ondemand",
        "pm.max_children": "2",
    }


def test_two_sites_reach_their_own_pools_as_their_own_users(make_lab: MakeLab) -> None:
    lab = make_lab("pod")
    lab.add_pool("alice", site_pool("alice"))
    lab.add_pool("bob", site_pool("bob"))
    lab.set_site("alice.test", "unix:/run/php/alice.sock")
    lab.set_site("bob.test", "unix:/run/php/bob.sock")

    alice = lab.request("/whoami.php", host="alice.test")
    bob = lab.request("/whoami.php", host="bob.test")
    default = lab.request("/whoami.php")

    assert "user=alice" in alice.body and "pool=alice" in alice.body
    assert "user=bob" in bob.body and "pool=bob" in bob.body
    assert "pool=www" in default.body
    assert "/etc/nginx/sites-available/alice.test" in lab.config_text()


def test_site_passing_to_another_sites_pool_runs_as_the_wrong_user(make_lab: MakeLab) -> None:
    lab = make_lab("pod")
    lab.add_pool("alice", site_pool("alice"))
    lab.add_pool("bob", site_pool("bob"))

    lab.set_site("alice.test", "unix:/run/php/bob.sock")
    mixed = lab.request("/whoami.php", host="alice.test")

    assert (mixed.status, mixed.cause) == (200, Cause.OK)
    assert "user=bob" in mixed.body


def test_removed_pool_leaves_pool_d_and_its_socket(make_lab: MakeLab) -> None:
    lab = make_lab("pod")
    lab.add_pool("alice", site_pool("alice"))

    lab.remove_pool("alice")

    assert "alice.conf" not in lab.run("php", ["ls", "/etc/php/8.2/fpm/pool.d"])
    assert "alice.sock" not in lab.run("php", ["ls", "/run/php"])


def test_two_pools_on_one_address_are_rejected_by_php_fpm(make_lab: MakeLab) -> None:
    lab = make_lab("pod")

    with pytest.raises(ConfigRejected, match="already used in another pool"):
        lab.add_pool("copy", {**site_pool("alice"), "listen": "/run/php/php8.2-fpm.sock"})

    assert lab.request().status == 200


def test_forced_reload_keeps_the_old_socket_owner(make_lab: MakeLab) -> None:
    lab = make_lab("pod")

    result = lab.apply(
        pool={"listen.owner": "ubuntu", "listen.group": "ubuntu"}, fpm_action="reload"
    )
    reloaded = lab.request()
    lab.apply(pool={"listen.mode": "0660"}, fpm_action="restart")
    restarted = lab.request()

    assert result.actions == ("php-fpm reload",)
    assert reloaded.status == 200
    assert reloaded.socket is not None and reloaded.socket.owner == "www-data"
    assert (restarted.status, restarted.cause) == (502, Cause.SOCKET_PERMISSION_DENIED)


@pytest.mark.parametrize("topology", ["pod", "network"])
def test_remote_host_reaches_fpm_only_when_it_listens_beyond_loopback(
    make_lab: MakeLab, topology: str
) -> None:
    lab = make_lab(topology)
    upstream = "127.0.0.1:9000" if topology == "pod" else "php:9000"
    lab.apply(pool={"listen": "127.0.0.1:9000"}, nginx={"fastcgi_pass": upstream})
    lab.start_remote()
    target = f"{lab.address('php')}:9000"

    with pytest.raises(LabkitError, match="exited"):
        lab.run("remote", [*FASTCGI_GET, "-bind", "-connect", target])
    lab.apply(pool={"listen": "9000"})
    reached = lab.run("remote", [*FASTCGI_GET, "-bind", "-connect", target])
    lab.apply(pool={"listen.allowed_clients": "127.0.0.1"})
    with pytest.raises(LabkitError, match="exited"):
        lab.run("remote", [*FASTCGI_GET, "-bind", "-connect", target])
    through_nginx = lab.request()

    assert "user=www-data" in reached
    if topology == "pod":
        assert (through_nginx.status, through_nginx.cause) == (200, Cause.OK)
    else:
        assert (through_nginx.status, through_nginx.cause) == (502, Cause.CLIENT_NOT_ALLOWED)
