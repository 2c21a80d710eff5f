"""What the GPUs cost: the one spend model of the panel, the live room, the CSV export and /metrics.

What we pay is each worker's online time, rounded up to its billing granularity, × its price per
hour, as its heartbeats report them. Where no worker reports a price (a local GPU, a provider whose
price the host was not told), GPU time is priced at GPU_PRICE_PER_HOUR instead: the whole day's GPU
seconds of finished and running generations for the spend, and each generation's own GPU seconds for
its row of the CSV (at its worker's price where that worker reported one)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db.models import F, Q, QuerySet, Sum
from django.utils import timezone

from generations.models import Generation, Worker, Workshop

S = Generation.Status


def gpu_price_per_hour() -> Decimal:
    """GPU_PRICE_PER_HOUR: the price of a GPU hour where the workers report none (0 when unset)."""
    raw = settings.GPU_PRICE_PER_HOUR or "0"
    try:
        price = Decimal(str(raw))
    except InvalidOperation:
        raise ImproperlyConfigured(f"GPU_PRICE_PER_HOUR={raw!r} is not a number") from None
    if price < 0 or not price.is_finite():
        raise ImproperlyConfigured(f"GPU_PRICE_PER_HOUR={raw!r} must be zero or more")
    return price


def cost_of(gpu_seconds: float, price_per_hour: Decimal) -> Decimal:
    return (Decimal(str(gpu_seconds)) * price_per_hour / 3600).quantize(Decimal("0.0001"))


def worker_spend(w: Worker) -> float:
    billed = math.ceil(w.online_seconds / w.billing_seconds) * w.billing_seconds if w.online_seconds else 0
    return float(w.price_per_hour) * billed / 3600


def gpu_seconds_of(g: Generation, now: datetime | None = None) -> float:
    """GPU time of the attempt that ran last: finished − started, or so far when running. A lost
    attempt's time is not known (its start was overwritten by the next one)."""
    if g.started_at is None:
        return 0.0
    if g.status == S.RUNNING:
        return max(((now or timezone.now()) - g.started_at).total_seconds(), 0.0)
    if g.status in Generation.TERMINAL and g.finished_at is not None:
        return max((g.finished_at - g.started_at).total_seconds(), 0.0)
    return 0.0


@dataclass(frozen=True)
class Fleet:
    """The workers' own figures: what they cost, how long they were online and busy."""

    total: float
    online_seconds: float
    busy_seconds: float

    @property
    def utilisation(self) -> float:
        return self.busy_seconds / self.online_seconds if self.online_seconds else 0.0


def fleet_spend() -> Fleet:
    workers = list(Worker.objects.all())
    return Fleet(
        total=sum(worker_spend(w) for w in workers),
        online_seconds=sum(w.online_seconds for w in workers),
        busy_seconds=sum(w.busy_seconds for w in workers),
    )


@dataclass(frozen=True)
class Spend:
    gpu_seconds: float
    price_per_hour: Decimal
    budget: Decimal
    fleet: Fleet

    @property
    def from_fleet(self) -> bool:
        return self.fleet.total > 0

    @property
    def cost(self) -> Decimal:
        if self.from_fleet:
            return Decimal(str(self.fleet.total)).quantize(Decimal("0.01"))
        return cost_of(self.gpu_seconds, self.price_per_hour).quantize(Decimal("0.01"))

    @property
    def utilisation(self) -> int | None:
        return round(self.fleet.utilisation * 100) if self.from_fleet else None

    @property
    def percent(self) -> int | None:
        return int(self.cost * 100 / self.budget) if self.budget > 0 else None

    @property
    def over(self) -> bool:
        return self.budget > 0 and self.cost > self.budget


def _of_workshop(qs: QuerySet[Generation], workshop: Workshop | None) -> QuerySet[Generation]:
    # Rounds made outside the panel (the demo, the admin) have no workshop: they count to the current one.
    if workshop is None:
        return qs
    return qs.filter(Q(round__workshop=workshop) | Q(round__workshop__isnull=True))


def spend_for(workshop: Workshop | None) -> Spend:
    """The day's spend: the workers' billed time when they report prices, else GPU seconds of
    finished and running generations × GPU_PRICE_PER_HOUR."""
    qs = _of_workshop(Generation.objects.filter(started_at__isnull=False), workshop)
    done = (
        qs.filter(status__in=Generation.TERMINAL, finished_at__isnull=False).aggregate(
            t=Sum(F("finished_at") - F("started_at"))
        )["t"]
        or timedelta()
    )
    now = timezone.now()
    running = sum(
        (
            (now - started).total_seconds()
            for started in qs.filter(status=S.RUNNING).values_list("started_at", flat=True)
        ),
        0.0,
    )
    return Spend(
        gpu_seconds=max(done.total_seconds(), 0.0) + running,
        price_per_hour=gpu_price_per_hour(),
        budget=workshop.gpu_budget if workshop else Decimal(0),
        fleet=fleet_spend(),
    )


class GenerationPricer:
    """Prices one generation's GPU time for the CSV: at its worker's reported price, else at
    GPU_PRICE_PER_HOUR. Reads the workers' prices once for a whole export."""

    def __init__(self) -> None:
        self.default = gpu_price_per_hour()
        self.prices = {
            name: Decimal(str(price))
            for name, price in Worker.objects.filter(price_per_hour__gt=0).values_list(
                "name", "price_per_hour"
            )
        }

    def cost(self, g: Generation, gpu_seconds: float) -> Decimal:
        return cost_of(gpu_seconds, self.prices.get(g.worker, self.default))
