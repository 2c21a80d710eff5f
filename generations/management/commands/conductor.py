from __future__ import annotations

import signal
import threading
from typing import Any

from django.core.management.base import BaseCommand

from generations.dispatch.conductor import Conductor
from workshop import require_secret_key


class Command(BaseCommand):
    help = "Run the conductor: dispatch queued generations and apply GPU worker events."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--block-ms", type=int, default=500, help="How long to wait for events per pass")

    def handle(self, *args: Any, **options: Any) -> None:
        require_secret_key()  # it signs the workers' upload URLs
        stop = threading.Event()
        # Finish the current pass, then exit: nothing half-applied, nothing unacknowledged lost.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        self.stdout.write("conductor running (Ctrl-C to stop)")
        Conductor().run(stop, block_ms=options["block_ms"])
        self.stdout.write("conductor stopped")
