"""What does a person want to see? Picture-request detection, style presets and blocked terms.

``extract_image_request`` reads one chat message or one spoken line (from either side of a voice call) and
returns the subject to draw with optional style and aspect-ratio hints, or None when the line does not ask
for (or promise) a picture. It is rule-based on purpose: it runs on every transcript line, must be instant,
and must be predictable for businesses to rely on.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from core import prompt_vocabulary as vocabulary
from core.errors import InvalidRequest, PromptRefused


@dataclass(frozen=True)
class ImageRequest:
    """A picture request: ``prompt`` is the subject; ``style`` a preset name; ``aspect_ratio`` like ``16:9``;
    ``kind`` is ``image``, ``video`` (a clip of the subject) or ``animate`` (bring the picture already made to
    life: ``prompt`` is then the motion asked for, possibly empty)."""

    prompt: str
    style: str | None = None
    aspect_ratio: str | None = None
    kind: str = "image"


def _clean(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    previous = None
    while previous != text:
        previous = text
        text = text.strip(" ,;:.!?\"'“”")
        text = vocabulary.TRAILING.sub("", text)
    return text


def _pull_aspect(text: str) -> tuple[str, str | None]:
    aspect: str | None = None
    match = vocabulary.RATIO.search(text)
    if match:
        aspect = f"{int(match.group(1))}:{int(match.group(2))}"
        text = text[: match.start()] + text[match.end() :]
    for pattern, ratio in vocabulary.ASPECT_WORDS:
        found = pattern.search(text)
        if found:
            aspect = aspect or ratio
            text = text[: found.start()] + text[found.end() :]
    return text, aspect


def _pull_style(text: str, styles: Iterable[str]) -> tuple[str, str | None]:
    style: str | None = None
    names = [re.escape(s) for s in styles]
    if names:
        named = re.compile(r"\b(?:in\s+(?:a\s+|an\s+)?)?(" + "|".join(names) + r")(?:-|\s+)style\b", re.I)
        found = named.search(text)
        if found:
            style = found.group(1).lower()
            text = text[: found.start()] + text[found.end() :]
    for pattern, name in vocabulary.STYLE_PATTERNS:
        found = pattern.search(text)
        if found:
            style = style or name
            text = text[: found.start()] + text[found.end() :]
    return text, style


def _first_word(text: str) -> str:
    words: list[str] = re.findall(r"[a-z']+", text.lower())
    return next((word for word in words if word not in vocabulary.DETERMINERS), "")


def extract_image_request(
    text: str, *, styles: Iterable[str] = ("photorealistic", "artistic", "sketch", "modern")
) -> ImageRequest | None:
    """Decide whether ``text`` asks for (or promises) a picture and return what to draw.

    ``text``: one chat message or one spoken line, any case, with or without punctuation.
    ``styles``: the style preset names that ``in <name> style`` may select.
    Returns None for lines that are not picture requests ("what time do you open tomorrow?").
    """
    line = re.sub(r"\s+", " ", text or "").strip()
    # Only the first sentence that asks for a picture matters; split on sentence ends.
    for sentence in re.split(r"(?<=[.!?])\s+", line):
        found = _extract_one(sentence, list(styles))
        if found is not None:
            return found
    return None


def _extract_one(sentence: str, styles: list[str]) -> ImageRequest | None:
    body = vocabulary.LEADING_FILLER.sub("", sentence.strip()).strip(" ,.!?")
    if not body:
        return None
    found = _match_triggers(body, styles)
    if found is None:
        # "showme, draw a fox": drop a leading vocative (a name followed by a comma) and try again.
        vocative = re.match(r"^[\w@.-]{1,32},\s*(?P<rest>.+)$", body)
        if vocative:
            found = _match_triggers(vocabulary.LEADING_FILLER.sub("", vocative.group("rest")), styles)
    return found


def _match_triggers(body: str, styles: list[str]) -> ImageRequest | None:
    for pattern in vocabulary.TRIGGERS:
        match = pattern.match(body)
        if not match:
            continue
        groups = match.groupdict()
        rest = groups.get("rest") or groups.get("rest2") or groups.get("rest3") or groups.get("rest4") or ""
        rest = rest + (groups.get("tail") or "")
        verb = re.sub(r"\s+", " ", (groups.get("verb") or "").lower())
        result = _subject(rest, verb, styles)
        if result is not None:
            return result
    return None


def _animation(rest: str, verb: str) -> ImageRequest | None:
    """Animating the picture already made ("animate this, the waves rolling in"), with the motion asked for."""
    if verb not in vocabulary.ANIMATE_VERBS:
        return None
    reference = vocabulary.ANIMATE_REFERENCE.match(rest)
    return ImageRequest(prompt=_clean(reference.group("motion")), kind="animate") if reference else None


def _hints(rest: str, styles: list[str], style: str | None) -> tuple[str, str | None]:
    """``rest`` without "what X looks like" and a trailing "make it realistic" (whose hints go to the style
    and aspect ratio): ``(rest, style)``."""
    what = re.match(
        r"^what\s+(?P<x>.+?)\s+(?:looks|would\s+look|will\s+look|might\s+look)\s+like\b(?P<y>.*)$",
        rest,
        re.I,
    )
    if what:  # "what a waterfall edge looks like on this countertop"
        rest = what.group("x") + what.group("y")
    make_it = vocabulary.MAKE_IT.search(rest)
    if make_it:
        _, hinted = _pull_style(make_it.group("what"), styles)
        _, ratio_hint = _pull_aspect(make_it.group("what"))
        if hinted or ratio_hint:
            rest = rest[: make_it.start()] + (f" {ratio_hint}" if ratio_hint else "")
            style = style or hinted
    return rest, style


def _subject(rest: str, verb: str, styles: list[str]) -> ImageRequest | None:
    rest = rest.strip()
    animation = _animation(rest, verb)
    if animation is not None:
        return animation
    if verb in vocabulary.SHOW_VERBS:
        rest = vocabulary.DEMONSTRATIVE.sub("", rest)
    kind = "video" if verb in vocabulary.VIDEO_VERBS else "image"
    rest, style = _hints(rest, styles, vocabulary.VERB_STYLE.get(verb))
    rest, aspect = _pull_aspect(rest)
    rest, hinted_style = _pull_style(rest, styles)
    style = style or hinted_style
    rest = _clean(rest)
    video = vocabulary.LEAD_VIDEO.match(rest)
    if video:
        kind, rest = "video", _clean(video.group("rest"))
    lead = None if video else vocabulary.LEAD_NOUN.match(rest)
    has_image_noun = lead is not None or video is not None
    if lead:
        noun = lead.group("noun")
        adj = (lead.group("adj") or "").lower()
        for pattern, name in vocabulary.NOUN_STYLE:
            if pattern.search(noun) or (adj and pattern.search(adj)):
                style = style or name
                break
        if adj in {"pencil", "charcoal"}:
            style = "sketch"
        rest = _clean(lead.group("rest"))
    if verb in vocabulary.NEEDS_IMAGE_NOUN and not has_image_noun:
        return None
    rest = _clean(vocabulary.LEADING_POSSESSIVE.sub("", rest))
    if len(rest) < 2 or _first_word(rest) in vocabulary.NON_VISUAL or not re.search(r"[a-z]", rest, re.I):
        return None
    return ImageRequest(prompt=rest, style=style, aspect_ratio=aspect, kind=kind)


def apply_style(prompt: str, style: str | None, presets: dict[str, str]) -> str:
    """``prompt`` with the style preset's suffix appended (``"a cat, pencil sketch, …"``).

    Raises ``InvalidRequest`` (field ``style``) for a style that is not a configured preset.
    """
    if not style:
        return prompt
    if style not in presets:
        raise InvalidRequest(f"unknown style {style!r}; choose one of {', '.join(sorted(presets))}", field="style")
    return f"{prompt}, {presets[style]}"


def check_prompt(prompt: str, blocked_terms: Iterable[str], *, max_length: int = 1000) -> str:
    """Return the prompt trimmed, or raise.

    Raises ``InvalidRequest`` (field ``prompt``) when empty or longer than ``max_length`` characters, and
    ``PromptRefused`` when it contains a blocked term (whole words, any case).
    """
    cleaned = re.sub(r"\s+", " ", prompt or "").strip()
    if not cleaned:
        raise InvalidRequest("prompt must not be empty", field="prompt")
    if len(cleaned) > max_length:
        raise InvalidRequest(f"prompt is longer than {max_length} characters", field="prompt")
    lowered = cleaned.lower()
    for term in blocked_terms:
        term = term.strip().lower()
        if term and re.search(r"(?<!\w)" + re.escape(term) + r"(?!\w)", lowered):
            raise PromptRefused(f"this prompt can't be generated: it mentions {term!r}, which is not allowed here")
    return cleaned
