"""The deployment files (``Dockerfile``, ``compose.yaml``, ``deploy/``) say what the code understands: every
setting they pass is one showme accepts, both replicas share every backend, the load balancer reaches both and
carries WebSockets. (Building the images needs a Docker daemon and the internet; the suite has neither.)"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.config import Secrets, load_settings

REPO = Path(__file__).resolve().parents[1]


def _compose() -> dict[str, Any]:
    return yaml.safe_load((REPO / "compose.yaml").read_text())


def _environment(service: dict[str, Any]) -> dict[str, str]:
    return {key: str(value) for key, value in service["environment"].items()}


def test_both_replicas_share_every_backend_and_their_settings_are_valid(
    isolated_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = _compose()["services"]
    assert {"postgres", "redis", "minio", "minio-bucket", "migrate", "showme-a", "showme-b", "lb"} <= set(services)
    a, b = _environment(services["showme-a"]), _environment(services["showme-b"])
    assert {k: v for k, v in b.items() if k != "SHOWME_DISCORD__ENABLED"} == a
    for name, value in a.items():
        if name.startswith("SHOWME_") and name != "SHOWME_SERVER__PUBLIC_URL":
            monkeypatch.setenv(name, value)
    monkeypatch.setenv("SHOWME_SERVER__PUBLIC_URL", "https://showme.example.com")
    settings = load_settings(REPO / "config.yaml")
    assert settings.database.url.startswith("postgresql+asyncpg://") and not settings.database.auto_upgrade
    assert settings.events.backend == "redis" and settings.media.backend == "s3"
    assert settings.media.s3.endpoint_url == "http://minio:9000" and settings.media.s3.serve == "stream"
    assert settings.rate_limits.trusted_proxies and settings.replicate_webhook_url is not None
    monkeypatch.setenv("SHOWME_DISCORD__ENABLED", b["SHOWME_DISCORD__ENABLED"])
    assert load_settings(REPO / "config.yaml").discord.enabled is False
    assert services["migrate"]["command"] == ["showme", "db", "upgrade"]
    for replica in ("showme-a", "showme-b"):
        needs = services[replica]["depends_on"]
        assert needs["migrate"]["condition"] == "service_completed_successfully"
        assert needs["minio-bucket"]["condition"] == "service_completed_successfully"
    bucket = " ".join(services["minio-bucket"]["command"])
    assert f"local/{settings.media.s3.bucket}" in bucket
    assert services["minio"]["environment"]["MINIO_ROOT_USER"] == a["AWS_ACCESS_KEY_ID"]


def test_the_load_balancer_reaches_both_replicas_and_carries_websockets() -> None:
    conf = (REPO / "deploy" / "nginx.conf").read_text()
    assert re.search(r"server showme-a:8080", conf) and re.search(r"server showme-b:8080", conf)
    assert "proxy_set_header Upgrade $http_upgrade" in conf and "X-Forwarded-For" in conf
    assert "./deploy/nginx.conf:/etc/nginx/conf.d/default.conf:ro" in _compose()["services"]["lb"]["volumes"]


def test_the_image_serves_and_the_example_environment_names_real_secrets() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert 'CMD ["showme", "serve"]' in dockerfile and "SHOWME_SERVER__HOST=0.0.0.0" in dockerfile
    for package in ("core", "storage", "tools", "bot"):
        assert f"COPY {package} ./{package}" in dockerfile
    aliases = {field.alias for field in Secrets.model_fields.values()}
    names = [line.split("=", 1)[0] for line in (REPO / "deploy" / "example.env").read_text().splitlines()
             if line and not line.startswith("#")]  # fmt: skip
    assert set(names) - aliases == {"SHOWME_PUBLIC_URL"}  # compose.yaml passes it as server.public_url
