"""``pantau-central check``: what would stop central from working, said plainly."""

from central.config import CentralConfig
from central.database import redact_url
from central.influx import WriteError, make_writer
from wire.broker import probe_broker as _probe


def run_checks(config: CentralConfig, offline: bool = False) -> list[str]:
    problems: list[str] = []
    print(
        f"config ok: influx {config.influx.api} at {config.influx.url}, data in "
        + (redact_url(config.database.url) if config.database.url else str(config.data_dir))
    )
    for name, read in (("mqtt.password_file", config.mqtt.secret),):
        try:
            read()
        except OSError as exc:
            problems.append(f"{name}: cannot read: {exc.strerror}")
    try:
        config.data_dir.mkdir(parents=True, exist_ok=True)
        probe = config.data_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        problems.append(f"data_dir: {config.data_dir} is not writable: {exc.strerror}")
    problems += _check_alerts(config)
    if offline or problems:
        return problems
    error = probe_broker(config)
    if error:
        problems.append(f"mqtt.url: {config.mqtt.url}: {error}")
    else:
        print(f"broker ok: {config.mqtt.url}")
    try:
        writer = make_writer(config.influx)
        try:
            writer.ping()
        finally:
            writer.close()
        print(f"influx ok: {config.influx.url}")
    except WriteError as exc:
        problems.append(f"influx.url: {exc}")
    if config.database.url:
        problems += _check_database(config.database.url)
    return problems


def _check_database(url: str) -> list[str]:
    from central.database import Database, DatabaseError, Target

    where = Target("postgresql", url)
    try:
        db = Database(where, name="pantau-central check")
        try:
            db.execute("SELECT 1")
        finally:
            db.close()
    except DatabaseError as exc:
        return [f"database.url: {exc}"]
    print(f"database ok: {where}")
    return []


def probe_broker(config: CentralConfig, timeout: float = 5.0) -> str | None:
    """None when the broker accepts central's credentials, else what went wrong."""
    return _probe(config.mqtt, f"{config.mqtt.client_id}-check", timeout)


def _check_alerts(config: CentralConfig) -> list[str]:
    from central.alerts.rules import load_rules
    from wire.configfile import ConfigError

    problems: list[str] = []
    if config.rules_file is not None:
        try:
            rules = load_rules(config.rules_file)
        except ConfigError as exc:
            problems.extend(exc.problems)
        else:
            print(f"rules ok: {len(rules.rules)} rules in {config.rules_file}")
    for index, hook in enumerate(config.webhooks):
        try:
            hook.secret_value()
        except OSError as exc:
            problems.append(
                f"webhooks[{index}] ({hook.name}).secret_file: cannot read: {exc.strerror}"
            )
    return problems
