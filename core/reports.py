"""Cost and margin per model and per day: jobs, failures, what was charged, the revenue behind it, what the
providers cost us, and the margin.

* **Revenue** of a job is what its charge was actually paid at: each settle drew on a grant, and a grant made by
  an order (``order:<id>``) is worth the order's price over its credits (a pack), or over its units (a plan's
  image and video quota, bought directly or through a redemption code). Starter, admin and operator-code units
  bring no revenue. Amounts are kept per currency; ``reports.usd_rates`` converts them for the margin.
* **Cost** is what the job's provider charged us (``ModelSpec.costs``, ``training.cost_per_second``; recorded on
  the job when it finished). Trainings are their own lines (``training:<base model>``).
* **Margin** = revenue in USD − cost in USD.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from core.clock import Clock
from core.config import ZERO_DECIMAL_CURRENCIES, Settings
from storage.repositories.reports import AccountUsage, ReportData, ReportOrder, ReportRepository, account_usage

MICRO = Decimal("0.000001")


@dataclass
class ReportLine:
    """One model on one day (``day`` None and ``model`` ``all``: the totals). Money in the currency's main unit."""

    day: date | None
    model: str
    jobs: int = 0
    failures: int = 0
    credits_charged: int = 0
    quota_units_charged: int = 0
    revenue: dict[str, Decimal] = field(default_factory=dict)
    revenue_usd: Decimal = Decimal(0)
    cost_usd: Decimal = Decimal(0)
    jobs_without_cost: int = 0

    @property
    def margin_usd(self) -> Decimal:
        """Revenue in USD less provider cost."""
        return self.revenue_usd - self.cost_usd

    def add(self, other: ReportLine) -> None:
        """Add ``other``'s figures to this line."""
        self.jobs += other.jobs
        self.failures += other.failures
        self.credits_charged += other.credits_charged
        self.quota_units_charged += other.quota_units_charged
        for currency, amount in other.revenue.items():
            self.revenue[currency] = self.revenue.get(currency, Decimal(0)) + amount
        self.revenue_usd += other.revenue_usd
        self.cost_usd += other.cost_usd
        self.jobs_without_cost += other.jobs_without_cost


@dataclass(frozen=True)
class Report:
    since: date
    until: date
    lines: list[ReportLine]
    totals: ReportLine


def _main_unit(amount: int, currency: str) -> Decimal:
    return Decimal(amount) if currency in ZERO_DECIMAL_CURRENCIES else Decimal(amount) / 100


class Revenue:
    """What one unit drawn from a grant was paid at, by the grant's ``source_ref``."""

    def __init__(self, settings: Settings, data: ReportData) -> None:
        self.settings = settings
        self.orders = data.orders
        self.code_orders = data.code_orders

    def _plan_units(self, order: ReportOrder) -> int:
        plan = self.settings.plans.get(order.product.removeprefix("plan:"))
        return (plan.images + plan.videos) if plan is not None else 0

    def per_unit(self, source_ref: str) -> tuple[str, Decimal] | None:
        """``(currency, price of one unit)`` for units of that grant; None when they were free."""
        parts = source_ref.split(":")
        order: ReportOrder | None = None
        if parts[0] == "order" and len(parts) >= 2:
            order = self.orders.get(parts[1])
        elif parts[0] == "code" and len(parts) >= 2 and parts[1].isdigit():
            order_id = self.code_orders.get(int(parts[1]))
            order = self.orders.get(order_id) if order_id else None
        if order is None:
            return None
        units = order.credits if order.kind == "pack" else self._plan_units(order)
        if units <= 0:
            return None
        return order.currency, _main_unit(order.amount, order.currency) / units


def build(settings: Settings, data: ReportData, since: date, until: date) -> Report:
    """The report of ``data`` (``ReportRepository.load``) by day and model, lines sorted by day then model."""
    revenue = Revenue(settings, data)
    rates = {"usd": Decimal(1), **settings.reports.usd_rates}
    by_job: dict[str, list[tuple[str, Decimal, int]]] = defaultdict(list)
    for spend in data.spends:
        price = revenue.per_unit(spend.source_ref)
        if price is not None:
            by_job[spend.job_id].append((price[0], price[1], spend.amount))
    lines: dict[tuple[date, str], ReportLine] = {}
    for job in data.jobs:
        day = job.created_at.astimezone(UTC).date()
        model = f"training:{job.model}" if job.kind == "training" else job.model
        line = lines.setdefault((day, model), ReportLine(day, model))
        line.jobs += 1
        if job.status != "succeeded":
            line.failures += 1
            continue
        if job.unit == "credit":
            line.credits_charged += job.charged
        else:
            line.quota_units_charged += job.charged
        for currency, unit_price, units in by_job.get(job.id, []):
            amount = unit_price * units
            line.revenue[currency] = line.revenue.get(currency, Decimal(0)) + amount
            if currency in rates:
                line.revenue_usd += amount * rates[currency]
        if job.cost_microusd is None:
            line.jobs_without_cost += 1
        else:
            line.cost_usd += Decimal(job.cost_microusd) * MICRO
    ordered = [lines[key] for key in sorted(lines)]
    totals = ReportLine(None, "all")
    for line in ordered:
        totals.add(line)
    return Report(since, until, ordered, totals)


class ReportService:
    """``showme report`` and ``GET /api/v1/admin/report``."""

    def __init__(self, repository: ReportRepository, settings: Settings, clock: Clock) -> None:
        self.repository = repository
        self.settings = settings
        self.clock = clock

    async def report(self, since: date, until: date | None = None) -> Report:
        """Jobs created on ``since`` up to (not including) ``until`` (default: tomorrow), UTC days."""
        end = until or (self.clock.now().astimezone(UTC).date() + timedelta(days=1))
        start_at = datetime.combine(since, time(0), tzinfo=UTC)
        data = await self.repository.load(start_at, datetime.combine(end, time(0), tzinfo=UTC))
        return build(self.settings, data, since, end)


    async def account_usage(self, account_id: int, days: int, top: int = 10) -> AccountUsage:
        """One account's succeeded jobs over the last ``days`` UTC days (today included)
        (``storage.repositories.reports.account_usage``)."""
        today = self.clock.now().astimezone(UTC).date()
        since = datetime.combine(today - timedelta(days=days - 1), time(0), tzinfo=UTC)
        until = datetime.combine(today + timedelta(days=1), time(0), tzinfo=UTC)
        return await account_usage(self.repository.db, account_id, since, until, top)


def _money(value: Decimal) -> str:
    return str(value.quantize(MICRO))


def line_json(line: ReportLine) -> dict[str, object]:
    """A line as JSON: money as decimal strings (6 places), the day as ISO 8601."""
    return {
        "day": line.day.isoformat() if line.day else None, "model": line.model, "jobs": line.jobs,
        "failures": line.failures, "credits_charged": line.credits_charged,
        "quota_units_charged": line.quota_units_charged,
        "revenue": {currency: _money(amount) for currency, amount in sorted(line.revenue.items())},
        "revenue_usd": _money(line.revenue_usd), "cost_usd": _money(line.cost_usd),
        "margin_usd": _money(line.margin_usd), "jobs_without_cost": line.jobs_without_cost,
    }  # fmt: skip


def report_json(report: Report) -> dict[str, object]:
    """The report as JSON (``GET /api/v1/admin/report``, ``showme report --json``)."""
    return {
        "since": report.since.isoformat(),
        "until": report.until.isoformat(),
        "lines": [line_json(line) for line in report.lines],
        "totals": line_json(report.totals),
    }


def report_text(report: Report) -> str:
    """The report as a table for a terminal."""
    header = (
        f"{'day':<10} {'model':<16} {'jobs':>5} {'failed':>6} {'credits':>7} {'revenue $':>10} {'cost $':>9} "
        f"{'margin $':>9}"
    )
    rows = [f"jobs created {report.since} to {report.until} (UTC, end excluded)", header]
    for line in [*report.lines, report.totals]:
        day = line.day.isoformat() if line.day else "total"
        rows.append(
            f"{day:<10} {line.model:<16} {line.jobs:>5} {line.failures:>6} {line.credits_charged:>7} "
            f"{line.revenue_usd:>10.4f} {line.cost_usd:>9.4f} {line.margin_usd:>9.4f}"
        )
    if report.totals.jobs_without_cost:
        rows.append(f"{report.totals.jobs_without_cost} succeeded jobs have no configured cost (models.*.costs)")
    return "\n".join(rows)
