"""The deployment files agree with the code: Compose specification, settings, image folders."""

from __future__ import annotations

import copy
import json

import jsonschema
import pytest

from auditstream.config import Settings
from tests.deploy.conftest import REPO
from tests.deploy.dockerfile import (
    COMPOSE_FILES,
    DOCKERFILE,
    auditstream_variables,
    load_compose,
    runtime_stage,
)

SCHEMA = json.loads((REPO / "deploy" / "compose-spec" / "compose-spec.json").read_text())


def validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(SCHEMA)


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_compose_file_validates_against_the_compose_specification(path) -> None:
    errors = sorted(validator().iter_errors(load_compose(path)), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_the_schema_check_can_fail() -> None:
    broken = copy.deepcopy(load_compose(COMPOSE_FILES[0]))
    broken["services"]["api"]["read_only"] = ["sometimes"]  # a boolean (or a ${VARIABLE})
    broken["services"]["api"]["restart_policy"] = "always"  # not a Compose key
    messages = [e.message for e in validator().iter_errors(broken)]
    assert any("sometimes" in m for m in messages) and any("restart_policy" in m for m in messages), messages


def test_every_auditstream_variable_in_the_deployment_files_is_a_setting() -> None:
    texts = [DOCKERFILE.read_text(), *(p.read_text() for p in COMPOSE_FILES)]
    variables = auditstream_variables(*texts)
    assert "AUDITSTREAM_CLICKHOUSE_DSN" in variables  # the scan finds them
    fields = {name.upper() for name in Settings.model_fields}
    unknown = sorted(v for v in variables if v.removeprefix("AUDITSTREAM_") not in fields)
    assert not unknown, f"not fields of auditstream.config.Settings: {unknown}"


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_volumes_of_the_image_are_mounted_on_folders_the_service_user_owns(path) -> None:
    stage = runtime_stage()
    assert stage.user and stage.user != "root"
    compose = load_compose(path)
    mounted = 0
    for name, service in compose["services"].items():
        build = service.get("build")
        if not (isinstance(build, dict) and build.get("dockerfile", "").endswith("deploy/docker/Dockerfile")):
            continue
        assert service.get("read_only") is True, f"{name}: root filesystem should be read-only"
        assert "/tmp" in service.get("tmpfs", []), f"{name}: a read-only image still needs a writable /tmp"
        for volume in service.get("volumes", []):
            target = volume.split(":")[1] if isinstance(volume, str) else volume["target"]
            assert target in stage.owned_dirs, (
                f"{name}: {target} is not a folder the image gives {stage.user}"
            )
            mounted += 1
    assert mounted, f"{path.name}: no volume of the auditstream image"
    data_dir = stage.env["AUDITSTREAM_DATA_DIR"]
    assert data_dir in stage.owned_dirs and stage.env["HOME"] == data_dir
    assert stage.env["AUDITSTREAM_KEYS_PATH"].rsplit("/", 1)[0] in stage.owned_dirs


def _volume_of(service: dict, path: str) -> str | None:
    """The named volume ``path`` lies on in ``service`` (the longest mount target that holds it)."""
    best: tuple[int, str] | None = None
    for volume in service.get("volumes", []):
        source, target = (
            (volume.split(":")[:2]) if isinstance(volume, str) else (volume["source"], volume["target"])
        )
        if (path == target or path.startswith(target.rstrip("/") + "/")) and (
            best is None or len(target) > best[0]
        ):
            best = (len(target), source)
    return best[1] if best else None


def _key_paths(service: dict, data_dir: str) -> tuple[str, str]:
    env = service.get("environment") or {}
    key = env.get("AUDITSTREAM_CHECKPOINT_KEY_PATH", f"{data_dir}/checkpoint.key")
    return key, env.get("AUDITSTREAM_CHECKPOINT_PUBLIC_KEY_PATH", f"{key}.pub")


@pytest.mark.parametrize("path", COMPOSE_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_only_the_followers_can_read_the_signing_key_and_the_api_reads_their_public_key(path) -> None:
    data_dir = runtime_stage().env["AUDITSTREAM_DATA_DIR"]
    services = load_compose(path)["services"]
    followers = [s for s in services.values() if s.get("command") == ["followers"]]
    apis = {n: s for n, s in services.items() if s.get("command") == ["api"]}
    assert len(followers) == 1 and apis
    key, public = _key_paths(followers[0], data_dir)
    signing_volume = _volume_of(followers[0], key)
    public_volume = _volume_of(followers[0], public)
    assert signing_volume and public_volume and signing_volume != public_volume
    for name, api in apis.items():
        assert signing_volume not in {_volume_of(api, target) for target in (key, data_dir)}, name
        for volume in api.get("volumes", []):
            assert not str(volume).startswith(f"{signing_volume}:"), f"{name} mounts the signing key's volume"
        _, api_public = _key_paths(api, data_dir)
        assert (api_public, _volume_of(api, api_public)) == (public, public_volume), name
