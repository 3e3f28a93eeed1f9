"""Table-driven test of picture-request extraction: chat and spoken lines, requests and non-requests."""

from __future__ import annotations

import pytest

from core.errors import InvalidRequest, PromptRefused
from core.prompts import ImageRequest, apply_style, check_prompt, extract_image_request

R = ImageRequest

CASES: list[tuple[str, ImageRequest | None]] = [
    # --- chat requests
    ("can you draw me a red fox in the snow, widescreen", R("a red fox in the snow", None, "16:9")),
    ("draw a cat wearing a hat", R("a cat wearing a hat")),
    ("imagine a castle on a hill at sunset", R("a castle on a hill at sunset")),
    ("generate an image of a futuristic city skyline at night", R("a futuristic city skyline at night")),
    ("Could you please create a picture of a golden retriever puppy?", R("a golden retriever puppy")),
    ("make me a photorealistic image of a mountain lake", R("a mountain lake", "photorealistic")),
    ("paint a watercolor of a lighthouse", R("a lighthouse", "artistic")),
    ("sketch a vintage car", R("a vintage car", "sketch")),
    ("a pencil sketch of an old oak tree please", R("an old oak tree", "sketch")),
    ("Draw me a dragon in portrait mode", R("a dragon", None, "9:16")),
    ("generate a sunset over the ocean in 16:9", R("a sunset over the ocean", None, "16:9")),
    ("I'd like a square picture of a latte art heart", R("a latte art heart", None, "1:1")),
    ("create a modern style living room with oak floors", R("a living room with oak floors", "modern")),
    ("render a sports car in a sketch style, landscape", R("a sports car", "sketch", "16:9")),
    ("picture a cabin by a frozen lake at dawn", R("a cabin by a frozen lake at dawn")),
    ("visualize a rooftop garden with string lights, vertical", R("a rooftop garden with string lights", None, "9:16")),
    ("a photo of a red barn in a wheat field, photorealistic", R("a red barn in a wheat field", "photorealistic")),
    ("could you paint me an oil painting of a ship in a storm", R("a ship in a storm", "artistic")),
    ("Draw a portrait of my grandmother as a queen", R("a portrait of my grandmother as a queen")),
    (
        "design a logo for a coffee shop called Bean There, square",
        R("a logo for a coffee shop called Bean There", None, "1:1"),
    ),
    ("show me a 4:3 image of a vintage diner", R("a vintage diner", None, "4:3")),
    ("Give me a picture of a snowy owl, make it realistic", R("a snowy owl", "photorealistic")),
    ("hey, can you make a picture of two cats playing chess?", R("two cats playing chess")),
    ("please generate a cyberpunk street market in the rain", R("a cyberpunk street market in the rain")),
    ("hey showme, draw a fox on a skateboard", R("a fox on a skateboard")),
    ("I need a picture of a blue sofa in a 16:9 format", R("a blue sofa", None, "16:9")),
    ("draw a robot reading a book in an artistic style", R("a robot reading a book", "artistic")),
    # --- viewer / caller lines on a voice call
    ("show me black galaxy granite in a modern kitchen", R("black galaxy granite in a modern kitchen")),
    ("what does a quartz waterfall island look like?", R("a quartz waterfall island")),
    ("what would white oak cabinets look like with brass handles", R("white oak cabinets with brass handles")),
    ("can I see a picture of the blue pearl granite?", R("the blue pearl granite")),
    ("I want to see marble tiles in a bathroom", R("marble tiles in a bathroom")),
    ("i'd love to see a mid-century modern living room", R("a mid-century modern living room")),
    # --- agent promises on a voice call
    ("Let me show you black galaxy granite countertops", R("black galaxy granite countertops")),
    ("I'll show you what a waterfall edge looks like on this countertop", R("a waterfall edge on this countertop")),
    ("Here's a picture of our Calacatta gold quartz", R("Calacatta gold quartz")),
    ("I'm generating an image of a cozy cabin in the woods for you now", R("a cozy cabin in the woods")),
    ("Let me pull up an image of Kashmir white granite", R("Kashmir white granite")),
    ("I can show you a rendering of the deck with composite boards", R("the deck with composite boards")),
    ("Sure, I'll create a visual of a navy blue kitchen island", R("a navy blue kitchen island")),
    ("ok, let me show you a few granite samples", R("a few granite samples")),
    (
        "Great choice. Let me show you the Taj Mahal quartzite in a widescreen view",
        R("the Taj Mahal quartzite in a view", None, "16:9"),
    ),
    # --- not picture requests
    ("what time do you open tomorrow?", None),
    ("show me how to reset my password", None),
    ("show me my balance", None),
    ("can you show me the menu", None),
    ("make me a sandwich", None),
    ("create an account for me", None),
    ("generate a report of last month's sales", None),
    ("thanks, that looks great!", None),
    ("how much does the flash plan cost?", None),
    ("hello there", None),
    ("we're open from nine to five on weekdays", None),
    ("Let me check on that order for you.", None),
    ("Do you have any appointments on Friday?", None),
    ("draw", None),
    ("can you draw me something?", None),
    ("Show me the hours for Saturday", None),
    ("I will show you our pricing page", None),
    ("", None),
    ("show me around", None),
    ("what do you think?", None),
    ("can you generate an invoice", None),
    ("let me show you how it works", None),
]


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[c[0][:50] or "empty" for c in CASES])
def test_extract_image_request(text: str, expected: ImageRequest | None) -> None:
    assert extract_image_request(text) == expected


def test_table_is_large_and_mixed() -> None:
    assert len(CASES) >= 40
    assert sum(1 for _, e in CASES if e is None) >= 15
    assert sum(1 for _, e in CASES if e and e.style) >= 8
    assert sum(1 for _, e in CASES if e and e.aspect_ratio) >= 8


def test_apply_style_appends_preset_and_rejects_unknown() -> None:
    presets = {"sketch": "pencil sketch"}
    assert apply_style("a cat", "sketch", presets) == "a cat, pencil sketch"
    assert apply_style("a cat", None, presets) == "a cat"
    with pytest.raises(InvalidRequest) as err:
        apply_style("a cat", "cubist", presets)
    assert err.value.field == "style"


def test_blocked_terms_refuse_whole_words_only() -> None:
    with pytest.raises(PromptRefused, match="'gore'"):
        check_prompt("a lot of Gore everywhere", ["gore"])
    assert check_prompt("  a gorilla  ", ["gore"]) == "a gorilla"
    with pytest.raises(InvalidRequest, match="empty"):
        check_prompt("   ", [])
    with pytest.raises(InvalidRequest, match="longer than 10"):
        check_prompt("x" * 11, [], max_length=10)
