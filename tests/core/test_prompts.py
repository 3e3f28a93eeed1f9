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

V, A = "video", "animate"

# Phrasings new users tried: polite questions, colon-led imperatives, spoken show-and-tell, videos and animations.
NEW_CASES: list[tuple[str, ImageRequest | None]] = [
    # --- polite questions (chat and spoken)
    ("would you mind drawing a lighthouse on a cliff?", R("a lighthouse on a cliff")),
    ("Is it possible to see a picture of a white shaker kitchen?", R("a white shaker kitchen")),
    ("could I get a photo of a walnut dining table", R("a walnut dining table", "photorealistic")),
    ("any chance you could sketch the Brooklyn bridge at night?", R("the Brooklyn bridge at night", "sketch")),
    ("do you think you could show me a patio with grey pavers", R("a patio with grey pavers")),
    ("I was wondering if you could paint a field of sunflowers", R("a field of sunflowers", "artistic")),
    ("how about a picture of the blue pearl granite in a bathroom?", R("the blue pearl granite in a bathroom")),
    ("Can we have an image of a reading nook, portrait mode please", R("a reading nook", None, "9:16")),
    ("mind sketching a floor plan for a tiny house?", R("a floor plan for a tiny house", "sketch")),
    ("would it be possible to create a mock-up of a wine label, square", R("a wine label", None, "1:1")),
    # --- colon-led imperatives
    ("Draw: a red fox curled up in the snow", R("a red fox curled up in the snow")),
    ("prompt: a log cabin by a frozen lake, 16:9", R("a log cabin by a frozen lake", None, "16:9")),
    ("imagine: a treehouse village at dusk", R("a treehouse village at dusk")),
    ("picture this: a red barn in a misty field", R("a red barn in a misty field")),
    ("Image: espresso cups on a marble counter, realistic", R("espresso cups on a marble counter", "photorealistic")),
    ("video: fireworks over a harbor", R("fireworks over a harbor", kind=V)),
    # --- spoken show-and-tell (agent lines)
    ("Let's take a look at a navy blue island with brass pulls", R("a navy blue island with brass pulls")),
    ("check out this calacatta quartz with a mitered edge", R("calacatta quartz with a mitered edge")),
    ("I'm putting the kitchen render up on your screen", R("the kitchen render")),
    ("you'll see the marble backsplash on your screen in a second", R("the marble backsplash")),
    ("Here's what a waterfall edge looks like on a dark island", R("a waterfall edge on a dark island")),
    ("This is what your patio would look like with travertine", R("patio with travertine")),
    ("Let me put up a rendering of the deck on your screen", R("the deck")),
    # --- videos
    ("make a short video of waves crashing on rocks", R("waves crashing on rocks", kind=V)),
    ("can you make me a 5 second clip of a spinning globe?", R("a spinning globe", kind=V)),
    ("I'd love a short clip of a campfire at night", R("a campfire at night", kind=V)),
    ("show me a video of the kitchen with the lights coming on", R("the kitchen with the lights coming on", kind=V)),
    ("could you animate a dragon flying over mountains", R("a dragon flying over mountains", kind=V)),
    ("generate a quick animation of a paper plane, widescreen", R("a paper plane", None, "16:9", V)),
    ("a timelapse of clouds over a city skyline", R("clouds over a city skyline", kind=V)),
    # --- animating the picture already made
    ("animate this", R("", kind=A)),
    ("animate the last picture, make the water ripple", R("the water ripple", kind=A)),
    ("bring this photo to life", R("", kind=A)),
    ("please animate it so the flames flicker", R("the flames flicker", kind=A)),
    # --- not requests
    ("can you send me the video link", None),
    ("how long does a video take?", None),
    ("I watched your video yesterday", None),
    ("video call me tomorrow at ten", None),
    ("can you make videos?", None),
    ("let me take a look at your order", None),
    ("let me put you on hold for a moment", None),
    ("let's take a look at the calendar", None),
    ("check out this link", None),
    ("would you mind holding for a second?", None),
    ("is it possible to change my appointment?", None),
    ("could I get a refund please", None),
    ("how about Thursday at noon?", None),
    ("note: the delivery is on Monday", None),
    ("you'll see the invoice in your email", None),
    ("I'll put that in the notes", None),
]


ALL_CASES = CASES + NEW_CASES


@pytest.mark.parametrize(("text", "expected"), ALL_CASES, ids=[c[0][:50] or "empty" for c in ALL_CASES])
def test_extract_image_request(text: str, expected: ImageRequest | None) -> None:
    assert extract_image_request(text) == expected


def test_table_is_large_and_mixed() -> None:
    assert len(NEW_CASES) >= 40 and sum(1 for _, e in NEW_CASES if e is None) >= 12
    assert sum(1 for _, e in NEW_CASES if e and e.kind != "image") >= 10
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
