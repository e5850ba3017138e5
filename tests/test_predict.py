"""The doctor asked about a running lab: it reads the lab's files and agrees with the lab."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from labkit import Lab
from labkit.cli import main as cli_main
from labkit.panels import ListenPanel
from labkit.predict import predict_lab, side_by_side

pytestmark = pytest.mark.engine

MakeLab = Callable[..., Lab]


@pytest.mark.parametrize(
    ("pool", "nginx", "cause"),
    [
        ({}, {}, "ok"),
        ({"listen.owner": "ubuntu", "listen.group": "ubuntu"}, {}, "socket-permission-denied"),
        ({}, {"fastcgi_pass": "unix:/run/php/php7.4-fpm.sock"}, "socket-missing"),
    ],
    ids=["default", "owner-ubuntu", "old-version-socket"],
)
def test_prediction_from_the_lab_files_agrees_with_the_lab(
    make_lab: MakeLab, pool: dict[str, str], nginx: dict[str, str], cause: str
) -> None:
    lab = make_lab("pod")
    lab.apply(pool=pool, nginx=nginx)

    prediction = predict_lab(lab)
    compared = side_by_side(prediction, lab.request())

    assert prediction.causes() == [cause]
    assert compared.endswith("=> agree")
    assert not any("labkit-predict" in note for note in prediction.notes)


def test_panel_shows_the_prediction_beside_the_outcome(make_lab: MakeLab) -> None:
    panel = ListenPanel(make_lab("pod"))
    panel.pool_fields["listen.owner"].value = "ubuntu"
    panel.pool_fields["listen.group"].value = "ubuntu"

    panel.apply_button.click()

    assert "doctor predicted: socket-permission-denied" in panel.summary()
    assert "=> agree" in panel.summary()


def test_doctor_command_reads_a_running_lab(
    make_lab: MakeLab, capsys: pytest.CaptureFixture[str]
) -> None:
    lab = make_lab("pod")
    lab.apply(pool={"listen.owner": "ubuntu", "listen.group": "ubuntu"})

    code = cli_main(["doctor", "--lab", lab.name])

    assert code == 3
    assert "=> socket-permission-denied (pool www)" in capsys.readouterr().out
