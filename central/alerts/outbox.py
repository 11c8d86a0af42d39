"""The webhook outbox: every notification is a row in SQLite, written in the same
transaction as the incident change that caused it, then delivered by one worker
thread per webhook. Alertmanager's Retrier rule: the sender says whether a failure
is retryable (:mod:`wire.retry`, shared with InfluxDB writes and MQTT reconnects).
5xx, 408, 429, timeouts and connection errors are retried with exponential backoff
and jitter (capped at ``alerts.max_backoff``, at least a ``Retry-After``) until delivered
or ``alerts.webhook_expiry`` has passed (``expired``); any other answer is a
permanent failure (``failed``), recorded with the status and the start of the body.

A newer notification for the same incident and webhook supersedes one still
waiting, so a recipient never gets ``firing`` after ``resolved``.
"""

import logging
import random
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

import wire
from central.alerts.matching import labels_match
from central.alerts.signing import DELIVERY_HEADER, HEADER, sign
from central.alerts.store import AlertStore
from central.database import Executor
from wire.retry import Backoff, Outcome, classify, retry_after

log = logging.getLogger(__name__)

BODY_KEEP = 512  # bytes of a refusal's body kept for the API


class DeliveryError(Exception):
    def __init__(
        self, message: str, retryable: bool, status: int | None = None, body: str | None = None
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.body = body
        self.retry_after: float | None = None  # seconds, from the recipient's Retry-After


@dataclass
class Hook:
    name: str
    url: str
    secret: str = field(repr=False)
    match: dict[str, str] = field(default_factory=dict)
    timeout: float = 10.0


def retryable_status(status: int) -> bool:
    """5xx, 408 and 429 (:func:`wire.retry.classify`); any other refusal fails for good."""
    return classify(status) is Outcome.RETRY


class Sender:
    """Posts one signed body; raises DeliveryError saying whether to retry."""

    def __init__(self, timeout: float) -> None:
        self.client = httpx.Client(timeout=timeout, follow_redirects=False)

    def send(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        try:
            response = self.client.post(url, content=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise DeliveryError(f"timed out ({type(exc).__name__})", retryable=True) from None
        except httpx.TransportError as exc:
            raise DeliveryError(f"cannot connect: {exc}", retryable=True) from None
        if 200 <= response.status_code < 300:
            return response.status_code
        text = response.content[:BODY_KEEP].decode("utf-8", "replace")
        error = DeliveryError(
            f"HTTP {response.status_code}",
            retryable=retryable_status(response.status_code),
            status=response.status_code,
            body=text,
        )
        error.retry_after = retry_after(response.headers.get("Retry-After"))
        raise error

    def close(self) -> None:
        self.client.close()


class Outbox:
    def __init__(
        self,
        store: AlertStore,
        hooks: list[Hook],
        now: Callable[[], float],
        *,
        expiry: float,
        max_backoff: float,
        rng: random.Random | None = None,
        first_backoff: float = 1.0,
        on_attempt: Callable[[str, str], None] | None = None,
    ) -> None:
        """``on_attempt(webhook, outcome)`` is told each attempt's outcome: delivered,
        retried, failed or expired (``pantau_webhook_deliveries_total``)."""
        self.store = store
        self.on_attempt = on_attempt
        self.hooks = {h.name: h for h in hooks}
        self.now = now
        self.expiry = expiry
        self.max_backoff = max_backoff
        self.first_backoff = first_backoff
        self.backoff = Backoff(first_backoff, max_backoff)
        self.rng = rng or random.Random()
        self.wake = {name: threading.Event() for name in self.hooks}
        self._senders: dict[str, Sender] = {}
        self._retired: list[Sender] = []  # senders of changed webhooks, closed at stop()
        self._stop = threading.Event()
        self._started = False
        self._threads: list[threading.Thread] = []

    # writing, inside the incident's transaction

    def routes(self, labels: dict[str, str]) -> list[Hook]:
        return [h for h in self.hooks.values() if labels_match(h.match, labels)]

    def enqueue(
        self,
        db: Executor,
        incident: int,
        *,
        event: str,
        status: str,
        labels: dict[str, str],
        body_for: Callable[[str], bytes],
        at: float,
    ) -> int:
        """Queue a notification to every webhook whose ``match`` fits; returns how many."""
        hooks = self.routes(labels)
        for hook in hooks:
            db.execute(
                "UPDATE outbox SET state = 'superseded', done_at = ? "
                "WHERE incident = ? AND webhook = ? AND state = 'pending'",
                (at, incident, hook.name),
            )
            db.execute(
                "INSERT INTO outbox (uid, incident, webhook, event, status, body, created, "
                "next_attempt) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (uuid.uuid4().hex, incident, hook.name, event, status, body_for(hook.name), at, at),
            )
            wake = self.wake.get(hook.name)
            if wake is not None:
                wake.set()
        return len(hooks)

    def abandon_unknown(self) -> int:
        """Rows for webhooks no longer in central.yaml fail, visibly."""
        now = self.now()
        names = list(self.hooks)
        marks = ",".join("?" * len(names)) or "''"
        cur = self.store.execute(
            f"UPDATE outbox SET state = 'failed', done_at = ?, last_error = "
            f"'webhook ' || webhook || ' is no longer configured' "
            f"WHERE state = 'pending' AND webhook NOT IN ({marks})",
            (now, *names),
        )
        return cur.rowcount

    def set_hooks(self, hooks: list[Hook]) -> tuple[list[str], list[str], list[str]]:
        """Use these webhooks from now on (SIGHUP): new ones get a worker, removed ones'
        workers end and their waiting notifications fail visibly, changed ones (URL,
        secret, timeout, match) are used for the next attempt. Returns (added, removed,
        changed) names."""
        new = {h.name: h for h in hooks}
        added = [n for n in new if n not in self.hooks]
        removed = [n for n in self.hooks if n not in new]
        changed = [n for n in new if n in self.hooks and new[n] != self.hooks[n]]
        for name in added:
            self.wake[name] = threading.Event()
        for name in changed + removed:
            sender = self._senders.pop(name, None)
            if sender is not None:
                self._retired.append(sender)
        self.hooks = new
        for name in removed:
            self.wake.pop(name).set()  # its worker sees it is gone and ends
        if removed:
            self.abandon_unknown()
        if self._started:
            for name in added:
                self._start_worker(name)
        return added, removed, changed

    # delivering

    def deliver_due(self, webhook: str | None = None) -> int:
        """One pass: attempt every due notification (of one webhook, or all); returns
        how many attempts were made."""
        names = [webhook] if webhook else list(self.hooks)
        attempts = 0
        for name in names:
            hook = self.hooks.get(name)
            if hook is None:
                continue  # removed by a reload
            while not self._stop.is_set():
                rows = self.store.rows(
                    "SELECT id, uid, incident, event, body, created, attempts FROM outbox "
                    "WHERE webhook = ? AND state = 'pending' AND next_attempt <= ? "
                    "ORDER BY id LIMIT 20",
                    (name, self.now()),
                )
                if not rows:
                    break
                for row in rows:
                    self._attempt(hook, row)
                    attempts += 1
        return attempts

    def _sender(self, hook: Hook) -> Sender:
        sender = self._senders.get(hook.name)
        if sender is None:
            sender = self._senders[hook.name] = Sender(hook.timeout)
        return sender

    def _attempt(self, hook: Hook, row: dict[str, Any]) -> None:
        now = self.now()
        if now - row["created"] >= self.expiry:
            self.store.execute(
                "UPDATE outbox SET state = 'expired', done_at = ?, "
                "last_error = COALESCE(last_error, '') || ' (gave up: webhook_expiry passed)' "
                "WHERE id = ?",
                (now, row["id"]),
            )
            log.error(
                "webhook %s: gave up on notification %s after %d attempts",
                hook.name,
                row["uid"],
                row["attempts"],
            )
            self._outcome(hook.name, "expired")
            return
        body = bytes(row["body"])
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"pantau-central/{wire.__version__}",
            HEADER: sign(hook.secret, body, int(now), row["uid"]),
            DELIVERY_HEADER: row["uid"],
            "X-Pantau-Event": row["event"],
        }
        attempts = row["attempts"] + 1
        try:
            status = self._sender(hook).send(hook.url, body, headers)
        except DeliveryError as exc:
            done = self.now()
            if exc.retryable:
                delay = self.backoff.delay(attempts - 1, self.rng.random, exc.retry_after)
                when = min(done + delay, row["created"] + self.expiry)
                self.store.execute(
                    "UPDATE outbox SET attempts = ?, next_attempt = ?, last_error = ?, "
                    "response_status = ?, response_body = ? WHERE id = ?",
                    (attempts, when, str(exc), exc.status, exc.body, row["id"]),
                )
                if attempts == 1:
                    log.warning("webhook %s: %s; retrying with backoff", hook.name, exc)
                self._outcome(hook.name, "retried")
            else:
                self.store.execute(
                    "UPDATE outbox SET attempts = ?, state = 'failed', done_at = ?, "
                    "last_error = ?, response_status = ?, response_body = ? WHERE id = ?",
                    (attempts, done, str(exc), exc.status, exc.body, row["id"]),
                )
                log.error("webhook %s refused a notification for good: %s", hook.name, exc)
                self._outcome(hook.name, "failed")
            return
        self.store.execute(
            "UPDATE outbox SET attempts = ?, state = 'delivered', done_at = ?, "
            "response_status = ?, last_error = NULL, response_body = NULL WHERE id = ?",
            (attempts, self.now(), status, row["id"]),
        )
        if attempts > 1:
            log.info("webhook %s: delivered after %d attempts", hook.name, attempts)
        self._outcome(hook.name, "delivered")

    def _outcome(self, webhook: str, outcome: str) -> None:
        if self.on_attempt is not None:
            self.on_attempt(webhook, outcome)

    def next_due(self, webhook: str) -> float | None:
        rows = self.store.rows(
            "SELECT MIN(next_attempt) AS due FROM outbox WHERE webhook = ? AND state = 'pending'",
            (webhook,),
        )
        return rows[0]["due"] if rows else None

    # worker threads (production; tests call deliver_due with a driven clock)

    def start(self) -> None:
        self._stop.clear()
        self._started = True
        for name in self.hooks:
            self._start_worker(name)

    def _start_worker(self, name: str) -> None:
        thread = threading.Thread(
            target=self._worker, args=(name,), name=f"webhook-{name}", daemon=True
        )
        thread.start()
        self._threads.append(thread)

    def _worker(self, name: str) -> None:
        wake = self.wake[name]
        while not self._stop.is_set() and self.wake.get(name) is wake:
            try:
                self.deliver_due(name)
                due = self.next_due(name)
            except Exception:
                log.exception("webhook %s: delivery worker error", name)
                due = None
            wait = 5.0 if due is None else min(5.0, max(0.0, due - self.now()))
            wake.wait(wait)
            wake.clear()

    def stop(self) -> None:
        self._stop.set()
        for event in self.wake.values():
            event.set()
        for thread in self._threads:
            thread.join(15)
        self._threads.clear()
        self._started = False
        for sender in [*self._senders.values(), *self._retired]:
            sender.close()
        self._senders.clear()
        self._retired.clear()

    # reads

    def search(
        self,
        *,
        state: str | None = None,
        webhook: str | None = None,
        incident: int | None = None,
        limit: int = 100,
    ) -> list[dict[str, Any]]:
        where, args = [], []
        for column, value in (("state", state), ("webhook", webhook), ("incident", incident)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = (
            "SELECT id, uid, incident, webhook, event, status, created, next_attempt, attempts, "
            "state, last_error, response_status, response_body, done_at FROM outbox"
        )
        if where:
            sql += " WHERE " + " AND ".join(where)
        return self.store.rows(sql + " ORDER BY id DESC LIMIT ?", (*args, limit))
