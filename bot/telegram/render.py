"""How the Telegram bot renders things: captions, keyboards, photo files, texts.

Limits (Telegram Bot API, core.telegram.org/bots/api): caption 1,024 characters, ``callback_data`` 64 bytes,
photo upload 10 MB. Callback data: ``a:<job>`` again, ``s:<job>`` style menu, ``S:<job>:<style>`` restyle, ``o:<job>``
original, ``e:<u|r|f|a>:<job>`` an edit (upscale, remove background, restore faces, animate), ``b`` buy menu,
``B:<product>`` checkout, ``p:<setting>:<value>`` a setting, ``noop`` a heading.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

from PIL import Image
from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from core.billing import Product
from core.chat import ChatPreferences, ChatService
from core.generation import JobView

CAPTION_LIMIT = 1024
PHOTO_LIMIT_BYTES = 10 * 1024 * 1024
BOT_UPLOAD_LIMIT_BYTES = 50 * 1024 * 1024  # larger videos go as a link
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}

COMMANDS = [
    ("imagine", "Make a picture: /imagine a cabin in the snow"),
    ("image", "Same as /imagine"),
    ("video", "Make a short video: /video waves rolling onto a beach"),
    ("balance", "Credits and session time left"),
    ("buy", "Buy credits or an hourly session"),
    ("redeem", "Redeem a session code: /redeem ABCD-EFGH-JKMN"),
    ("library", "Find your pictures: /library kitchen"),
    ("settings", "Default model, style and aspect ratio"),
    ("help", "What I can do"),
]

EXAMPLES = (
    "Examples:\n"
    "/imagine black galaxy granite countertops in a modern kitchen\n"
    "/imagine a lighthouse at dusk in artistic style\n"
    "or just write: draw a red fox in the snow, 16:9"
)

BUY_TEXT = (
    "Choose a credit pack (never expires) or an hourly session. Pay securely with Stripe; "
    "I'll message you when it's done."
)
LABELS = {"model": "Model", "style": "Style", "aspect_ratio": "Aspect ratio"}


def webhook_secret(token: str, configured: str | None) -> str:
    """The ``secret_token`` given to ``setWebhook``: TELEGRAM_WEBHOOK_SECRET, else derived from the bot token
    (1-256 of ``A-Za-z0-9_-``, as the Bot API requires)."""
    if configured:
        return configured
    return hashlib.sha256(b"showme-telegram-webhook:" + token.encode()).hexdigest()


def photo_bytes(path: Path) -> tuple[bytes, str]:
    """The stored file as ``sendPhoto`` takes it: as is when JPEG/PNG/WebP under 10 MB, else re-encoded as
    JPEG (at most 2,560 pixels on the longer side). Returns ``(bytes, file name)``."""
    data = path.read_bytes()
    if path.suffix.lower() in PHOTO_SUFFIXES and len(data) <= PHOTO_LIMIT_BYTES:
        return data, path.name
    with Image.open(io.BytesIO(data)) as image:
        image = image.convert("RGB")
        image.thumbnail((2560, 2560))
        out = io.BytesIO()
        image.save(out, format="JPEG", quality=90)
    return out.getvalue(), f"{path.stem}.jpg"


def caption_for(job: JobView) -> str:
    """The photo's caption: the prompt (cut to fit) and the model, aspect ratio and style."""
    tail = f"\n\n{job.model} · {job.aspect_ratio}" + (f" · {job.style}" if job.style else "")
    room = CAPTION_LIMIT - len(tail)
    prompt = job.prompt if len(job.prompt) <= room else job.prompt[: room - 1] + "…"
    return prompt + tail


#: Edit buttons' callback letters and the operations they run.
EDITS = {"u": "upscale", "r": "remove_background", "f": "restore_face", "a": "animate"}
EDIT_ANSWERS = {
    "upscale": "Upscaling…", "remove_background": "Removing the background…", "restore_face": "Restoring faces…",
    "animate": "Animating it (about a minute)…",
}  # fmt: skip


def result_keyboard(job_id: str, kind: str = "image") -> InlineKeyboardMarkup:
    """Under a picture: 🔁 Again, 🎨 Style, 📄 Original, then ⬆️ Upscale, ✂️ Remove background, 🎬 Animate.
    Under a video: 🔁 Again and 📄 Original."""
    if kind == "video":
        return InlineKeyboardMarkup([[
            InlineKeyboardButton("🔁 Again", callback_data=f"a:{job_id}"),
            InlineKeyboardButton("📄 Original", callback_data=f"o:{job_id}"),
        ]])  # fmt: skip
    return InlineKeyboardMarkup(
        [
            [
                InlineKeyboardButton("🔁 Again", callback_data=f"a:{job_id}"),
                InlineKeyboardButton("🎨 Style", callback_data=f"s:{job_id}"),
                InlineKeyboardButton("📄 Original", callback_data=f"o:{job_id}"),
            ],
            [
                InlineKeyboardButton("⬆️ Upscale", callback_data=f"e:u:{job_id}"),
                InlineKeyboardButton("✂️ Remove background", callback_data=f"e:r:{job_id}"),
                InlineKeyboardButton("🎬 Animate", callback_data=f"e:a:{job_id}"),
            ],
        ]
    )


def has_alpha(path: Path) -> bool:
    """True when the stored picture has transparency (reads the header, and the pixels only for a PNG)."""
    with Image.open(path) as image:
        if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
            return image.mode not in ("RGBA", "LA") or image.getextrema()[-1][0] < 255
    return False


def poster_jpeg(path: Path) -> bytes:
    """A video's poster as ``sendVideo``'s ``thumbnail`` wants it: JPEG, at most 320 pixels a side."""
    with Image.open(path) as image:
        small = image.convert("RGB")
        small.thumbnail((320, 320))
        out = io.BytesIO()
        small.save(out, format="JPEG", quality=85)
    return out.getvalue()


def styles_keyboard(job_id: str, styles: list[str]) -> InlineKeyboardMarkup:
    """One button per style preset, to remake the job in it."""
    return InlineKeyboardMarkup([[InlineKeyboardButton(name, callback_data=f"S:{job_id}:{name}")] for name in styles])


def buy_button() -> InlineKeyboardMarkup:
    """💳 Buy credits, under a lack-of-credits answer."""
    return InlineKeyboardMarkup([[InlineKeyboardButton("💳 Buy credits", callback_data="b")]])


def buy_keyboard(chat: ChatService, products: list[Product], links: dict[str, str] | None) -> InlineKeyboardMarkup:
    """One button per product: a URL button to its signed checkout link when ``links`` are given (an https
    public URL), else a callback button that creates the checkout session (Telegram refuses plain-http and
    loopback URLs)."""
    if links is not None:
        rows = [[InlineKeyboardButton(chat.product_label(p), url=links[p.id])] for p in products]
    else:
        rows = [[InlineKeyboardButton(chat.product_label(p), callback_data=f"B:{p.id}")] for p in products]
    return InlineKeyboardMarkup(rows)


def settings_keyboard(choices: dict[str, list[str]], current: ChatPreferences) -> InlineKeyboardMarkup:
    """Each setting's heading, then its values in rows of three (the current one ticked)."""
    rows: list[list[InlineKeyboardButton]] = []
    for key, values in choices.items():
        rows.append([InlineKeyboardButton(f"— {LABELS[key]} —", callback_data="noop")])
        options = values + (["none"] if key == "style" else [])
        chosen = getattr(current, key) or ("none" if key == "style" else None)
        buttons = [
            InlineKeyboardButton(("✓ " if chosen == value else "") + value, callback_data=f"p:{key}:{value}")
            for value in options
        ]
        rows.extend(buttons[i : i + 3] for i in range(0, len(buttons), 3))
    return InlineKeyboardMarkup(rows)


def settings_text(current: ChatPreferences, default_model: str) -> str:
    """The user's defaults as a message."""
    model = current.model or f"{default_model} (default)"
    return (
        f"Your defaults:\nModel: {model}\nStyle: {current.style or 'none'}\n"
        f"Aspect ratio: {current.aspect_ratio or '1:1'}\n\nTap to change."
    )
