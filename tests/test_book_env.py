"""environment.yml (conda) lists the same pip requirements as pyproject.toml."""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _pyproject_requirements() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        reqs += [r for r in extra if not r.startswith("vit-facemap")]
    return {r.replace(" ", "") for r in reqs}


def test_environment_yml_mirrors_pyproject():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    listed = {r.replace(" ", "") for r in pip if not r.startswith("-")}
    wanted = _pyproject_requirements()
    assert listed == wanted, (f"add to environment.yml: {sorted(wanted - listed)}; "
                              f"remove: {sorted(listed - wanted)}")
