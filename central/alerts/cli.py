"""``pantau-central webhook test`` and ``pantau-central rules check``: exit codes, no
config file needed."""

import argparse
import sys
import time

import httpx

import wire
from central.alerts import payload
from central.alerts.coverage import catalog, unmatched
from central.alerts.rules import load_rules
from central.alerts.signing import DELIVERY_HEADER, HEADER, sign
from wire.configfile import ConfigError


def webhook_test(args: argparse.Namespace) -> int:
    """Send a signed sample alert to ``--url``; 0 when the recipient answers 2xx."""
    now = time.time()
    body = payload.encode(payload.sample(args.status, now))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"pantau-central/{wire.__version__}",
        HEADER: sign(args.secret, body, int(now), "test"),
        DELIVERY_HEADER: "test",
        "X-Pantau-Event": args.status,
    }
    try:
        response = httpx.post(args.url, content=body, headers=headers, timeout=10.0)
    except httpx.InvalidURL as exc:
        print(f"error: bad URL {args.url!r}: {exc}", file=sys.stderr)
        return 2
    except httpx.HTTPError as exc:
        print(f"error: could not deliver to {args.url}: {exc}", file=sys.stderr)
        return 1
    text = response.text[:300]
    if 200 <= response.status_code < 300:
        print(f"delivered: {args.url} answered {response.status_code}")
        return 0
    print(f"error: {args.url} answered {response.status_code}: {text}", file=sys.stderr)
    return 1


def rules_check(args: argparse.Namespace) -> int:
    """Validate a rules file; 0 when it loads (warnings included), 1 (listing every
    problem) when not.

    A rule whose ``match`` no shipped profile (nor one under ``--profiles-dir``) can
    satisfy, by profile name or metric, gets a ``warning:`` line: it would never fire.
    """
    from agent.profiles import default_profiles_dir

    try:
        rules = load_rules(args.file)
    except ConfigError as exc:
        exc.report()
        return 1
    folders = [default_profiles_dir(), *(getattr(args, "profiles_dir", None) or [])]
    profiles, problems = catalog(folders)
    for problem in problems:
        print(f"warning: {problem}")
    warned = 0
    for rule in rules.rules:
        reason = unmatched(rule, profiles)
        if reason is None:
            print(f"ok: {rule.name} ({rule.kind}, {rule.severity})")
        else:
            warned += 1
            print(f"warning: {rule.name}: it can never fire: {reason}")
    searched = ", ".join(str(f) for f in folders)
    print(
        f"{args.file}: {len(rules.rules)} rule(s), {warned} warning(s) "
        f"({len(profiles)} profiles in {searched})"
    )
    return 0
