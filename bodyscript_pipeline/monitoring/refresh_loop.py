"""A background thread that refreshes metrics at a fixed interval, so a scrape only reads what is cached.

However often Prometheus (or anyone) scrapes, the sources are read at most once per interval. A failed
refresh is logged and counted (``bodyscript_exporter_refresh_errors_total``); the next one tries again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from bodyscript_pipeline.monitoring.families import PipelineMetrics

log = logging.getLogger(__name__)


class RefreshLoop:
    def __init__(self, source: str, refresh: Callable[[], object], interval_s: float, metrics: PipelineMetrics):
        self.source = source
        self._refresh = refresh
        self._interval_s = interval_s
        self._metrics = metrics
        self._stop = threading.Event()
        self._skip_first = False
        self._thread = threading.Thread(target=self._loop, name=f"refresh-{source}", daemon=True)

    def start(self, skip_first: bool = False) -> None:
        """Refreshes now and every interval after, or only after the first interval with ``skip_first``."""
        self._skip_first = skip_first
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join()

    def refresh_once(self) -> None:
        started = time.monotonic()
        try:
            self._refresh()
        except Exception:
            self._metrics.refresh_errors.labels(self.source).inc()
            log.exception("refreshing %s metrics failed; retrying in %g s", self.source, self._interval_s)
            return
        self._metrics.refresh_seconds.labels(self.source).set(time.monotonic() - started)
        self._metrics.last_refresh_timestamp.labels(self.source).set(time.time())

    def _loop(self) -> None:
        if self._skip_first and self._stop.wait(self._interval_s):
            return
        while True:
            started = time.monotonic()
            self.refresh_once()
            if self._stop.wait(max(0.0, self._interval_s - (time.monotonic() - started))):
                return
