from __future__ import annotations

from gpu_worker.cli import main

raise SystemExit(main())
