"""What a lab exposes: only Nginx's port on 127.0.0.1, no privileges, PHP-FPM kept inside."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from labkit import ConfigError, Lab, LabkitError
from labkit.backend import LAB_LABEL, ROLE_LABEL
from labkit.course import FASTCGI_GET

pytestmark = pytest.mark.engine

MakeLab = Callable[..., Lab]


def containers_of(lab: Lab) -> dict[str, dict[str, object]]:
    found = lab.engine.find_containers({LAB_LABEL: lab.name})
    return {c.labels[ROLE_LABEL]: c.attrs for c in found}


@pytest.mark.parametrize(("topology", "front"), [("pod", "holder"), ("network", "nginx")])
def test_only_the_front_publishes_and_only_on_loopback(
    make_lab: MakeLab, topology: str, front: str
) -> None:
    lab = make_lab(topology)

    published = {
        role: attrs["HostConfig"]["PortBindings"] or {}  # type: ignore[index]
        for role, attrs in containers_of(lab).items()
    }

    assert {role for role, ports in published.items() if ports} == {front}
    assert [b["HostIp"] for b in published[front]["80/tcp"]] == ["127.0.0.1"]


def test_containers_run_unprivileged_without_host_mounts(make_lab: MakeLab) -> None:
    lab = make_lab("pod")

    for role, attrs in containers_of(lab).items():
        host = attrs["HostConfig"]
        mounts = attrs["Mounts"]
        assert host["Privileged"] is False, role  # type: ignore[index]
        assert host["CapDrop"] == ["ALL"], role  # type: ignore[index]
        assert "no-new-privileges:true" in host["SecurityOpt"], role  # type: ignore[index]
        assert all(m["Type"] == "volume" for m in mounts), role  # type: ignore[union-attr]
        assert not any("docker.sock" in str(m) for m in mounts), role  # type: ignore[union-attr]
        assert host["Memory"] > 0 and host["PidsLimit"] > 0, role  # type: ignore[index]


def test_fpm_on_all_interfaces_is_reachable_inside_its_lab_only(make_lab: MakeLab) -> None:
    open_lab = make_lab("network", tag="open")
    other_lab = make_lab("network", tag="other")
    open_lab.apply(pool={"listen": "9000"}, nginx={"fastcgi_pass": "php:9000"})
    target = open_lab.address("php")
    assert target is not None

    inside = open_lab.run("nginx", [*FASTCGI_GET, "-bind", "-connect", "php:9000"])
    with pytest.raises(LabkitError, match="exited"):
        other_lab.run(
            "nginx", ["timeout", "5", *FASTCGI_GET, "-bind", "-connect", f"{target}:9000"]
        )

    assert "user=www-data" in inside
    assert open_lab.request().status == 200


@pytest.mark.parametrize(
    "upstream", ["10.1.2.3:9000", "example.test:9000", "[2001:db8::1]:9000"], ids=str
)
def test_fastcgi_pass_out_of_the_lab_is_refused_before_anything(
    make_lab: MakeLab, upstream: str
) -> None:
    lab = make_lab("network")

    with pytest.raises(ConfigError, match="lab network"):
        lab.apply(nginx={"fastcgi_pass": upstream})

    assert lab.config.nginx.fastcgi_pass == "unix:/run/php/php8.2-fpm.sock"


def test_fastcgi_pass_to_the_labs_own_address_is_allowed(make_lab: MakeLab) -> None:
    lab = make_lab("network")

    lab.apply(pool={"listen": "9000"}, nginx={"fastcgi_pass": f"{lab.address('php')}:9000"})

    assert lab.request().status == 200
