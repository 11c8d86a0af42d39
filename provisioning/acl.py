"""mosquitto ACL entries: each gateway writes only under its own topic tree."""

from wire.topics import PREFIX

DEFAULT_CENTRAL_USER = "pantau-central"  # as in deploy/central.example.yaml


def gateway_acl(gateway_id: str) -> str:
    """The gateway may publish only under ``pantau/v1/<id>/`` and read only its commands."""
    return (
        f"# gateway {gateway_id}\n"
        f"user {gateway_id}\n"
        f"topic write {PREFIX}/{gateway_id}/#\n"
        f"topic read {PREFIX}/{gateway_id}/cmd/#\n"
    )


def central_acl(username: str = DEFAULT_CENTRAL_USER) -> str:
    """Central reads everything under ``pantau/v1/`` and sends commands to any gateway."""
    return (
        f"# central (the aggregator)\n"
        f"user {username}\n"
        f"topic read {PREFIX}/#\n"
        f"topic write {PREFIX}/+/cmd\n"
    )


def acl_file(gateway_ids: list[str], *central_users: str) -> str:
    header = (
        "# Pantau broker ACL, written by pantau-provision. Regenerate with\n"
        "# `pantau-provision broker-config`; hand edits are overwritten.\n"
        "# Anything not allowed here is denied.\n\n"
    )
    users = central_users or (DEFAULT_CENTRAL_USER,)
    blocks = [*(central_acl(u) for u in users), *(gateway_acl(g) for g in sorted(gateway_ids))]
    return header + "\n".join(blocks)
