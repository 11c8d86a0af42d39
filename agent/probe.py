"""A short broker connection test for ``pantau-agent check``."""

from agent.config import AgentConfig
from wire.broker import probe_broker as _probe


def probe_broker(config: AgentConfig, timeout: float = 5.0) -> str | None:
    """None when the broker accepts the gateway's credentials, else what went wrong."""
    return _probe(config.mqtt, f"{config.gateway.id}-check", timeout)
