"""The running aggregator: ingest, registry housekeeping and the HTTP API in one process."""

import asyncio
import logging
import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from central.alerts import AlertService
from central.alerts.lease import make_lease
from central.alerts.rules import OfflineRule
from central.commands import Commands
from central.config import CentralConfig, load_config
from central.database import target
from central.influx import Writer, make_writer
from central.ingest import Ingest, Observer
from central.metrics import GATEWAY_STATUSES, Metrics
from central.queries import Queries, make_queries
from central.registry import Registry
from central.tokens import TokenStore, token_store
from wire.configfile import ConfigError

if TYPE_CHECKING:
    from central.workers import Workers

log = logging.getLogger(__name__)


def keep_private(data_dir: Path) -> None:
    """``data_dir`` 0700 and the files in it (registry, alert state, tokens, the session
    key) 0600: they hold token hashes, webhook bodies and dead-lettered payloads. The unit
    also runs central with ``UMask=0077``; this covers a start by hand and older files.
    (SQLite creates a database's -wal and -shm files with the database's own mode.)"""
    try:
        data_dir.chmod(0o700)
        for path in data_dir.iterdir():
            if path.is_file() and not path.is_symlink():
                path.chmod(0o600)
    except OSError as exc:
        log.warning("could not make %s private: %s", data_dir, exc)


class Central:
    """Everything central runs, built from its config; the API reads from here."""

    def __init__(
        self,
        config: CentralConfig,
        writer: Writer | None = None,
        config_path: Path | None = None,
        metrics_dir: Path | None = None,
    ) -> None:
        """``metrics_dir``: with ``run --workers N``, where every worker keeps its metric
        values (``central.workers.share_metrics``); worker 0's /metrics adds them up."""
        self.config = config
        self.config_path = config_path  # central.yaml, read again on reload()
        self.metrics = Metrics(multiprocess_dir=metrics_dir)
        config.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        url = config.database.url
        self.registry = Registry(
            target(url, config.data_dir, "registry.db"), config.dead_letters_max
        )
        self.tokens: TokenStore = token_store(config.data_dir, url)
        self.writer = writer or make_writer(config.influx)
        self.observers: list[Observer] = []
        self.ingest = Ingest(config, self.registry, self.writer, self.metrics, self.observers)
        # raises ConfigError: bad rules
        self.alerts = AlertService(
            config,
            self.registry,
            on_delivery=self.metrics.delivery,
            lease=make_lease(url, config.data_dir),
        )
        self.metrics.webhooks(hook.name for hook in config.webhooks)
        self.metrics.scraped(
            "pantau_gateways",
            "Gateways in the registry by status (online, offline, never_seen).",
            ["status"],
            self._gateway_counts,
            always=[(status,) for status in GATEWAY_STATUSES],
        )
        self.metrics.scraped(
            "pantau_incidents_firing",
            "Incidents firing now, by rule and severity (acknowledged and silenced included).",
            ["rule", "severity"],
            self.alerts.firing_counts,
        )
        self.metrics.live(
            "pantau_alerts_leader",
            "1 on the worker that evaluates alert rules and sends webhooks, else 0 (with "
            "run --workers N: 1 when one of the workers does).",
            lambda: float(self.alerts.leading),
            "livemax",
        )
        self._stats: dict[str, Any] = {}
        self._stats_at = -10.0
        self.metrics.scraped(
            "pantau_dead_letters",
            "Dead letters stored now, by reason (replay them after a fix: "
            "pantau-central dead-letters replay).",
            ["reason"],
            lambda: {(r,): float(n) for r, n in self._dead_letter_stats()["by_reason"].items()},
        )
        self.metrics.scraped(
            "pantau_dead_letters_bytes",
            f"Bytes the dead letters take (kept under dead_letters_max_mb, "
            f"{config.dead_letters_max_mb} MiB).",
            [],
            lambda: {(): float(self._dead_letter_stats()["bytes"])},
        )
        self.metrics.scraped(
            "pantau_dead_letters_oldest_age_seconds",
            f"Age of the oldest dead letter (kept at most dead_letters_max_age, "
            f"{config.dead_letters_max_age:g} s); 0 when there are none.",
            [],
            lambda: {(): self._oldest_age()},
        )
        self.ingest.observers.append(self.alerts.observe)
        self.commands = Commands(self.ingest.client, self.ingest.connected)
        self.ingest.observers.append(self.commands.observe)
        self.queries: Queries = make_queries(config.influx)
        keep_private(config.data_dir)
        self._stop = threading.Event()
        self._housekeeper: threading.Thread | None = None

    def start(self) -> None:
        self.alerts.start()
        self.ingest.start()
        self._housekeeper = threading.Thread(
            target=self._housekeeping, name="housekeeping", daemon=True
        )
        self._housekeeper.start()

    def stop(self) -> None:
        self._stop.set()
        self.ingest.stop()
        self.alerts.stop()
        if self._housekeeper is not None:
            self._housekeeper.join(5)
        self.close()

    def close(self) -> None:
        """Release files and connections (also for a Central that was never started)."""
        self.alerts.stop()
        self.writer.close()
        self.queries.close()
        self.registry.close()
        self.tokens.close()

    def offline_after(self) -> float:
        """How long a gateway may be silent before it shows ``offline``: ``offline_after``,
        or an ``offline`` rule's ``after`` when that is shorter (so the dashboard never
        says ``online`` about a gateway an incident already calls silent)."""
        afters = [
            rule.after for rule in self.alerts.engine.rules.rules if isinstance(rule, OfflineRule)
        ]
        return min([self.config.offline_after, *afters])

    def _oldest_age(self) -> float:
        oldest = self._dead_letter_stats()["oldest"]
        return 0.0 if oldest is None else max(0.0, time.time() - oldest)

    def prune_dead_letters(self) -> None:
        """Dead letters past ``dead_letters_max_age`` or ``dead_letters_max_mb`` go."""
        config = self.config
        pruned = self.registry.prune_dead_letters(
            config.dead_letters_max_age, config.dead_letters_max_mb * 1024 * 1024
        )
        for why, count in pruned.items():
            if count:
                self.metrics.dead_letters_pruned(why, count)
                log.info("deleted %d dead letters (%s limit)", count, why)

    def _dead_letter_stats(self) -> dict[str, Any]:
        now = time.monotonic()
        if now - self._stats_at > 1.0:  # one query for the three gauges of one scrape
            self._stats, self._stats_at = self.registry.dead_letter_stats(), now
        return self._stats

    def _housekeeping(self) -> None:
        self.ingest.probe_influx()  # says at once, and clearly, when InfluxDB is unreachable
        rounds = 0
        while not self._stop.wait(2.0):
            try:
                rounds += 1
                if rounds % 30 == 1:  # every minute
                    self.prune_dead_letters()
                self.ingest.probe_influx()
                self.registry.flush()
                self.metrics.sync()  # with several workers: this one's live gauges
                silent_since = time.time() - self.offline_after()
                for gateway in self.registry.mark_offline(silent_since):
                    log.warning("gateway %s went silent: marked offline", gateway)
            except Exception:
                log.exception("registry housekeeping failed")

    def reload(self) -> None:
        """SIGHUP (``systemctl reload pantau-central``): central.yaml's ``webhooks`` and the
        rules file, read again. A bad file is logged naming the problem, and what was in
        force stays; other changes to central.yaml take effect at the next restart."""
        if self.config_path is not None:
            self._reload_config(self.config_path)
        self.alerts.reload_logged()

    def _reload_config(self, path: Path) -> None:
        try:
            config = load_config(path)
        except ConfigError as exc:
            log.error("%s not reloaded, the old webhooks stay in force:\n%s", path, exc)
            return
        try:
            added, removed, changed = self.alerts.set_webhooks(config.webhooks)
        except OSError as exc:
            log.error("webhooks not reloaded, the old ones stay in force: %s", exc)
            return
        self.metrics.webhooks(added)
        later = [
            name
            for name in CentralConfig.__struct_fields__
            if name != "webhooks" and getattr(config, name) != getattr(self.config, name)
        ]
        self.config = msgspec.structs.replace(self.config, webhooks=config.webhooks)
        what = [
            f"{label} {', '.join(names)}"
            for label, names in (("added", added), ("removed", removed), ("changed", changed))
            if names
        ]
        log.info(
            "webhooks reloaded from %s: %d webhook(s)%s",
            path,
            len(config.webhooks),
            f" ({'; '.join(what)})" if what else "",
        )
        if later:
            log.warning("%s: changes to %s take effect at the next restart", path, ", ".join(later))

    def _gateway_counts(self) -> dict[tuple[str, ...], float]:
        counts: dict[tuple[str, ...], float] = {}
        for gateway in self.registry.gateways():
            key = (str(gateway.get("status") or "never-seen").replace("-", "_"),)
            counts[key] = counts.get(key, 0.0) + 1
        return counts

    @property
    def ready(self) -> bool:
        return self.ingest.ready


async def serve(central: Central, workers: "Workers | None" = None) -> None:
    """Run the HTTP API until SIGTERM/SIGINT, then stop ingest cleanly. ``workers``:
    more ingest processes to start with it and stop with it (``--workers N``)."""
    import uvicorn

    from central.api.app import create_app

    app = create_app(central.config, central)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host=central.config.api.host,
            port=central.config.api.port,
            log_level="warning",
            log_config=None,  # uvicorn's loggers go through ours (log.format, journald)
            lifespan="on",
        )
    )
    loop = asyncio.get_running_loop()
    # uvicorn captures SIGTERM/SIGINT while serving and raises them again once it has
    # stopped; with these handlers installed first, that second signal only lands
    # here instead of killing the process before ingest is stopped below.
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))
    loop.add_signal_handler(signal.SIGHUP, central.reload)  # webhooks and rules file
    central.start()
    if workers is not None:
        workers.start()
    try:
        await server.serve()
    finally:
        log.info("central stopping")
        if workers is not None:
            await asyncio.to_thread(workers.stop)
        await asyncio.to_thread(central.stop)
