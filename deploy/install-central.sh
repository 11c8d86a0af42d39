#!/bin/bash
# Install or upgrade Pantau central on Debian 12 / Ubuntu 22.04+ (docs/central.md "Install").
#
#     sudo deploy/install-central.sh                      # from this checkout (pip's index)
#     sudo deploy/install-central.sh --wheelhouse DIR     # offline, from wheels built with
#         pip wheel -c constraints.txt -w DIR '.[central,provisioning]'
#
# Run it from a checkout of the repository (or an unpacked release): it uses its
# deploy/ files and constraints.txt. Safe to run again (an upgrade): what exists is kept.
#
# What it does, with the default paths:
#   /opt/pantau                      a Python venv holding pantau[central,provisioning],
#                                    versions pinned by constraints.txt (no `sudo pip install`:
#                                    Debian's Python is externally managed, PEP 668)
#   /usr/local/bin/pantau-central    links to the venv's console scripts, where the unit
#   /usr/local/bin/pantau-provision    deploy/systemd/pantau-central.service runs them
#   user and group `pantau`          system user, no login
#   /etc/pantau                      0750 root:pantau; central.yaml and rules.yaml copied
#                                    from the examples only if missing (0640 root:pantau)
#   /var/lib/pantau-central          0700 pantau: central's data_dir
#   /etc/systemd/system/pantau-central.service, docs in /opt/pantau/share/doc/pantau
# It neither enables nor starts the service on a first install (edit central.yaml first);
# on an upgrade it restarts a running one.
#
# PANTAU_PREFIX overrides /opt/pantau; PANTAU_PYTHON the Python (default /usr/bin/python3).
set -euo pipefail

SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX="${PANTAU_PREFIX:-/opt/pantau}"
BIN_DIR=/usr/local/bin
ETC=/etc/pantau
DATA=/var/lib/pantau-central
UNIT_DIR=/etc/systemd/system
SERVICE_USER=pantau
SCRIPTS=(pantau-central pantau-provision)
WHEELHOUSE=""

die() {
    echo "install-central: error: $*" >&2
    exit 1
}
say() { echo "install-central: $*"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --wheelhouse)
            [ $# -ge 2 ] || die "--wheelhouse needs a directory"
            WHEELHOUSE="$(cd "$2" && pwd)" || die "--wheelhouse $2: no such directory"
            shift 2
            ;;
        -h | --help)
            sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done

[ "$(id -u)" -eq 0 ] || die "run as root: sudo $0"
[ -f "$SRC/pyproject.toml" ] && [ -f "$SRC/constraints.txt" ] \
    || die "$SRC is not a Pantau checkout (no pyproject.toml / constraints.txt)"
if [ -n "$WHEELHOUSE" ]; then
    ls "$WHEELHOUSE"/pantau-*.whl >/dev/null 2>&1 || die "no pantau-*.whl in $WHEELHOUSE"
fi

# --- Python 3.11+ with venv ------------------------------------------------------
# Debian's own Python by default: a venv made from a Python under someone's home
# (pyenv) would not run for the service user
PYTHON="${PANTAU_PYTHON:-/usr/bin/python3}"
[ -x "$PYTHON" ] || PYTHON="$(command -v python3)" \
    || die "python3 is not installed: apt-get install -y python3 python3-venv"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "Python 3.11 or newer is needed, $PYTHON is $("$PYTHON" --version 2>&1)"

# --- the venv and the program ------------------------------------------------------
if [ ! -x "$PREFIX/bin/python" ] || ! "$PREFIX/bin/python" -c 'import pip' 2>/dev/null; then
    say "creating the venv $PREFIX"
    "$PYTHON" -m venv "$PREFIX" \
        || die "$PYTHON -m venv $PREFIX failed: apt-get install -y python3-venv"
fi
PIP=("$PREFIX/bin/python" -m pip --disable-pip-version-check --no-input)
if [ -n "$WHEELHOUSE" ]; then
    say "installing pantau[central,provisioning] from $WHEELHOUSE (no index)"
    "${PIP[@]}" install --quiet --no-index --find-links "$WHEELHOUSE" \
        -c "$SRC/constraints.txt" --upgrade "pantau[central,provisioning]" \
        || die "pip install from $WHEELHOUSE failed (built for this machine's Python $("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')?)"
else
    say "installing pantau[central,provisioning] from $SRC"
    "${PIP[@]}" install --quiet -c "$SRC/constraints.txt" --upgrade "$SRC[central,provisioning]" \
        || die "pip install $SRC failed"
fi
for script in "${SCRIPTS[@]}"; do
    [ -x "$PREFIX/bin/$script" ] || die "$PREFIX/bin/$script missing after the install"
    install -d -m 0755 "$BIN_DIR"
    ln -sfn "$PREFIX/bin/$script" "$BIN_DIR/$script"
done
"$BIN_DIR/pantau-central" --version >/dev/null || die "$BIN_DIR/pantau-central does not run"

# --- user, directories, config ------------------------------------------------------
if ! getent passwd "$SERVICE_USER" >/dev/null; then
    say "creating the system user $SERVICE_USER"
    useradd --system --user-group --home-dir "$DATA" --no-create-home \
        --shell /usr/sbin/nologin "$SERVICE_USER" || die "useradd $SERVICE_USER"
fi
GROUP="$(id -gn "$SERVICE_USER")"
install -d -m 0750 -o root -g "$GROUP" "$ETC"
install -d -m 0700 -o "$SERVICE_USER" -g "$GROUP" "$DATA"
for pair in "central.example.yaml:central.yaml" "rules.example.yaml:rules.yaml"; do
    example="${pair%%:*}"
    target="$ETC/${pair##*:}"
    if [ -e "$target" ]; then
        say "keeping $target"
    else
        install -m 0640 -o root -g "$GROUP" "$SRC/deploy/$example" "$target"
        say "wrote $target from deploy/$example: edit it"
    fi
done

# --- unit and docs --------------------------------------------------------------------
install -d -m 0755 "$UNIT_DIR" "$PREFIX/share/doc/pantau"
install -m 0644 "$SRC/deploy/systemd/pantau-central.service" "$UNIT_DIR/pantau-central.service"
install -m 0644 "$SRC"/docs/*.md "$PREFIX/share/doc/pantau/"
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    if systemctl is-active --quiet pantau-central; then
        say "restarting the running pantau-central"
        systemctl restart pantau-central
    fi
fi

say "installed $("$BIN_DIR/pantau-central" --version)"
cat <<EOF
Next (docs/central.md):
  1. edit $ETC/central.yaml (broker password file, InfluxDB, rules_file: $ETC/rules.yaml)
  2. sudo -u $SERVICE_USER pantau-central check -c $ETC/central.yaml
  3. sudo systemctl enable --now pantau-central
EOF
