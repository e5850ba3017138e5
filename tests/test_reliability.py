"""Labs that survive faults and leave nothing behind: reaping, crashes, engine trouble, load."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from labkit import BackendError, Cause, ImagesMissing, Lab, LabInUse, ProbeError
from labkit import images as images_module
from labkit.backend import LAB_LABEL, Engine
from labkit.cli import main as cli_main
from labkit.lab import reap_orphans

pytestmark = pytest.mark.engine

MakeLab = Callable[..., Lab]
NewName = Callable[[str], str]
REPO = Path(__file__).resolve().parent.parent


def lab_objects(name: str) -> list[dict[str, str]]:
    with Engine() as engine:
        return [labels for labels in engine.list_labels(LAB_LABEL) if labels[LAB_LABEL] == name]


def reap(grace: float) -> list[str]:
    with Engine() as engine:
        return reap_orphans(engine, grace=grace)


def test_lab_of_a_killed_kernel_is_reaped(new_lab_name: NewName) -> None:
    name = new_lab_name("killed")
    # A child process stands for a notebook kernel that dies by SIGKILL with its lab up.
    code = (
        f"import os; from labkit import Lab; Lab({name!r}).up(build=False); os.kill(os.getpid(), 9)"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=False, timeout=120)
    left = lab_objects(name)

    reap(grace=0)

    # Another test's reaper may get there first; either way the lab must be gone.
    assert len(left) == 5
    assert lab_objects(name) == []


def test_labs_of_live_owners_and_cli_labs_are_not_reaped(
    make_lab: MakeLab, new_lab_name: NewName
) -> None:
    mine = make_lab("pod")
    detached = new_lab_name("cli")
    command = [sys.executable, "-m", "labkit.cli", "up", "--lab", detached]
    subprocess.run(command, cwd=REPO, check=True, timeout=120, capture_output=True)
    try:
        reaped = reap(grace=0)

        assert mine.name not in reaped and detached not in reaped
        assert mine.request().status == 200
        assert len(lab_objects(detached)) == 5
    finally:
        Lab(detached).down()


def test_fpm_killed_during_a_request_gives_502_and_repair_restores(make_lab: MakeLab) -> None:
    lab = make_lab("pod")
    outcomes = []
    slow = threading.Thread(target=lambda: outcomes.append(lab.request("/sleep.php?s=5")))
    slow.start()
    time.sleep(1.0)

    lab.kill("php", "SIGKILL")
    slow.join(timeout=60)
    repaired = lab.repair()

    assert outcomes[0].status == 502
    assert outcomes[0].cause is Cause.UPSTREAM_CLOSED
    assert any("php is exited" in note for note in outcomes[0].notes)
    assert repaired == ["php"]
    assert lab.request().status == 200


def test_stopped_nginx_gives_a_clear_error_and_repair_restores(make_lab: MakeLab) -> None:
    lab = make_lab("pod")
    lab.kill("nginx", "SIGTERM")
    time.sleep(0.5)

    with pytest.raises(ProbeError, match=r"nginx is exited; lab\.repair\(\)"):
        lab.request()
    lab.repair()

    assert lab.request().status == 200


def test_unreachable_engine_gives_a_clear_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")

    with pytest.raises(BackendError, match="No Docker engine is reachable"):
        Engine()
    code = cli_main(["status"])

    assert code == 1
    assert "No Docker engine is reachable" in capsys.readouterr().err


def test_taken_port_gives_a_clear_error_and_leaves_nothing(new_lab_name: NewName) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        lab = Lab(new_lab_name("port"), port=port)

        with pytest.raises(BackendError, match=f"port {port} on 127.0.0.1 is taken"):
            lab.up(build=False)

    assert lab_objects(lab.name) == []


def test_missing_images_give_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, new_lab_name: NewName
) -> None:
    changed = tmp_path / "docker"
    shutil.copytree(images_module.DOCKER_DIR, changed)
    (changed / "www" / "index.php").write_text("<?php echo 'changed';\n")
    monkeypatch.setattr(images_module, "DOCKER_DIR", changed)
    lab = Lab(new_lab_name("noimage"))

    with pytest.raises(ImagesMissing, match="labkit images build"):
        lab.up(build=False)

    assert lab_objects(lab.name) == []


def test_eight_labs_in_parallel_see_only_their_own_outcomes(new_lab_name: NewName) -> None:
    labs = [Lab(new_lab_name(f"par{i}"), "pod" if i % 2 else "network") for i in range(8)]

    def scenario(index: int) -> tuple[int, str]:
        lab = labs[index].up(build=False)
        if index % 4 == 0:
            lab.apply(pool={"listen.owner": "ubuntu", "listen.group": "ubuntu"})
        outcome = lab.request()
        return outcome.status, outcome.cause.value

    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(scenario, range(8)))
    finally:
        for lab in labs:
            lab.down()

    expected = [(502, "socket-permission-denied") if i % 4 == 0 else (200, "ok") for i in range(8)]
    assert results == expected
    assert len({lab.port for lab in labs}) == 8


def test_restarted_holder_is_noticed_and_repaired(make_lab: MakeLab) -> None:
    lab = make_lab("pod")
    holder = lab.engine.find_containers({LAB_LABEL: lab.name, "labkit.role": "holder"})[0]

    lab.engine.restart(holder, timeout=1)
    noticed = lab.stopped_servers()
    repaired = lab.repair()

    assert noticed == {
        "php": "cut off (the holder restarted)",
        "nginx": "cut off (the holder restarted)",
    }
    assert repaired == ["nginx", "php"]
    assert lab.request().status == 200


def test_lab_changed_behind_its_back_is_flagged_and_reset_restores(make_lab: MakeLab) -> None:
    lab = make_lab("pod")
    # A killed apply can leave one side written and the other not; a hand edit does the same.
    lab.run("php", ["sed", "-i", "s/^listen.owner = www-data/listen.owner = ubuntu/",
                    "/etc/php/8.2/fpm/pool.d/www.conf"])  # fmt: skip

    attached = Lab.attach(lab.name)
    flagged = attached.status().get("drift", "")
    attached.reset()

    assert "pool.d/www.conf differs" in str(flagged)
    assert "drift" not in attached.status()
    assert "listen.owner = www-data" in attached.run(
        "php", ["cat", "/etc/php/8.2/fpm/pool.d/www.conf"]
    )


def test_lab_started_by_the_cli_is_not_taken_over(new_lab_name: NewName) -> None:
    name = new_lab_name("cliown")
    assert cli_main(["up", "--lab", name]) == 0
    try:
        with pytest.raises(LabInUse, match="labkit up --replace"):
            Lab(name).up(build=False)
        replaced = cli_main(["up", "--lab", name, "--replace"])

        assert replaced == 0
        assert len(lab_objects(name)) == 5
    finally:
        Lab(name).down()


def test_same_name_from_several_threads_ends_with_one_lab(new_lab_name: NewName) -> None:
    name = new_lab_name("threads")
    labs = [Lab(name) for _ in range(3)]
    try:
        with ThreadPoolExecutor(max_workers=3) as pool:
            list(pool.map(lambda lab: lab.up(build=False), labs))

        survivor = Lab.attach(name)

        assert len(lab_objects(name)) == 5
        assert survivor.request().status == 200
        survivor.down()
    finally:
        for lab in labs:
            lab.down()
