"""What the tests need to know of deploy/docker/Dockerfile and the compose files, read from them.

No Docker engine runs here, so the tests repeat the image's steps instead of building it;
reading the values from the Dockerfile keeps the two from drifting apart.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.conftest import REPO

DOCKERFILE = REPO / "deploy" / "docker" / "Dockerfile"
COMPOSE_FILES = [REPO / "docker-compose.yml", REPO / "deploy" / "cluster" / "docker-compose.yml"]


@dataclass(frozen=True)
class RuntimeStage:
    env: dict[str, str]
    user: str
    workdir: str
    owned_dirs: list[str]  # `install -d -o <user>` folders
    pip_install: str  # the RUN line that installs the wheel


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(
        r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    )
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def runtime_stage(path: Path = DOCKERFILE) -> RuntimeStage:
    """The last stage of the Dockerfile: the image that runs."""
    steps = _instructions(path.read_text())
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    env: dict[str, str] = {}
    user = workdir = pip_install = ""
    owned: list[str] = []
    for word, rest in steps[last_from:]:
        if word == "ENV":
            env.update(dict(part.split("=", 1) for part in shlex.split(rest)))
        elif word == "USER":
            user = rest
        elif word == "WORKDIR":
            workdir = rest
        elif word == "RUN":
            for command in rest.split("&&"):
                words = shlex.split(command)
                if words[:2] == ["install", "-d"]:
                    owned.extend(w for w in words[2:] if w.startswith("/"))
                if words[:2] == ["pip", "install"]:
                    pip_install = command.strip()
    return RuntimeStage(env, user, workdir, owned, pip_install)


def load_compose(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def auditstream_variables(*texts: str) -> set[str]:
    return {name for text in texts for name in re.findall(r"\bAUDITSTREAM_[A-Z0-9_]+\b", text)}
