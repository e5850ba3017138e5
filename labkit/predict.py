"""Ask the doctor about a running lab: predict from its files, then compare with what it does.

The lab's own configuration trees are copied out of its containers, as they are now, and the
doctor reads them with the containers' own accounts and the lab's addresses.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

from labkit.config import PHP_VERSION
from labkit.doctor import Accounts, Facts, Report, examine
from labkit.lab import Lab
from labkit.probe import Outcome

LOCALHOST = ("127.0.0.1", "::1")


def lab_facts(lab: Lab) -> Facts:
    """Return what the doctor cannot read from files: both containers' accounts and addresses."""

    def accounts(role: str) -> Accounts:
        texts = [lab.run(role, ["cat", path]) for path in ("/etc/passwd", "/etc/group")]
        return Accounts.from_text(*texts, f"the {role} container")

    # IPv6 is switched off inside lab containers: `::` binds, `::1` does not.
    if lab.topology == "pod":
        own = lab.address("php") or ""
        hosts = {"localhost": LOCALHOST}
        return Facts(
            accounts("nginx"), accounts("php"), "pod", None, hosts, True, (own,), (own,), "off"
        )
    php, nginx = lab.address("php") or "", lab.address("nginx") or ""
    hosts = {"localhost": LOCALHOST, "php": (php,), "nginx": (nginx,)}
    return Facts(
        accounts("nginx"), accounts("php"), "network", None, hosts, True, (php,), (nginx,), "off"
    )


def predict_lab(lab: Lab, fixes: bool = True) -> Report:
    """Run the doctor on the lab's configuration as it is in its containers right now."""
    fpm_dir = f"/etc/php/{PHP_VERSION}/fpm"
    with tempfile.TemporaryDirectory(prefix="labkit-predict-") as work:
        root = Path(work)
        lab.copy_out("nginx", "/etc/nginx", root)
        lab.copy_out("php", fpm_dir, root)
        report = examine(root / "etc/nginx", [root / fpm_dir.lstrip("/")], lab_facts(lab), fixes)
    # The copy's temporary folder is of no interest to the reader.
    return dataclasses.replace(report, notes=tuple(n for n in report.notes if work not in n))


def side_by_side(prediction: Report, outcome: Outcome) -> str:
    """Return the doctor's prediction for the default site beside what the lab answered."""
    predicted = prediction.findings[0].cause if prediction.findings else "no fastcgi_pass"
    agree = "agree" if predicted == outcome.cause.value else "DISAGREE"
    return (
        f"doctor predicted: {predicted}\n"
        f"lab observed:     {outcome.cause.value} (HTTP {outcome.status})\n"
        f"=> {agree}"
    )
