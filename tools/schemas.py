"""The HTTP API's pydantic models that are not request bodies of one handler: query strings, response
envelopes, and the voice platforms' request envelopes. The OpenAPI document (``tools.openapi``) is generated
from these and from the request models beside the handlers; responses are built from the same core dataclasses
the envelopes name, so the document and the answers cannot drift apart."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.billing import Activation, OrderView
from core.billing.fulfilment import Fulfilment
from core.credits import Balance, LedgerLine
from core.generation import JobView
from core.library import AssetView


class Query(BaseModel):
    """A query string: unknown parameters are ignored (caches and trackers add their own)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)


# -- query strings ---------------------------------------------------------------------------------------------


class ToolsQuery(Query):
    """``GET /tools``: which platform's tool definitions."""

    format: Literal["openai", "openai-responses", "elevenlabs", "vapi", "retell", "mcp"] = "openai"


class LedgerQuery(Query):
    """``GET /api/v1/credits/ledger``: at most ``limit`` entries, newest first."""

    limit: int = Field(default=100, ge=1, le=500)


class ReportQuery(Query):
    """``GET /api/v1/admin/report``: jobs created from ``since`` up to (not including) ``until``, UTC days."""

    since: date
    until: date | None = None


class ViewerQuery(Query):
    """``GET /calls/{conversation_id}``: the viewer token from ``POST …/viewer-token``."""

    token: str | None = None


class CheckoutSuccessQuery(Query):
    """``GET /checkout/success``: Stripe fills in ``{CHECKOUT_SESSION_ID}``."""

    session_id: str = ""


class CheckoutLinkQuery(Query):
    """``GET /checkout/start``: the signed link a chat bot gave the buyer."""

    t: str = ""


# -- responses -------------------------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    code: str = Field(description="machine-readable, e.g. invalid_request, insufficient_credits")
    message: str = Field(description="one sentence a person can act on")
    field: str | None = Field(default=None, description="the request field at fault, when one is")
    retry_after_seconds: int | None = Field(default=None, description="rate limited: when to try again (seconds)")


class ErrorBody(BaseModel):
    """Every error of the HTTP API."""

    error: ErrorDetail


class Health(BaseModel):
    status: Literal["ok"]


class ProviderReadiness(BaseModel):
    configured: bool = Field(description="its key is set")
    circuit: Literal["closed", "half_open", "open"] = Field(description="open: skipped after repeated failures")


class Readiness(BaseModel):
    status: Literal["ready", "degraded", "not_ready"]
    database: str = Field(description="ok, or why it is unreachable")
    media: str = Field(description="the media store (directory or bucket): ok, or why it is unreachable")
    redis: str = Field(description="ok, not used (events.backend local), or why it is unreachable")
    providers: dict[str, ProviderReadiness]


class CustomModelOut(BaseModel):
    name: str = Field(description="use it as `model` in tools, REST, the CLI and /imagine … model:<name>")
    base_model: str
    trigger_word: str
    ref: str = Field(description="the trained version on Replicate, owner/name:version")
    created_at: str
    credits: int = Field(description="credits per image")


class ModelsResponse(BaseModel):
    catalog: list[PricedModel]
    custom: list[CustomModelOut]


class TrainingForm(BaseModel):
    """``POST /api/v1/models/trainings`` as ``multipart/form-data``."""

    images: list[bytes] = Field(json_schema_extra={"items": {"type": "string", "format": "binary"}},
                                description="10-50 photos (JPEG, PNG, WebP), or zips of them")  # fmt: skip
    name: str = Field(description="2-40 lower-case letters, digits, - or _")
    trigger_word: str = Field(description="2-32 letters, digits or _, e.g. ACME_SOFA")
    base_model: str | None = Field(default=None, description="default flux_dev")


class ReportLineOut(BaseModel):
    day: date | None = Field(description="None on the totals line")
    model: str = Field(description="all on the totals line")
    jobs: int
    failures: int
    credits_charged: int
    quota_units_charged: int = Field(description="session images and videos charged")
    revenue: dict[str, str] = Field(description="currency → amount in its main unit (decimal string)")
    revenue_usd: str
    cost_usd: str
    margin_usd: str
    jobs_without_cost: int = Field(description="succeeded jobs whose model has no configured cost")


class ReportOut(BaseModel):
    since: date
    until: date
    lines: list[ReportLineOut]
    totals: ReportLineOut


class JobResponse(BaseModel):
    job: JobView


class AssetResponse(BaseModel):
    asset: AssetView
    created: bool = Field(description="False when the same file was in the library already")


class SearchResult(BaseModel):
    rank: float = Field(description="higher is a better match")
    asset: AssetView


class SearchResponse(BaseModel):
    results: list[SearchResult]


class LedgerResponse(BaseModel):
    entries: list[LedgerLine]


class OrdersResponse(BaseModel):
    orders: list[OrderView]


class PurchaseResponse(BaseModel):
    fulfilment: Fulfilment
    balance: Balance


class RedeemResponse(BaseModel):
    activation: Activation
    balance: Balance


class ViewerToken(BaseModel):
    token: str
    url: str = Field(description="the gallery page with the token, to open in a browser")
    expires_at: str = Field(description="ISO 8601, UTC")
    conversation_id: str


class PricedProduct(BaseModel):
    id: str = Field(description="pack:<key> or plan:<key>")
    name: str
    price: str = Field(description="decimal, in the currency's main unit")
    currency: str
    unit_amount: int = Field(description="the price in the currency's smallest unit")
    description: str
    credits: int | None = Field(default=None, description="packs: credits granted")
    images: int | None = Field(default=None, description="plans: images in the session")
    videos: int | None = Field(default=None, description="plans: videos in the session")
    duration_minutes: int | None = None
    models: list[str] | None = Field(default=None, description="plans: the image models the session pays for")


class PricedModel(BaseModel):
    id: str
    kind: str = Field(description="image, video, image_to_video, upscale, remove_background, restore_face")
    credits: int = Field(description="credits per output")
    unit: Literal["image", "video"]
    description: str
    credits_per_image: int | None = None


class Pricing(BaseModel):
    packs: list[PricedProduct]
    plans: list[PricedProduct]
    models: list[PricedModel]
    starter_credits: int


class StripeWebhookOutcome(BaseModel):
    received: bool
    outcome: str = Field(description="fulfilled, already_fulfilled, duplicate, ignored, refunded, refund_pending, …")
    order_id: str | None


class ReplicateWebhookQuery(Query):
    """``POST /webhooks/replicate``: the job whose prediction it reports (set by showme when creating it)."""

    job: str | None = Field(default=None, max_length=64)


class ReplicateWebhookOutcome(BaseModel):
    status: str = Field(description="delivered, scheduled, ignored or duplicate")
    job_id: str | None = None
    prediction_id: str | None = None
    reason: str | None = None


class Received(BaseModel):
    model_config = ConfigDict(extra="allow")

    status: str | None = None
    ok: bool | None = None


class ToolAnswer(BaseModel):
    """A tool's JSON answer: ``status`` (ready, generating, not_found, …), what to say, and the picture."""

    model_config = ConfigDict(extra="allow")

    status: str


# -- the voice platforms' envelopes (core.tools validates the arguments inside) ---------------------------------


class Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class VapiRequest(Open):
    """Vapi's server message ``{"message": {"type": "tool-calls", "toolCallList": […]}}`` (docs.vapi.ai)."""

    message: dict[str, Any]


class VapiResponse(BaseModel):
    results: list[dict[str, Any]]


class RetellRequest(Open):
    """Retell's custom function call ``{"name", "args", "call": {"call_id", …}}`` (docs.retellai.com)."""

    name: str | None = None
    args: dict[str, Any] | None = None
    call: dict[str, Any] | None = None


class OpenAIRequest(Open):
    """Function calls from an OpenAI Realtime or Responses app: ``tool_calls``/``output`` items with ``name``,
    ``arguments`` and ``call_id``, plus ``conversation_id``."""


class OpenAIResponse(Open):
    pass


class McpRequest(Open):
    """A JSON-RPC 2.0 request or notification (Model Context Protocol, streamable HTTP)."""

    jsonrpc: str | None = None
    method: str | None = None


class McpResponse(Open):
    pass


class JsonRpcErrorDetail(BaseModel):
    code: int = Field(description="-32700 parse error, -32600 invalid request, -32601 unknown method, -32001 auth")
    message: str


class JsonRpcError(BaseModel):
    """A JSON-RPC 2.0 error answer (the MCP endpoint's errors)."""

    jsonrpc: Literal["2.0"]
    id: str | int | None
    error: JsonRpcErrorDetail


class StripeEvent(Open):
    """A Stripe event, verified by ``Stripe-Signature`` over the raw body (docs.stripe.com/webhooks)."""


class ReplicatePredictionEvent(Open):
    """A Replicate prediction (replicate.com/docs/reference/http), verified by ``webhook-signature``."""

    id: str


class TelegramUpdate(Open):
    """A Telegram Update (core.telegram.org/bots/api#update)."""

    update_id: int | None = None


class ElevenLabsEvent(Open):
    """ElevenLabs' post-call webhook, verified by ``ElevenLabs-Signature``."""

    type: str | None = None
    data: dict[str, Any] | None = None


class ElevenLabsConfig(Open):
    """An ElevenLabs agent configuration (``conversation_config.agent.prompt`` gets our tools)."""


class UploadForm(BaseModel):
    """``POST /api/v1/library`` as ``multipart/form-data``."""

    file: bytes = Field(json_schema_extra={"format": "binary"}, description="a JPEG, PNG, WebP or GIF image")
    name: str | None = None
    description: str | None = None
    tags: str | None = Field(default=None, description="comma-separated")
    category: Literal["product", "marketing", "social", "presentation", "email", "agent"] | None = None
    folder: str | None = Field(default=None, description="a folder path (a/b), made when missing")
    alt_text: str | None = None
