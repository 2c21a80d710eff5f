"""What the GPUs cost so far: per worker (online time rounded up to its billing granularity × its
price), per round and per filmmaker (their jobs' GPU time × the fleet's average rate), and how busy
the fleet was (busy / online)."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import F, Sum

from .models import Generation, Worker


def worker_spend(w: Worker) -> float:
    billed = math.ceil(w.online_seconds / w.billing_seconds) * w.billing_seconds if w.online_seconds else 0
    return float(w.price_per_hour) * billed / 3600


@dataclass(frozen=True)
class Spend:
    total: float
    online_seconds: float
    busy_seconds: float
    per_round: dict[int, float]
    per_filmmaker: dict[int, float]

    @property
    def utilisation(self) -> float:
        return self.busy_seconds / self.online_seconds if self.online_seconds else 0.0

    def against(self, budget: Decimal | float) -> float:
        return self.total / float(budget) if budget else 0.0


def spend() -> Spend:
    workers = list(Worker.objects.all())
    total = sum(worker_spend(w) for w in workers)
    online = sum(w.online_seconds for w in workers)
    busy = sum(w.busy_seconds for w in workers)
    # A job's share is its GPU time at the fleet's average price per online second.
    rate = total / online if online else 0.0
    per_round: dict[int, float] = defaultdict(float)
    per_filmmaker: dict[int, float] = defaultdict(float)
    runs = (
        Generation.objects.filter(started_at__isnull=False, finished_at__isnull=False)
        .values("round_id", "owner_id")
        .annotate(took=Sum(F("finished_at") - F("started_at")))
    )
    for row in runs:
        cost = row["took"].total_seconds() * rate
        per_round[row["round_id"]] += cost
        per_filmmaker[row["owner_id"]] += cost
    return Spend(total, online, busy, dict(per_round), dict(per_filmmaker))
