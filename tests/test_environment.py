"""The pins in pyproject.toml, environment.yml and constraints.txt agree."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
# name, optional extras, operator, version (PEP 508 without markers, which labkit does not use).
REQUIREMENT = re.compile(
    r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*"
    r"(?P<operator>===|==|~=|!=|<=|>=|<|>)?\s*(?P<version>\S*)"
)


def canonical_name(name: str) -> str:
    """Return a package name the way pip compares names (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_requirement(text: str) -> tuple[str, str, str]:
    """Return (canonical name, operator, version); operator is empty for a bare name."""
    match = REQUIREMENT.fullmatch(text.strip())
    assert match is not None, f"not a requirement: {text!r}"
    return canonical_name(match["name"]), match["operator"] or "", match["version"]


def pyproject_requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return [*project["dependencies"], *extras["lab"], *extras["test"]]


def environment_pip_requirements() -> list[str]:
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_sections = [item["pip"] for item in environment["dependencies"] if isinstance(item, dict)]
    assert len(pip_sections) == 1
    return [item for item in pip_sections[0] if item != "-e ."]


def constraint_pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, operator, version = parse_requirement(line)
            assert operator == "==", line
            pins[name] = version
    return pins


@pytest.mark.parametrize(
    "requirements",
    [
        pytest.param(pyproject_requirements, id="pyproject"),
        pytest.param(environment_pip_requirements, id="environment-yml"),
    ],
)
def test_requirements_are_pinned_with_double_equals(requirements: Callable[[], list[str]]) -> None:
    listed = requirements()

    unpinned = [text for text in listed if parse_requirement(text)[1] != "=="]

    assert listed
    assert unpinned == []


def test_environment_pip_list_equals_pyproject_pins() -> None:
    pyproject = sorted(parse_requirement(text) for text in pyproject_requirements())
    environment = sorted(parse_requirement(text) for text in environment_pip_requirements())

    assert environment == pyproject


def test_environment_pip_list_names_each_package_once() -> None:
    names = [parse_requirement(text)[0] for text in environment_pip_requirements()]

    assert len(names) == len(set(names))


def test_constraints_pin_the_same_versions_as_pyproject() -> None:
    constraints = constraint_pins()

    pinned = {
        name: version for name, _, version in map(parse_requirement, pyproject_requirements())
    }

    assert {name: constraints.get(name) for name in pinned} == pinned
