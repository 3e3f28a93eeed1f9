"""The README a newcomer reads: every table-of-contents link leads to a heading, the two commands are where the
contents say, each platform has its section, and CI runs exactly the README's test command."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
    return text.replace(" ", "-")


def _section(title: str) -> str:
    match = re.search(rf"^#+ {re.escape(title)}\n(.*?)(?=^#+ |\Z)", README, re.M | re.S)
    assert match is not None, title
    return match.group(1)


def test_every_contents_link_leads_to_a_heading() -> None:
    anchors = {_slug(h) for h in re.findall(r"^#+ (.+)$", README, re.M)}
    contents = _section("Contents")
    links = re.findall(r"\]\(#([^)]+)\)", contents)
    assert len(links) >= 15
    assert [link for link in links if link not in anchors] == []
    for platform in ("ElevenLabs", "Vapi", "Retell", "MCP clients", "Telegram", "Discord", "Stripe"):
        assert platform in contents, platform


def test_the_two_commands_and_ci() -> None:
    assert "pip install -e . && showme serve" in _section("Install and start the server")
    test_command = "pip install -e '.[dev]' && python -m pytest -q"
    assert test_command in _section("Run the tests")
    ci = (REPO / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] == "python -m pytest -q" and any("pip install" in line and ".[dev]" in line for line in ci)
