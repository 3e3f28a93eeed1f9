from __future__ import annotations

from pathlib import Path

import pytest

from core.config import Settings, load_settings
from core.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_checked_in_config_equals_code_defaults(isolated_env: None) -> None:
    assert load_settings(REPO / "config.yaml").model_dump() == Settings().model_dump()


def test_environment_overrides_file(isolated_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOWME_DATABASE__URL", "sqlite+aiosqlite:///elsewhere.db")
    monkeypatch.setenv("SHOWME_CREDITS__STARTER_CREDITS", "3")
    settings = load_settings(REPO / "config.yaml")
    assert settings.database.url == "sqlite+aiosqlite:///elsewhere.db"
    assert settings.credits.starter_credits == 3
    assert settings.models["flux_dev"].price == 2  # the rest of the file still applies


def test_config_path_from_environment(isolated_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("server:\n  port: 9999\n")
    monkeypatch.setenv("SHOWME_CONFIG", str(path))
    assert load_settings().server.port == 9999


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("server:\n  port: 0\n", "server.port"),
        ("server:\n  event_loop: tokio\n", "server.event_loop"),
        ("generation:\n  default_model: dalle\n", "default_model 'dalle' is not in models"),
        ("stripe_secret_key: sk_live\n", "stripe_secret_key: unknown key"),
        ("- a\n- b\n", "mapping of settings"),
        ("plans:\n  x: {name: X, price: '1', images: 1, videos: 0, models: [dalle]}\n", "plans.x.models: dalle"),
        ("packs:\n  x: {name: X, price: '9.999', credits: 5}\n", "not a whole number of the smallest unit"),
        ("packs:\n  x: {name: X, price: '-1', credits: 5}\n", "packs.x.price"),
        ("packs:\n  Big Pack: {name: X, price: '1', credits: 5}\n", "names are 1-32 of a-z"),
        ("server: [unclosed\n", "not valid YAML"),
        ("replicate:\n  poll_interval_seconds: 2\n", "replicate.poll_interval_seconds"),
    ],
)
def test_bad_config_names_key_and_reason(isolated_env: None, tmp_path: Path, text: str, words: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert words in err.value.message


def test_prices_in_smallest_currency_unit(isolated_env: None) -> None:
    settings = load_settings(None, packs={"yen": {"name": "Yen", "price": "1500", "currency": "jpy", "credits": 100}})
    assert settings.packs["yen"].unit_amount == 1500
    defaults = Settings()
    assert defaults.packs["creator"].unit_amount == 2999
    assert defaults.plans["flash"].unit_amount == 10000 and defaults.plans["flash"].currency == "inr"
