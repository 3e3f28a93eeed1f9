"""After a call: pictures the agent promised out loud but never showed.

Reads a transcript (ElevenLabs ``post_call_transcription``: ``[{"role": "agent"|"user", "message"}, …]``),
finds the agent's picture promises with ``extract_image_request``, and generates the ones that no job of the
conversation already covers. The account is the one whose tools served the conversation.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

from core.generation import GenerationRequest, GenerationService
from core.prompts import ImageRequest, extract_image_request
from storage.repositories.jobs import JobRepository


@dataclass(frozen=True)
class FollowUp:
    account_id: int | None
    promised: list[ImageRequest]
    generated_job_ids: list[str]


def promised_pictures(transcript: list[dict[str, Any]]) -> list[ImageRequest]:
    """The agent's picture promises in order, without repeats."""
    found: list[ImageRequest] = []
    for turn in transcript:
        if not isinstance(turn, dict) or turn.get("role") != "agent":
            continue
        request = extract_image_request(str(turn.get("message") or ""))
        if request and all(_norm(request.prompt) != _norm(r.prompt) for r in found):
            found.append(request)
    return found


def _norm(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


async def follow_up(
    jobs: JobRepository, generation: GenerationService, conversation_id: str, transcript: list[dict[str, Any]]
) -> FollowUp:
    """Generate the promised pictures no job of the conversation covers (idempotent per promise)."""
    promised = promised_pictures(transcript)
    account = await jobs.conversation_account(conversation_id)
    if account is None or not promised:
        return FollowUp(account, promised, [])
    done = {_norm(p) for p in await jobs.conversation_prompts(account, conversation_id)}
    generated = []
    for request in promised:
        if _norm(request.prompt) in done:
            continue
        key = "postcall:" + hashlib.sha256(f"{conversation_id}|{_norm(request.prompt)}".encode()).hexdigest()
        job = await generation.submit(
            account,
            GenerationRequest(
                prompt=request.prompt,
                style=request.style,
                aspect_ratio=request.aspect_ratio,
                conversation_id=conversation_id,
                source="elevenlabs:post_call",
                idempotency_key=key,
            ),
        )
        generated.append(job.id)
    return FollowUp(account, promised, generated)
