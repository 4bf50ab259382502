"""Structured JSON logs: one line per decision (allows sampled, denies always), never a secret."""

from __future__ import annotations

import json
import logging
import random
import sys
from collections.abc import Callable
from typing import Any

from sidecar.decision import Decision

DECISION_LOGGER = "assets_authz.decision"


class JsonFormatter(logging.Formatter):
    """Render records as one JSON object per line; `extra={"fields": {...}}` is merged in."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, separators=(",", ":"), default=str)


def setup_logging(level: int = logging.INFO) -> None:
    """Send every log record to standard error as JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


class DecisionLogger:
    """Logs decisions: every deny, a sampled fraction of allows."""

    def __init__(
        self,
        sample_rate: float,
        *,
        rand: Callable[[], float] = random.random,
        logger: logging.Logger | None = None,
    ) -> None:
        self.sample_rate = sample_rate
        self._rand = rand
        self._log = logger or logging.getLogger(DECISION_LOGGER)

    def log(self, decision: Decision, *, request_id: str, latency_s: float) -> None:
        real_deny = not decision.allowed or decision.dry_run_overridden
        if not real_deny and self._rand() >= self.sample_rate:
            return
        fields: dict[str, Any] = {
            "decision_id": decision.decision_id,
            "request_id": request_id,
            "result": decision.result,
            "reason": decision.reason.value if decision.reason else None,
            "layer": decision.layer.value if decision.layer else None,
            "auth_type": decision.auth_type,
            "account_id": decision.account_id,
            "operation": decision.operation,
            "latency_ms": round(latency_s * 1000, 3),
        }
        if decision.detail:
            fields["detail"] = decision.detail
        if decision.dry_run_overridden:
            fields["dry_run"] = True
        self._log.info("decision", extra={"fields": fields})
