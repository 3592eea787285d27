"""Long-running processes: ``newsletter scheduler`` and ``newsletter run`` (web + scheduler + worker).

``run`` is the embedded default: one process serving the web app, ticking the daily plan and
delivering with a worker thread. Larger installs run ``newsletter scheduler`` once or more, and
``newsletter worker`` on as many processes and hosts as needed: they share only the database.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from kernel import utcnow
from newsletter.bootstrap import App
from newsletter.scheduler import DailyPlan, build_scheduler
from newsletter.signals import stop_on_signals

if TYPE_CHECKING:
    import uvicorn

__all__ = ["run_all", "run_scheduler", "stop_on_signals"]

log = logging.getLogger(__name__)


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
            target=app.worker.run,
            kwargs={"stop": stop, "poll_seconds": 5.0},
            name="worker",
        ),
    ]
    for thread in threads:
        thread.start()
    try:
        if web:
            server = web_server(app, host=host, port=port)
            watcher = threading.Thread(target=_stop_server, args=(server, stop), daemon=True)
            watcher.start()
            server.run()
        else:
            stop.wait()
    finally:
        stop.set()
        for thread in threads:
            thread.join()


def web_server(app: App, *, host: str, port: int) -> uvicorn.Server:
    """The web app in a uvicorn server that runs in this thread (``server.run()``), with the
    options of ``newsletter web`` (one definition: :func:`newsletter.web.command.uvicorn_options`).
    """
    import uvicorn

    from newsletter.web.app import check_can_serve, create_app
    from newsletter.web.command import uvicorn_options

    check_can_serve(app)
    return uvicorn.Server(uvicorn.Config(create_app(app), **uvicorn_options(host=host, port=port)))


def _stop_server(server: object, stop: threading.Event) -> None:
    stop.wait()
    server.should_exit = True  # type: ignore[attr-defined]
