"""Long-running processes: ``newsletter scheduler`` and ``newsletter run`` (web + scheduler + worker).

``run`` is the embedded default: one process serving the web app, ticking the daily plan and
delivering with a worker thread. Larger installs run ``newsletter scheduler`` once or more, and
``newsletter worker`` on as many processes and hosts as needed: they share only the database.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime

from kernel import utcnow
from newsletter.bootstrap import App
from newsletter.delivery.worker import run_worker
from newsletter.scheduler import DailyPlan, build_scheduler

log = logging.getLogger(__name__)


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM and Ctrl-C set ``stop`` (the process then finishes what it holds and exits)."""
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_scheduler(
    app: App, *, stop: threading.Event, clock: Callable[[], datetime] = utcnow
) -> None:
    """Tick the daily plan now (catching up after downtime), then every minute until stopped."""
    plan = DailyPlan(app, clock)
    plan.tick()
    scheduler = build_scheduler(plan, blocking=False)
    scheduler.start()  # type: ignore[attr-defined]
    log.info(
        "scheduler started (time zone %s, send time %s)",
        app.settings.timezone,
        app.settings.send_time,
    )
    try:
        stop.wait()
    finally:
        scheduler.shutdown(wait=True)  # type: ignore[attr-defined]
        log.info("scheduler stopped")


def run_all(app: App, *, host: str, port: int, stop: threading.Event, web: bool = True) -> None:
    """The embedded default: scheduler and worker in threads, the web app in the main thread."""
    threads = [
        threading.Thread(
            target=run_scheduler, args=(app,), kwargs={"stop": stop}, name="scheduler"
        ),
        threading.Thread(
            target=run_worker,
            args=(app,),
            kwargs={"stop": stop, "poll_seconds": 5.0},
            name="worker",
        ),
    ]
    for thread in threads:
        thread.start()
    try:
        if web:
            import uvicorn

            from newsletter.web.app import check_can_serve, create_app

            check_can_serve(app)
            server = uvicorn.Server(
                uvicorn.Config(
                    create_app(app),
                    host=host,
                    port=port,
                    log_config=None,
                    server_header=False,
                    proxy_headers=False,
                )
            )
            watcher = threading.Thread(target=_stop_server, args=(server, stop), daemon=True)
            watcher.start()
            server.run()
        else:
            stop.wait()
    finally:
        stop.set()
        for thread in threads:
            thread.join()


def _stop_server(server: object, stop: threading.Event) -> None:
    stop.wait()
    server.should_exit = True  # type: ignore[attr-defined]
