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

from core.errors import InvalidRequest, PromptRefused


@dataclass(frozen=True)
class ImageRequest:
    """A picture request: ``prompt`` is the subject; ``style`` a preset name; ``aspect_ratio`` like ``16:9``."""

    prompt: str
    style: str | None = None
    aspect_ratio: str | None = None


_I = re.IGNORECASE

_LEADING_FILLER = re.compile(
    r"^(?:(?:hey|hi|hello|ok|okay|so|um+|uh+|well|yes|yeah|sure|alright|all right|great|perfect|of course|"
    r"absolutely|certainly|please|now|and|also|then|yo)\b[\s,!.:-]*)+",
    _I,
)
_POLITE = (
    r"(?:(?:can|could|would|will)\s+(?:you|u)\s+(?:please\s+|maybe\s+|just\s+)?|please\s+|"
    r"i(?:'d|\s+would)\s+like\s+(?:you\s+)?to\s+|i\s+(?:want|need)\s+(?:you\s+)?to\s+|go\s+ahead\s+and\s+|"
    r"let'?s\s+|try\s+to\s+|now\s+)*"
)
_IMAGE_NOUN = (
    r"(?:picture|pic|image|photo|photograph|drawing|painting|oil\s+painting|sketch|illustration|rendering|"
    r"render|visual|visualization|visualisation|mock-?up|watercolou?r|artwork|snapshot|shot)s?"
)
_ARTICLE = r"(?:(?:a|an|the|some|one|another|a\s+few|few|couple\s+of|a\s+couple\s+of)\s+)?"

# Each trigger captures the subject in group "rest"; "verb" (when present) can imply a style.
_TRIGGERS: list[re.Pattern[str]] = [
    # "what does/would X look like (Y)"
    re.compile(r"^what\s+(?:does|do|would|will|might)\s+(?P<rest>.+?)\s+look\s+like\b(?P<tail>.*)$", _I),
    # agent promises: "let me show you X", "I'll show you X", "I can show you X", "here's a picture of X"
    re.compile(
        r"^(?:let\s+me|i'?ll|i\s+will|i\s+can|i\s+could|i'?m\s+going\s+to|i\s+am\s+going\s+to|allow\s+me\s+to)\s+"
        r"(?P<verb>show|pull\s+up|bring\s+up|generate|create|draw|sketch|paint|render|put\s+together|whip\s+up|"
        r"make|mock\s+up|find|get)\s+(?:you\s+|for\s+you\s+|up\s+)?(?P<rest>.+)$",
        _I,
    ),
    re.compile(
        r"^i'?m\s+(?P<verb>generating|creating|drawing|sketching|painting|rendering|pulling\s+up|"
        r"putting\s+together|making|bringing\s+up)\s+(?:up\s+)?(?P<rest>.+)$",
        _I,
    ),
    re.compile(r"^here(?:'s|\s+is|\s+are)\s+(?P<rest>" + _ARTICLE + _IMAGE_NOUN + r"\s+of\s+.+)$", _I),
    # viewer asks to see: "can I see X", "I want to see X", "I'd love to see X", "let me see X"
    re.compile(
        r"^(?:can|could|may)\s+i\s+(?:please\s+)?see\s+(?P<rest>.+)$|"
        r"^(?:i(?:'d|\s+would)\s+(?:like|love)|i\s+want|i\s+wanna|i\s+need)\s+(?:to\s+)?see\s+(?P<rest2>.+)$|"
        r"^let\s+me\s+see\s+(?P<rest3>.+)$",
        _I,
    ),
    # imperative: "(can you) draw me X", "show me X", "generate X", "picture X"
    re.compile(
        r"^" + _POLITE + r"(?P<verb>draw|paint|sketch|illustrate|render|generate|create|make|design|imagine|"
        r"visuali[sz]e|picture|depict|show|give|produce|whip\s+up|mock\s+up|send|get)\s+"
        r"(?:(?:me|us)\s+|for\s+me\s+)?(?P<rest>.+)$",
        _I,
    ),
    # "I'd like / I want a picture of X"
    re.compile(
        r"^(?:i(?:'d|\s+would)\s+(?:like|love)|i\s+want|i\s+need|i\s+wanna)\s+(?P<rest>"
        + _ARTICLE
        + r"(?:[\w:-]+\s+){0,2}"
        + _IMAGE_NOUN
        + r"\s+of\s+.+)$",
        _I,
    ),
    # a bare image phrase: "a photo of a red barn", "picture of a sunset please"
    re.compile(r"^(?P<rest>" + _ARTICLE + r"(?:[\w:-]+\s+){0,2}" + _IMAGE_NOUN + r"\s+of\s+.+)$", _I),
]

# Verbs that only ask for a picture when an image noun follows ("make me a sandwich" is not a picture).
_NEEDS_IMAGE_NOUN = {"make", "give", "get", "send", "find", "produce"}
# Verbs that name a style.
_VERB_STYLE = {"sketch": "sketch", "sketching": "sketch", "paint": "artistic", "painting": "artistic"}

_NON_VISUAL = {
    "how",
    "where",
    "when",
    "why",
    "which",
    "who",
    "whether",
    "around",
    "hours",
    "hour",
    "time",
    "times",
    "menu",
    "price",
    "prices",
    "pricing",
    "cost",
    "costs",
    "account",
    "balance",
    "invoice",
    "invoices",
    "receipt",
    "order",
    "orders",
    "refund",
    "password",
    "report",
    "reports",
    "list",
    "summary",
    "email",
    "schedule",
    "appointment",
    "appointments",
    "booking",
    "reservation",
    "directions",
    "way",
    "number",
    "code",
    "status",
    "bill",
    "quote",
    "estimate",
    "policy",
    "details",
    "credits",
    "history",
    "calendar",
    "availability",
    "address",
    "contract",
    "sandwich",
    "coffee",
    "call",
    "note",
    "notes",
    "file",
    "link",
    "page",
    "website",
    "document",
    "documents",
    "paperwork",
    "form",
    "money",
    "plan",
    "plans",
    "that",
    "this",
    "it",
    "them",
    "those",
    "something",
    "anything",
    "everything",
    "one",
    "more",
    "again",
    "up",
    "out",
    "in",
    "on",
    "off",
    "sure",
    "to",
    "me",
    "you",
    "us",
    "sense",
    "difference",
    "mistake",
    "progress",
    "results",
    "result",
    "data",
    "numbers",
    "stats",
    "statistics",
    "what",
    "whats",
    "what's",
}
_DETERMINERS = {"a", "an", "the", "some", "my", "our", "your", "their", "his", "her", "any", "few", "couple", "of"}

_ASPECT_WORDS: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(
            r"\b(?:in\s+|as\s+(?:a\s+)?)?(?:wide\s?screen|landscape(?:\s+(?:mode|orientation|format))?|"
            r"horizontal(?:\s+(?:format|orientation))?|cinematic\s+(?:format|ratio))\b(?:\s+format)?",
            _I,
        ),
        "16:9",
    ),
    (
        re.compile(
            r"\b(?:in\s+|as\s+(?:a\s+)?)?(?:portrait\s+(?:mode|orientation|format)|vertical(?:\s+(?:format|"
            r"orientation))?|phone\s+wallpaper\s+size|story\s+format)\b",
            _I,
        ),
        "9:16",
    ),
    (re.compile(r"(?:,\s*|\bin\s+)portrait\s*$", _I), "9:16"),
    (
        re.compile(
            r"\b(?:in\s+|as\s+(?:a\s+)?)?square(?:\s+format)?(?=\s+(?:picture|pic|image|photo|drawing|"
            r"painting|render|rendering|illustration|logo)\b)",
            _I,
        ),
        "1:1",
    ),
    (re.compile(r"(?:,\s*|\bin\s+(?:a\s+)?|\bas\s+(?:a\s+)?)square(?:\s+format)?\s*$|\bsquare\s+format\b", _I), "1:1"),
]
_RATIO = re.compile(
    r"\b(?:(?:in|at|with)\s+(?:an?\s+)?)?(\d{1,2})\s*[:x×]\s*(\d{1,2})\b(?:\s+(?:aspect\s+)?ratio)?(?:\s+format)?", _I
)

_STYLE_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(
            r"\b(?:in\s+(?:a\s+|an\s+)?)?(?:photo-?\s?realistic|hyper-?\s?realistic|realistic|lifelike|"
            r"photographic)(?:\s+(?:style|look))?\b",
            _I,
        ),
        "photorealistic",
    ),
    (
        re.compile(
            r"\b(?:in\s+(?:a\s+|an\s+)?)?(?:pencil|charcoal|line\s+art|sketch(?:ed|y)?)\s+style\b|"
            r"\bas\s+a\s+(?:pencil\s+)?sketch\b|\bin\s+(?:pencil|charcoal)\b",
            _I,
        ),
        "sketch",
    ),
    (
        re.compile(
            r"\b(?:in\s+(?:a\s+|an\s+)?)?(?:artistic|painterly|impressionist|watercolou?r|oil\s+paint(?:ing)?)"
            r"(?:\s+style)\b|\b(?:artistic|painterly)\b|\bas\s+(?:a|an)\s+(?:oil\s+)?painting\b",
            _I,
        ),
        "artistic",
    ),
    (re.compile(r"\b(?:in\s+(?:a\s+|an\s+)?)?(?:modern|minimalist|contemporary)(?:-|\s+)style\b", _I), "modern"),
]
_NOUN_STYLE: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"photo|photograph|snapshot", _I), "photorealistic"),
    (re.compile(r"sketch|drawing", _I), "sketch"),
    (re.compile(r"painting|watercolou?r|artwork", _I), "artistic"),
]
_MAKE_IT = re.compile(r",?\s*(?:and\s+)?make\s+it\s+(?:look\s+)?(?:more\s+)?(?P<what>[\w\s:-]+?)\s*$", _I)
_LEAD_NOUN = re.compile(
    r"^" + _ARTICLE + r"(?:(?P<adj>[\w-]+)\s+)?(?P<noun>" + _IMAGE_NOUN + r")\s+of\s+(?P<rest>.+)$", _I
)
_TRAILING = re.compile(
    r"(?:[\s,]+(?:please|pls|for\s+me|for\s+us|for\s+you|now|right\s+now|real\s+quick|quickly|thanks|"
    r"thank\s+you|if\s+you\s+can|if\s+possible|on\s+(?:the|your)\s+screen|on\s+screen|"
    r"as\s+well|ok|okay))+\s*$",
    _I,
)
_LEADING_POSSESSIVE = re.compile(r"^(?:our|your|my)\s+", _I)


def _clean(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    previous = None
    while previous != text:
        previous = text
        text = text.strip(" ,;:.!?\"'“”")
        text = _TRAILING.sub("", text)
    return text


def _pull_aspect(text: str) -> tuple[str, str | None]:
    aspect: str | None = None
    match = _RATIO.search(text)
    if match:
        aspect = f"{int(match.group(1))}:{int(match.group(2))}"
        text = text[: match.start()] + text[match.end() :]
    for pattern, ratio in _ASPECT_WORDS:
        found = pattern.search(text)
        if found:
            aspect = aspect or ratio
            text = text[: found.start()] + text[found.end() :]
    return text, aspect


def _pull_style(text: str, styles: Iterable[str]) -> tuple[str, str | None]:
    style: str | None = None
    names = [re.escape(s) for s in styles]
    if names:
        named = re.compile(r"\b(?:in\s+(?:a\s+|an\s+)?)?(" + "|".join(names) + r")(?:-|\s+)style\b", _I)
        found = named.search(text)
        if found:
            style = found.group(1).lower()
            text = text[: found.start()] + text[found.end() :]
    for pattern, name in _STYLE_PATTERNS:
        found = pattern.search(text)
        if found:
            style = style or name
            text = text[: found.start()] + text[found.end() :]
    return text, style


def _first_word(text: str) -> str:
    words: list[str] = re.findall(r"[a-z']+", text.lower())
    return next((word for word in words if word not in _DETERMINERS), "")


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
    body = _LEADING_FILLER.sub("", sentence.strip()).strip(" ,.!?")
    if not body:
        return None
    found = _match_triggers(body, styles)
    if found is None:
        # "showme, draw a fox": drop a leading vocative (a name followed by a comma) and try again.
        vocative = re.match(r"^[\w@.-]{1,32},\s*(?P<rest>.+)$", body)
        if vocative:
            found = _match_triggers(_LEADING_FILLER.sub("", vocative.group("rest")), styles)
    return found


def _match_triggers(body: str, styles: list[str]) -> ImageRequest | None:
    for pattern in _TRIGGERS:
        match = pattern.match(body)
        if not match:
            continue
        groups = match.groupdict()
        rest = groups.get("rest") or groups.get("rest2") or groups.get("rest3") or ""
        rest = rest + (groups.get("tail") or "")
        verb = re.sub(r"\s+", " ", (groups.get("verb") or "").lower())
        result = _subject(rest, verb, styles)
        if result is not None:
            return result
    return None


def _subject(rest: str, verb: str, styles: list[str]) -> ImageRequest | None:
    style: str | None = _VERB_STYLE.get(verb)
    rest = rest.strip()
    # "what a waterfall edge looks like on this countertop"
    what = re.match(
        r"^what\s+(?P<x>.+?)\s+(?:looks|would\s+look|will\s+look|might\s+look)\s+like\b(?P<y>.*)$", rest, _I
    )
    if what:
        rest = what.group("x") + what.group("y")
    make_it = _MAKE_IT.search(rest)
    if make_it:
        _, hinted = _pull_style(make_it.group("what"), styles)
        _, ratio_hint = _pull_aspect(make_it.group("what"))
        if hinted or ratio_hint:
            rest = rest[: make_it.start()]
            style = style or hinted
            rest = rest + (f" {ratio_hint}" if ratio_hint else "")
    rest, aspect = _pull_aspect(rest)
    rest, hinted_style = _pull_style(rest, styles)
    style = style or hinted_style
    rest = _clean(rest)
    lead = _LEAD_NOUN.match(rest)
    has_image_noun = lead is not None
    if lead:
        noun = lead.group("noun")
        adj = (lead.group("adj") or "").lower()
        for pattern, name in _NOUN_STYLE:
            if pattern.search(noun) or (adj and pattern.search(adj)):
                style = style or name
                break
        if adj in {"pencil", "charcoal"}:
            style = "sketch"
        rest = _clean(lead.group("rest"))
    if verb in _NEEDS_IMAGE_NOUN and not has_image_noun:
        return None
    rest = _clean(_LEADING_POSSESSIVE.sub("", rest))
    if len(rest) < 2 or _first_word(rest) in _NON_VISUAL or not re.search(r"[a-z]", rest, _I):
        return None
    return ImageRequest(prompt=rest, style=style, aspect_ratio=aspect)


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
