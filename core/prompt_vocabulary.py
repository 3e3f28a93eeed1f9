"""The words and patterns picture-request detection (``core.prompts``) matches: fillers, polite openings,
trigger verbs, image nouns, non-visual subjects, aspect-ratio and style hints."""

from __future__ import annotations

import re

_I = re.IGNORECASE

LEADING_FILLER = re.compile(
    r"^(?:(?:hey|hi|hello|ok|okay|so|um+|uh+|well|yes|yeah|sure|alright|all right|great|perfect|of course|"
    r"absolutely|certainly|please|now|and|also|then|yo)\b[\s,!.:-]*)+",
    _I,
)
POLITE = (
    r"(?:(?:can|could|would|will)\s+(?:you|u)\s+(?:please\s+|maybe\s+|just\s+)?|please\s+|"
    r"i(?:'d|\s+would)\s+like\s+(?:you\s+)?to\s+|i\s+(?:want|need)\s+(?:you\s+)?to\s+|go\s+ahead\s+and\s+|"
    r"let'?s\s+|try\s+to\s+|now\s+)*"
)
IMAGE_NOUN = (
    r"(?:picture|pic|image|photo|photograph|drawing|painting|oil\s+painting|sketch|illustration|rendering|"
    r"render|visual|visualization|visualisation|mock-?up|watercolou?r|artwork|snapshot|shot)s?"
)
ARTICLE = r"(?:(?:a|an|the|some|one|another|a\s+few|few|couple\s+of|a\s+couple\s+of)\s+)?"

# Each trigger captures the subject in group "rest"; "verb" (when present) can imply a style.
TRIGGERS: list[re.Pattern[str]] = [
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
    re.compile(r"^here(?:'s|\s+is|\s+are)\s+(?P<rest>" + ARTICLE + IMAGE_NOUN + r"\s+of\s+.+)$", _I),
    # viewer asks to see: "can I see X", "I want to see X", "I'd love to see X", "let me see X"
    re.compile(
        r"^(?:can|could|may)\s+i\s+(?:please\s+)?see\s+(?P<rest>.+)$|"
        r"^(?:i(?:'d|\s+would)\s+(?:like|love)|i\s+want|i\s+wanna|i\s+need)\s+(?:to\s+)?see\s+(?P<rest2>.+)$|"
        r"^let\s+me\s+see\s+(?P<rest3>.+)$",
        _I,
    ),
    # imperative: "(can you) draw me X", "show me X", "generate X", "picture X"
    re.compile(
        r"^" + POLITE + r"(?P<verb>draw|paint|sketch|illustrate|render|generate|create|make|design|imagine|"
        r"visuali[sz]e|picture|depict|show|give|produce|whip\s+up|mock\s+up|send|get)\s+"
        r"(?:(?:me|us)\s+|for\s+me\s+)?(?P<rest>.+)$",
        _I,
    ),
    # "I'd like / I want a picture of X"
    re.compile(
        r"^(?:i(?:'d|\s+would)\s+(?:like|love)|i\s+want|i\s+need|i\s+wanna)\s+(?P<rest>"
        + ARTICLE
        + r"(?:[\w:-]+\s+){0,2}"
        + IMAGE_NOUN
        + r"\s+of\s+.+)$",
        _I,
    ),
    # a bare image phrase: "a photo of a red barn", "picture of a sunset please"
    re.compile(r"^(?P<rest>" + ARTICLE + r"(?:[\w:-]+\s+){0,2}" + IMAGE_NOUN + r"\s+of\s+.+)$", _I),
]

# Verbs that only ask for a picture when an image noun follows ("make me a sandwich" is not a picture).
NEEDS_IMAGE_NOUN = {"make", "give", "get", "send", "find", "produce"}
# Verbs that name a style.
VERB_STYLE = {"sketch": "sketch", "sketching": "sketch", "paint": "artistic", "painting": "artistic"}

NON_VISUAL = {
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
DETERMINERS = {"a", "an", "the", "some", "my", "our", "your", "their", "his", "her", "any", "few", "couple", "of"}

ASPECT_WORDS: list[tuple[re.Pattern[str], str]] = [
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
    (
        re.compile(r"(?:,\s*|\bin\s+(?:a\s+)?|\bas\s+(?:a\s+)?)square(?:\s+format)?\s*$|\bsquare\s+format\b", _I),
        "1:1",
    ),
]
RATIO = re.compile(
    r"\b(?:(?:in|at|with)\s+(?:an?\s+)?)?(\d{1,2})\s*[:x×]\s*(\d{1,2})\b(?:\s+(?:aspect\s+)?ratio)?(?:\s+format)?",
    _I,
)

STYLE_PATTERNS: list[tuple[re.Pattern[str], str]] = [
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
    (
        re.compile(r"\b(?:in\s+(?:a\s+|an\s+)?)?(?:modern|minimalist|contemporary)(?:-|\s+)style\b", _I),
        "modern",
    ),
]
NOUN_STYLE: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"photo|photograph|snapshot", _I), "photorealistic"),
    (re.compile(r"sketch|drawing", _I), "sketch"),
    (re.compile(r"painting|watercolou?r|artwork", _I), "artistic"),
]
MAKE_IT = re.compile(r",?\s*(?:and\s+)?make\s+it\s+(?:look\s+)?(?:more\s+)?(?P<what>[\w\s:-]+?)\s*$", _I)
LEAD_NOUN = re.compile(
    r"^" + ARTICLE + r"(?:(?P<adj>[\w-]+)\s+)?(?P<noun>" + IMAGE_NOUN + r")\s+of\s+(?P<rest>.+)$", _I
)
TRAILING = re.compile(
    r"(?:[\s,]+(?:please|pls|for\s+me|for\s+us|for\s+you|now|right\s+now|real\s+quick|quickly|thanks|"
    r"thank\s+you|if\s+you\s+can|if\s+possible|on\s+(?:the|your)\s+screen|on\s+screen|"
    r"as\s+well|ok|okay))+\s*$",
    _I,
)
LEADING_POSSESSIVE = re.compile(r"^(?:our|your|my)\s+", _I)
