"""The Telegram bot's handlers: commands, messages and buttons (PTB ``CommandHandler``, ``MessageHandler``,
``CallbackQueryHandler(pattern=…)``). Each translates an update into ``core.chat`` calls and renders the answer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, InputMediaPhoto, Message, Update, User
from telegram.constants import ChatAction, ChatType
from telegram.error import TelegramError
from telegram.ext import (
    Application,
    ApplicationHandlerStop,
    BaseHandler,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from bot.telegram import render
from core.billing import Fulfilment
from core.chat import ChatService
from core.errors import InsufficientCredits, ShowmeError
from core.generation import GenerationRequest, JobView

log = logging.getLogger(__name__)

Context = ContextTypes.DEFAULT_TYPE
JOB = r"(?P<job>[0-9a-f]{32})"


def _key(message: Message) -> str:
    """A redelivered update (same chat and message) returns the first job and is charged once."""
    return f"telegram:{message.chat_id}:{message.message_id}"


class Handlers:
    """The handlers of one bot; ``chat`` is the core they call."""

    def __init__(self, app: Application[Any, Any, Any, Any, Any, Any], chat: ChatService) -> None:
        self.app = app
        self.chat = chat
        self.settings = chat.settings
        self.tasks: set[asyncio.Task[Any]] = set()

    def handlers(self) -> list[BaseHandler[Any, Any, Any]]:
        """Every handler, in the order PTB tries them."""
        text = filters.TEXT & ~filters.COMMAND
        return [
            CommandHandler("start", self.cmd_start),
            CommandHandler("help", self.cmd_help),
            CommandHandler(["imagine", "image"], self.cmd_imagine),
            CommandHandler("video", self.cmd_video),
            CommandHandler("balance", self.cmd_balance),
            CommandHandler("buy", self.cmd_buy),
            CommandHandler("redeem", self.cmd_redeem),
            CommandHandler("library", self.cmd_library),
            CommandHandler("settings", self.cmd_settings),
            CallbackQueryHandler(self.on_again, pattern=rf"^a:{JOB}$"),
            CallbackQueryHandler(self.on_style_menu, pattern=rf"^s:{JOB}$"),
            CallbackQueryHandler(self.on_restyle, pattern=rf"^S:{JOB}:(?P<style>.+)$"),
            CallbackQueryHandler(self.on_original, pattern=rf"^o:{JOB}$"),
            CallbackQueryHandler(self.on_edit, pattern=rf"^e:(?P<op>[{''.join(render.EDITS)}]):{JOB}$"),
            CallbackQueryHandler(self.on_buy_menu, pattern=r"^b$"),
            CallbackQueryHandler(self.on_checkout, pattern=r"^B:(?P<product>.+)$"),
            CallbackQueryHandler(self.on_setting, pattern=r"^p:(?P<key>[a-z_]+):(?P<value>.+)$"),
            CallbackQueryHandler(self.on_other_button),
            MessageHandler(text & filters.ChatType.PRIVATE, self.on_private_text),
            MessageHandler(text & filters.REPLY, self.on_reply),
        ]

    async def once(self, update: Update, context: Context) -> None:
        """Stop a redelivered update (Telegram retries a webhook whose answer it did not get, and a restarted
        poller may fetch an update again): its photo was sent already. The first delivery goes on."""
        if not await self.chat.first_delivery(f"{self.app.bot.id}:{update.update_id}"):
            log.info("Telegram update %s delivered again: ignored", update.update_id)
            raise ApplicationHandlerStop

    # -- helpers ---------------------------------------------------------------------------------------------

    async def _account_id(self, user: User) -> int:
        account, _ = await self.chat.account(user.id, user.full_name)
        return account.id

    def _buy_keyboard(self, account_id: int) -> InlineKeyboardMarkup:
        billing = self.chat.billing
        products = billing.packs() + billing.plans()
        links = None
        if self.settings.server.public_url.startswith("https://"):
            links = {p.id: billing.checkout_link(account_id, p.id, "telegram") for p in products}
        return render.buy_keyboard(self.chat, products, links)

    async def _say_error(self, chat_id: int, err: Exception, reply_to: int | None = None) -> None:
        markup = render.buy_button() if isinstance(err, InsufficientCredits) else None
        await self.app.bot.send_message(
            chat_id, self.chat.error_text(err), reply_markup=markup, reply_to_message_id=reply_to
        )

    # -- generation ------------------------------------------------------------------------------------------

    async def generate(self, chat_id: int, user: User, request: GenerationRequest, reply_to: int | None) -> None:
        """Run the request in the user's line and render each step: a status message edited as the picture
        progresses, the "sending photo" indicator meanwhile, then the photo or the failure."""
        account_id = await self._account_id(user)
        status: Message | None = None
        action: asyncio.Task[None] | None = None
        events = self.chat.imagine(
            str(user.id), account_id, request, progress_seconds=self.settings.telegram.progress_seconds
        )
        try:
            async for event in events:
                if event.kind == "queued":
                    await self.app.bot.send_message(chat_id, event.text, reply_to_message_id=reply_to)
                elif event.kind == "refused":
                    await self._say_error(chat_id, event.error or ShowmeError(event.text), reply_to)
                elif event.kind == "started":
                    status = await self.app.bot.send_message(chat_id, event.text, reply_to_message_id=reply_to)
                    video = event.job is not None and event.job.kind in ("video", "image_to_video")
                    action = asyncio.create_task(self._keep_uploading(chat_id, video))
                elif event.kind == "progress" and status is not None:
                    with contextlib.suppress(TelegramError):
                        await status.edit_text(event.text)
                elif event.kind in ("succeeded", "failed"):
                    await self._finish(chat_id, event.kind, event.text, event.job, status, action, reply_to)
                    action = None
        finally:
            if action is not None:
                action.cancel()

    async def _finish(
        self, chat_id: int, kind: str, text: str, job: JobView | None, status: Message | None,
        action: asyncio.Task[None] | None, reply_to: int | None,
    ) -> None:  # fmt: skip
        if action is not None:
            action.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await action
        if kind == "failed" or job is None:
            if status is not None:
                await status.edit_text(text)
            return
        await self._send_result(chat_id, job, reply_to)
        if status is not None:
            with contextlib.suppress(TelegramError):
                await status.delete()

    async def _keep_uploading(self, chat_id: int, video: bool = False) -> None:
        # The "sending photo…" indicator lasts about 5 s; renew it until cancelled.
        action = ChatAction.UPLOAD_VIDEO if video else ChatAction.UPLOAD_PHOTO
        while True:
            with contextlib.suppress(TelegramError):
                await self.app.bot.send_chat_action(chat_id, action)
            await asyncio.sleep(4.5)

    async def _send_result(self, chat_id: int, job: JobView, reply_to: int | None) -> None:
        """The job's output as Telegram shows it best: a video (``sendVideo`` with its size, length and
        poster), a picture with transparency as a document (a photo would lose its alpha), else a photo."""
        asset = job.assets[0]
        path = await self.chat.blobs.local_file(asset.blob_key)
        common: dict[str, Any] = {
            "caption": render.caption_for(job), "reply_markup": render.result_keyboard(job.id, asset.kind),
            "reply_to_message_id": reply_to,
        }  # fmt: skip
        if asset.kind == "video" and asset.size_bytes > render.BOT_UPLOAD_LIMIT_BYTES:
            await self.app.bot.send_message(chat_id, f"{render.caption_for(job)}\n{asset.url}",
                                            reply_to_message_id=reply_to)  # fmt: skip
        elif asset.kind == "video":
            poster = await self.chat.blobs.local_file(asset.thumb_key) if asset.thumb_key else None
            await self.app.bot.send_video(
                chat_id, video=await asyncio.to_thread(path.read_bytes), filename=f"showme-{job.id[:8]}{path.suffix}",
                width=asset.width,
                height=asset.height, duration=round(asset.duration_seconds or 0) or None, supports_streaming=True,
                thumbnail=await asyncio.to_thread(render.poster_jpeg, poster) if poster else None, **common,
            )  # fmt: skip
        elif await asyncio.to_thread(render.has_alpha, path):
            data = await asyncio.to_thread(path.read_bytes)
            await self.app.bot.send_document(
                chat_id, document=data, filename=f"showme-{job.id[:8]}{path.suffix}", **common
            )
        else:
            data, filename = await asyncio.to_thread(render.photo_bytes, path)
            await self.app.bot.send_photo(chat_id, photo=data, filename=filename, **common)

    async def _from_text(self, message: Message, user: User, text: str, *, literal: bool) -> bool:
        """Generate what ``text`` asks for; False when it asks for no picture (and ``literal`` is off)."""
        account_id = await self._account_id(user)
        try:
            request = await self.chat.request_for_text(account_id, text, idempotency_key=_key(message), literal=literal)
        except ShowmeError as err:  # "animate this" with no picture yet
            await self._say_error(message.chat_id, err, message.message_id)
            return True
        if request is None:
            return False
        await self.generate(message.chat_id, user, request, message.message_id)
        return True

    # -- commands --------------------------------------------------------------------------------------------

    async def cmd_start(self, update: Update, context: Context) -> None:
        message, user = update.effective_message, update.effective_user
        if message is None or user is None:
            return
        account, created = await self.chat.account(user.id, user.full_name)
        balance = await self.chat.credits.balance(account.id)
        welcome = "Welcome! " if created else ""
        await message.reply_text(
            f"{welcome}I make pictures from your words with AI.\n\n{self.chat.balance_text(balance)}\n"
            f"{self.chat.prices_text()}\n\n{render.EXAMPLES}\n\n/buy for more credits · /settings for your defaults"
        )

    async def cmd_help(self, update: Update, context: Context) -> None:
        if update.effective_message is None:
            return
        lines = [f"/{name} — {text}" for name, text in render.COMMANDS]
        await update.effective_message.reply_text("\n".join(lines) + f"\n\n{render.EXAMPLES}")

    async def cmd_imagine(self, update: Update, context: Context) -> None:
        message, user = update.effective_message, update.effective_user
        if message is None or user is None:
            return
        prompt = " ".join(context.args or []).strip()
        if not prompt and message.reply_to_message is not None:
            prompt = message.reply_to_message.text or message.reply_to_message.caption or ""
        if not prompt:
            await message.reply_text("What should I draw? For example: /imagine a cabin in the snow at night")
            return
        await self._from_text(message, user, prompt, literal=True)

    async def cmd_video(self, update: Update, context: Context) -> None:
        message, user = update.effective_message, update.effective_user
        if message is None or user is None:
            return
        prompt = " ".join(context.args or []).strip()
        if not prompt:
            await message.reply_text("What should the video show? For example: /video waves rolling onto a beach")
            return
        account_id = await self._account_id(user)
        preferences = await self.chat.preferences(account_id)
        request = self.chat.video_request(prompt, preferences, idempotency_key=_key(message))
        await self.generate(message.chat_id, user, request, message.message_id)

    async def on_private_text(self, update: Update, context: Context) -> None:
        message, user = update.effective_message, update.effective_user
        if message is None or user is None or not message.text or not self.settings.telegram.answer_private_messages:
            return
        if not await self._from_text(message, user, message.text, literal=False):
            await message.reply_text(f"Tell me what to draw, or use /imagine.\n\n{render.EXAMPLES}")

    async def on_reply(self, update: Update, context: Context) -> None:
        """In groups, a reply to one of the bot's messages is a request addressed to the bot."""
        message, user = update.effective_message, update.effective_user
        if message is None or user is None or not message.text or message.chat.type == ChatType.PRIVATE:
            return
        replied = message.reply_to_message
        if replied is None or replied.from_user is None or replied.from_user.id != self.app.bot.id:
            return
        await self._from_text(message, user, message.text, literal=True)

    async def cmd_balance(self, update: Update, context: Context) -> None:
        message, user = update.effective_message, update.effective_user
        if message is None or user is None:
            return
        balance = await self.chat.credits.balance(await self._account_id(user))
        await message.reply_text(self.chat.balance_text(balance) + "\n" + self.chat.prices_text())

    async def cmd_buy(self, update: Update, context: Context) -> None:
        message, user = update.effective_message, update.effective_user
        if message is None or user is None:
            return
        await message.reply_text(render.BUY_TEXT, reply_markup=self._buy_keyboard(await self._account_id(user)))

    async def cmd_redeem(self, update: Update, context: Context) -> None:
        message, user = update.effective_message, update.effective_user
        if message is None or user is None:
            return
        code = " ".join(context.args or []).strip()
        if not code:
            await message.reply_text("Send the code after the command: /redeem ABCD-EFGH-JKMN")
            return
        account_id = await self._account_id(user)
        try:
            activation = await self.chat.billing.redeem(code, account_id)
        except ShowmeError as err:
            await message.reply_text(self.chat.error_text(err))
            return
        balance = await self.chat.credits.balance(account_id)
        await message.reply_text(
            f"✅ {activation.name} session active until {activation.expires_at:%H:%M} UTC.\n"
            f"{self.chat.balance_text(balance)}"
        )

    async def cmd_library(self, update: Update, context: Context) -> None:
        message, user = update.effective_message, update.effective_user
        if message is None or user is None:
            return
        query = " ".join(context.args or []).strip()
        if not query:
            await message.reply_text("What should I look for? For example: /library kitchen")
            return
        hits = await self.chat.library.search(await self._account_id(user), query, limit=10)
        if not hits:
            await message.reply_text(f"Nothing in your pictures matches “{query}”.")
            return
        paths = [await self.chat.blobs.local_file(hit.asset.blob_key) for hit in hits]
        files = [await asyncio.to_thread(render.photo_bytes, path) for path in paths]
        captions = [(hit.asset.prompt or hit.asset.name)[: render.CAPTION_LIMIT] for hit in hits]
        if len(files) == 1:
            await message.reply_photo(files[0][0], filename=files[0][1], caption=captions[0])
            return
        media = [
            InputMediaPhoto(data, filename=name, caption=c) for (data, name), c in zip(files, captions, strict=True)
        ]
        await message.reply_media_group(media)

    async def cmd_settings(self, update: Update, context: Context) -> None:
        message, user = update.effective_message, update.effective_user
        if message is None or user is None:
            return
        current = await self.chat.preferences(await self._account_id(user))
        await message.reply_text(
            render.settings_text(current, self.settings.generation.default_model),
            reply_markup=render.settings_keyboard(self.chat.choices(), current),
        )

    # -- buttons ---------------------------------------------------------------------------------------------

    async def _own_job(self, update: Update, context: Context) -> tuple[int, JobView] | None:
        """The requester's account and the button's job; None (and an alert) for anyone else's press."""
        query, user = update.callback_query, update.effective_user
        assert query is not None and user is not None and context.match is not None
        account_id = await self._account_id(user)
        job = await self.chat.generation.get(context.match["job"])
        if job.account_id != account_id:
            await query.answer("Only the person who asked for this picture can use its buttons.", show_alert=True)
            return None
        return account_id, job

    @staticmethod
    def _where(update: Update) -> tuple[int, int | None]:
        """The chat to answer in and the message the button sits on."""
        query, user = update.callback_query, update.effective_user
        assert query is not None and user is not None
        message = query.message if isinstance(query.message, Message) else None
        return (message.chat_id if message else user.id), (message.message_id if message else None)

    async def _guarded(self, update: Update, work: Any) -> None:
        try:
            await work
        except ShowmeError as err:
            assert update.callback_query is not None
            await update.callback_query.answer(self.chat.error_text(err)[:200], show_alert=True)

    async def on_again(self, update: Update, context: Context) -> None:
        await self._guarded(update, self._remake(update, context, None, "Making another one…"))

    async def on_restyle(self, update: Update, context: Context) -> None:
        assert context.match is not None
        style = context.match["style"]
        await self._guarded(update, self._remake(update, context, style, f"Making it {style}…"))

    async def _remake(self, update: Update, context: Context, style: str | None, answer: str) -> None:
        found = await self._own_job(update, context)
        if found is None:
            return
        account_id, job = found
        assert update.callback_query is not None and update.effective_user is not None
        await update.callback_query.answer(answer)
        chat_id, message_id = self._where(update)
        request = await self.chat.again(account_id, job, style=style)
        await self.generate(chat_id, update.effective_user, request, message_id)

    async def on_style_menu(self, update: Update, context: Context) -> None:
        await self._guarded(update, self._style_menu(update, context))

    async def _style_menu(self, update: Update, context: Context) -> None:
        found = await self._own_job(update, context)
        if found is None:
            return
        assert update.callback_query is not None
        await update.callback_query.answer()
        chat_id, message_id = self._where(update)
        markup = render.styles_keyboard(found[1].id, list(self.settings.styles))
        await context.bot.send_message(chat_id, "Which style?", reply_markup=markup, reply_to_message_id=message_id)

    async def on_original(self, update: Update, context: Context) -> None:
        await self._guarded(update, self._original(update, context))

    async def _original(self, update: Update, context: Context) -> None:
        found = await self._own_job(update, context)
        if found is None:
            return
        query = update.callback_query
        assert query is not None
        job = found[1]
        if not job.assets:
            await query.answer("This picture has no file.", show_alert=True)
            return
        await query.answer()
        asset = job.assets[0]
        path = await self.chat.blobs.local_file(asset.blob_key)
        data = await asyncio.to_thread(path.read_bytes)
        await context.bot.send_document(
            self._where(update)[0], document=data, filename=f"showme-{job.id[:8]}{path.suffix}",
            caption=f"Original, {asset.width}×{asset.height}",
        )  # fmt: skip

    async def on_edit(self, update: Update, context: Context) -> None:
        await self._guarded(update, self._edit(update, context))

    async def _edit(self, update: Update, context: Context) -> None:
        found = await self._own_job(update, context)
        if found is None:
            return
        query, user = update.callback_query, update.effective_user
        assert query is not None and user is not None and context.match is not None
        operation = render.EDITS[context.match["op"]]
        # A redelivered press (same callback query) finds the first job and is charged once.
        request = self.chat.edit_request(found[1], operation, idempotency_key=f"telegram:cb:{query.id}")
        await query.answer(render.EDIT_ANSWERS[operation])
        chat_id, message_id = self._where(update)
        await self.generate(chat_id, user, request, message_id)

    async def on_buy_menu(self, update: Update, context: Context) -> None:
        assert update.callback_query is not None and update.effective_user is not None
        await update.callback_query.answer()
        keyboard = self._buy_keyboard(await self._account_id(update.effective_user))
        await context.bot.send_message(self._where(update)[0], render.BUY_TEXT, reply_markup=keyboard)

    async def on_checkout(self, update: Update, context: Context) -> None:
        await self._guarded(update, self._checkout(update, context))

    async def _checkout(self, update: Update, context: Context) -> None:
        assert update.callback_query is not None and update.effective_user is not None and context.match
        product_id = context.match["product"]
        account_id = await self._account_id(update.effective_user)
        checkout = await self.chat.billing.checkout(product_id, account_id, source="telegram")
        product = self.chat.billing.product(product_id)
        await update.callback_query.answer()
        await context.bot.send_message(
            self._where(update)[0],
            f"{self.chat.product_label(product)}\nTap Pay now to open Stripe Checkout.",
            reply_markup=InlineKeyboardMarkup([[InlineKeyboardButton("💳 Pay now", url=checkout.url)]]),
        )

    async def on_setting(self, update: Update, context: Context) -> None:
        await self._guarded(update, self._setting(update, context))

    async def _setting(self, update: Update, context: Context) -> None:
        query, user = update.callback_query, update.effective_user
        assert query is not None and user is not None and context.match is not None
        key, value = context.match["key"], context.match["value"]
        chosen = None if (key == "style" and value == "none") else value
        current = await self.chat.set_preference(await self._account_id(user), key, chosen)
        await query.answer("Saved")
        if isinstance(query.message, Message):
            with contextlib.suppress(TelegramError):
                await query.message.edit_text(
                    render.settings_text(current, self.settings.generation.default_model),
                    reply_markup=render.settings_keyboard(self.chat.choices(), current),
                )

    async def on_other_button(self, update: Update, context: Context) -> None:
        """Headings (``noop``) and buttons of older versions: acknowledged, nothing done."""
        if update.callback_query is not None:
            await update.callback_query.answer()

    # -- payments and errors ---------------------------------------------------------------------------------

    async def on_fulfilment(self, fulfilment: Fulfilment) -> None:
        """Tell the buyer in Telegram that the payment arrived (orders started from this bot)."""
        if fulfilment.source != "telegram" or fulfilment.account_id is None:
            return
        user_id = await self.chat.accounts.external_id(fulfilment.account_id, "telegram")
        if user_id is None:
            return
        balance = await self.chat.credits.balance(fulfilment.account_id)
        task = asyncio.create_task(
            self.app.bot.send_message(int(user_id), f"✅ Payment received.\n{self.chat.balance_text(balance)}")
        )
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def on_error(self, update: object, context: Context) -> None:
        """Never silence: log the error and tell the person something went wrong."""
        log.error("Telegram update failed", exc_info=context.error)
        if isinstance(update, Update) and update.effective_chat is not None:
            with contextlib.suppress(TelegramError):
                await self.app.bot.send_message(
                    update.effective_chat.id, self.chat.error_text(context.error or Exception())
                )
