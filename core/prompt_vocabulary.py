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
    r"(?:(?:can|could|would|will)\s+(?:you|u)\s+(?:please\s+|maybe\s+|just\s+|possibly\s+|kindly\s+)?|"
    r"please\s+|kindly\s+|"
    r"i(?:'d|\s+would)\s+like\s+(?:you\s+)?to\s+|i\s+(?:want|need)\s+(?:you\s+)?to\s+|go\s+ahead\s+and\s+|"
    r"(?:is\s+it|would\s+it\s+be)\s+possible\s+(?:for\s+you\s+)?to\s+|(?:any|is\s+there\s+a)\s+chance\s+"
    r"(?:you\s+)?(?:could|can)\s+|do\s+you\s+think\s+(?:you\s+)?(?:could|can)\s+|"
    r"i\s+(?:was\s+)?wonder(?:ing)?\s+if\s+you\s+(?:could|can)\s+|(?:can|could)\s+i\s+get\s+you\s+to\s+|"
    r"let'?s\s+|try\s+to\s+|now\s+|quickly\s+|just\s+)*"
)
IMAGE_NOUN = (
    r"(?:picture|pic|image|photo|photograph|drawing|painting|oil\s+painting|sketch|illustration|rendering|"
    r"render|visual|visualization|visualisation|mock-?up|watercolou?r|artwork|snapshot|shot)s?"
)
ARTICLE = r"(?:(?:a|an|the|some|one|another|a\s+few|few|couple\s+of|a\s+couple\s+of)\s+)?"
VIDEO_NOUN = r"(?:video|clip|animation|short\s+film|film|movie|gif|reel|timelapse|time-lapse)s?"
#: "animate this", "animate the last picture", "animate my photo": the picture already made, not a new subject.
ANIMATE_REFERENCE = re.compile(
    r"^(?:(?:the|my|our|your|this|that)\s+(?:last\s+|latest\s+|previous\s+|new\s+)?(?:one|" + IMAGE_NOUN + r")|"
    r"this|that|it|them|these|those)"
    r"\b[\s,:;.-]*(?:(?:and|so|to)\s+)?(?:make\s+)?(?P<motion>.*)$",
    _I,
)

# Each trigger captures the subject in group "rest"; "verb" (when present) can imply a style.
TRIGGERS: list[re.Pattern[str]] = [
    # "what does/would X look like (Y)"
    re.compile(r"^what\s+(?:does|do|would|will|might)\s+(?P<rest>.+?)\s+look\s+like\b(?P<tail>.*)$", _I),
    # show-and-tell: "here's what X looks like", "this is what X would look like"
    re.compile(
        r"^(?:here'?s|here\s+is|this\s+is|that'?s)\s+what\s+(?P<rest>.+?)\s+(?:looks|would\s+look|will\s+look|"
        r"might\s+look|could\s+look)\s+like\b(?P<tail>.*)$",
        _I,
    ),
    # colon-led: "draw: a fox", "prompt: a cabin", "video: waves at dusk", "picture this: a red barn"
    re.compile(
        r"^(?P<verb>prompt|image|picture|photo|pic|imagine|video|clip|animation)\s*(?:this\s*)?[:=-]\s*"
        r"(?P<rest>.+)$",
        _I,
    ),
    re.compile(r"^(?P<verb>picture|imagine)\s+this\s*[,:;-]?\s+(?P<rest>.+)$", _I),
    # "animate this / the last picture (, the waves rolling in)", "animate a dragon flying", "bring it to life"
    re.compile(r"^" + POLITE + r"(?P<verb>animate)\s+(?P<rest>.+)$", _I),
    re.compile(r"^" + POLITE + r"(?P<verb>bring)\s+(?P<rest>.+?)\s+to\s+life\b(?P<tail>.*)$", _I),
    # "would you mind drawing X", "mind sketching X for me"
    re.compile(
        r"^(?:(?:would|do)\s+you\s+)?mind\s+(?P<verb>drawing|painting|sketching|showing|making|generating|"
        r"creating|rendering|designing|illustrating|picturing|animating)\s+(?:(?:me|us)\s+)?(?P<rest>.+)$",
        _I,
    ),
    # "can I get / have a picture of X", "could we have a video of X"
    re.compile(r"^(?:can|could|may)\s+(?:i|we)\s+(?:please\s+)?(?P<verb>get|have)\s+(?P<rest>.+)$", _I),
    # "how about a picture of X", "what about a video of X"
    re.compile(
        r"^(?:how|what)\s+about\s+(?P<rest>"
        + ARTICLE
        + r"(?:[\w:-]+\s+){0,3}(?:"
        + IMAGE_NOUN
        + "|"
        + VIDEO_NOUN
        + r")\s+of\s+.+)$",
        _I,
    ),
    # spoken show-and-tell: "let's take a look at X", "check out X", "I'm putting X up on your screen"
    re.compile(
        r"^(?:let'?s|let\s+me|we\s+can|we'?ll|you\s+can)\s+(?P<verb>take\s+a\s+look|have\s+a\s+look|look)\s+at\s+"
        r"(?P<rest>.+)$",
        _I,
    ),
    re.compile(r"^(?P<verb>check\s+out|take\s+a\s+look\s+at|have\s+a\s+look\s+at)\s+(?P<rest>.+)$", _I),
    re.compile(
        r"^(?:let\s+me|i'?ll|i\s+will|i'?m\s+going\s+to|i\s+am\s+going\s+to|i'?m|i\s+am)\s+"
        r"(?P<verb>put(?:ting)?|pop(?:ping)?|throw(?:ing)?)\s+(?:up\s+)?(?P<rest>.+?)(?:\s+up)?"
        r"\s+on\s+(?:the|your)\s+screen\b.*$",
        _I,
    ),
    re.compile(
        r"^you(?:'ll|\s+will|\s+should|'re\s+going\s+to|\s+are\s+going\s+to)\s+(?:now\s+)?see\s+(?P<rest>.+?)"
        r"\s+(?:on|pop\s+up\s+on|appear\s+on)\s+(?:the|your)\s+screen\b.*$",
        _I,
    ),
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
        r"^(?:is\s+it|would\s+it\s+be)\s+possible\s+(?:for\s+(?:me|us)\s+)?to\s+see\s+(?P<rest4>.+)$|"
        r"^(?:i(?:'d|\s+would)\s+(?:like|love)|i\s+want|i\s+wanna|i\s+need)\s+(?:to\s+)?see\s+(?P<rest2>.+)$|"
        r"^let\s+me\s+see\s+(?P<rest3>.+)$",
        _I,
    ),
    # imperative: "(can you) draw me X", "show me X", "generate X", "picture X", "draw: X"
    re.compile(
        r"^" + POLITE + r"(?P<verb>draw|paint|sketch|illustrate|render|generate|create|make|design|imagine|"
        r"visuali[sz]e|picture|depict|show|give|produce|whip\s+up|mock\s+up|send|get|film|shoot)(?:\s*:\s*|\s+)"
        r"(?:(?:me|us)\s+|for\s+me\s+)?(?P<rest>.+)$",
        _I,
    ),
    # "I'd like / I want a picture of X"
    re.compile(
        r"^(?:i(?:'d|\s+would)\s+(?:like|love)|i\s+want|i\s+need|i\s+wanna)\s+(?P<rest>"
        + ARTICLE
        + r"(?:[\w:-]+\s+){0,3}(?:"
        + IMAGE_NOUN
        + "|"
        + VIDEO_NOUN
        + r")\s+of\s+.+)$",
        _I,
    ),
    # a bare image phrase: "a photo of a red barn", "picture of a sunset please", "a short video of waves"
    re.compile(
        r"^(?P<rest>" + ARTICLE + r"(?:[\w:-]+\s+){0,3}(?:" + IMAGE_NOUN + "|" + VIDEO_NOUN + r")\s+of\s+.+)$", _I
    ),
]

# Verbs that only ask for a picture when an image noun follows ("make me a sandwich" is not a picture).
NEEDS_IMAGE_NOUN = {"make", "making", "give", "get", "have", "send", "find", "produce", "film", "shoot"}
#: Verbs and colon labels that ask for a video.
VIDEO_VERBS = {"animate", "animating", "video", "clip", "animation", "film", "shoot", "bring"}
#: Show-and-tell verbs, after which "this" points at what is shown ("check out this quartz").
SHOW_VERBS = {"check out", "take a look at", "have a look at", "take a look", "have a look", "look"}
DEMONSTRATIVE = re.compile(r"^(?:this|these|that|those)\s+(?=\S+)", _I)
#: Verbs that, on a picture already made ("animate this"), ask to animate it.
ANIMATE_VERBS = {"animate", "animating", "bring"}
# Verbs that name a style.
VERB_STYLE = {"sketch": "sketch", "sketching": "sketch", "paint": "artistic", "painting": "artistic"}
#: The video lead: "a short video of", "a 5 second clip of", "an animation of".
LEAD_VIDEO = re.compile(
    r"^" + ARTICLE + r"(?:(?:short|quick|little|brief|small|\d{1,2}[\s-]?(?:second|sec|s)|few[\s-]second)[\s,-]+){0,2}"
    r"(?P<noun>" + VIDEO_NOUN + r")\s+(?:of|showing|where|with)\s+(?P<rest>.+)$",
    _I,
)

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
