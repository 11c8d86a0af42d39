#!/bin/bash
# Pantau first boot: install the agent from the wheelhouse on the boot partition
# (no internet needed), create its user, config and systemd unit, then remove the
# secrets from the boot partition. Written by `pantau-provision seed`.
#
# Called once by firstrun.sh (Raspberry Pi OS bookworm: `install.sh firstrun`) or by
# cloud-init's runcmd (trixie: `install.sh cloud-init`). Safe to run again by hand:
#     sudo bash /boot/firmware/pantau/install.sh
# It also works where systemd is not running (a chroot, an image build): the unit is
# then enabled offline and the agent starts at the next boot. Checked end to end by
# scripts/firstboot-check in the repository (docs/provisioning.md).
set -u
MODE="${1:-manual}"
BOOT=/boot/firmware
[ -d "$BOOT/pantau" ] || BOOT=/boot
SRC="$BOOT/pantau"
LOG=/var/log/pantau-firstboot.log
exec 3>&2 # the caller's stderr: failures are shown there too, not only in the log
exec >>"$LOG" 2>&1
echo "=== pantau first boot ($MODE) $(date -Is)"

fail() {
    echo "FAILED: $*"
    echo "the files stay in $SRC; fix and run: sudo bash $SRC/install.sh"
    echo "pantau first boot FAILED: $* (see $LOG)" >&3
    exit 1
}
# systemd is PID 1 (sd_booted); not in a chroot or during an image build
systemd_running() { [ -d /run/systemd/system ]; }

if [ ! -f "$SRC/agent.yaml" ]; then
    if [ -f /etc/pantau/agent.yaml ]; then echo "already installed"; exit 0; fi
    fail "no $SRC/agent.yaml"
fi
# shellcheck source=/dev/null
. "$SRC/settings.env" || fail "cannot read $SRC/settings.env"

if [ "$MODE" = firstrun ]; then
    # bookworm: nothing else sets hostname and Wi-Fi (trixie: cloud-init does).
    CUSTOM=/usr/lib/raspberrypi-sys-mods/imager_custom
    if [ -n "${PANTAU_HOSTNAME:-}" ]; then
        if [ -x "$CUSTOM" ]; then
            "$CUSTOM" set_hostname "$PANTAU_HOSTNAME"
        else
            echo "$PANTAU_HOSTNAME" >/etc/hostname
            # the name must resolve (sudo, the agent's logs): one 127.0.1.1 line with it
            if grep -q '^127\.0\.1\.1[[:space:]]' /etc/hosts 2>/dev/null; then
                sed -i "s/^127\.0\.1\.1[[:space:]].*$/127.0.1.1\t$PANTAU_HOSTNAME/" /etc/hosts
            else
                printf '127.0.1.1\t%s\n' "$PANTAU_HOSTNAME" >>/etc/hosts
            fi
            if systemd_running && command -v hostnamectl >/dev/null; then
                hostnamectl set-hostname "$PANTAU_HOSTNAME" || true
            fi
        fi
    fi
    if [ -n "${PANTAU_WIFI_SSID:-}" ]; then
        if [ -x "$CUSTOM" ]; then
            "$CUSTOM" set_wlan "$PANTAU_WIFI_SSID" "$PANTAU_WIFI_PSK" "$PANTAU_WIFI_COUNTRY"
        else
            NM=/etc/NetworkManager/system-connections/pantau-wifi.nmconnection
            mkdir -p "$(dirname "$NM")"
            umask 077
            cat >"$NM" <<NMEOF
[connection]
id=pantau-wifi
type=wifi
autoconnect=true

[wifi]
mode=infrastructure
ssid=$PANTAU_WIFI_SSID

[wifi-security]
key-mgmt=wpa-psk
psk=$PANTAU_WIFI_PSK

[ipv4]
method=auto

[ipv6]
method=auto
NMEOF
            chmod 600 "$NM"
            umask 022
            if command -v raspi-config >/dev/null; then
                raspi-config nonint do_wifi_country "$PANTAU_WIFI_COUNTRY" || true
            fi
        fi
        rfkill unblock wifi 2>/dev/null || true
    fi
fi

# The service user (no login, no home to speak of); dialout for serial devices.
if ! id -u "$PANTAU_USER" >/dev/null 2>&1; then
    useradd --system --user-group --home-dir /var/lib/pantau --no-create-home \
        --shell /usr/sbin/nologin "$PANTAU_USER" || fail "useradd $PANTAU_USER"
fi
getent group dialout >/dev/null && usermod -aG dialout "$PANTAU_USER"
GROUP="$(id -gn "$PANTAU_USER")" || fail "no primary group for $PANTAU_USER"

# The agent, from the wheels on the boot partition only (--no-index: no internet).
ls "$SRC"/wheels/pantau-*.whl >/dev/null 2>&1 || fail "no pantau wheel in $SRC/wheels"
command -v python3 >/dev/null || fail "python3 is not installed"
PYVER="$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
echo "python $PYVER on $(uname -m)"
WHEEL="$(ls "$SRC"/wheels/pantau-*.whl | sort -V | tail -n 1)"
PIP=("$PANTAU_VENV/bin/pip")
if ! python3 -m venv "$PANTAU_VENV"; then
    # no python3-venv (no ensurepip): a venv without pip, and pip run from its wheel
    PIPWHEEL="$(ls "$SRC"/wheels/pip-*.whl 2>/dev/null | sort -V | tail -n 1)"
    [ -n "$PIPWHEEL" ] || fail "python3 -m venv $PANTAU_VENV: install python3-venv, or put pip's wheel in the wheelhouse"
    python3 -m venv --without-pip "$PANTAU_VENV" || fail "python3 -m venv --without-pip $PANTAU_VENV"
    PIP=("$PANTAU_VENV/bin/python" "$PIPWHEEL/pip")
    echo "no python3-venv: using $(basename "$PIPWHEEL")"
fi
# --no-index: the wheels on the card only; no version check, no cache (nothing online)
PIP_DISABLE_PIP_VERSION_CHECK=1 "${PIP[@]}" install --no-index --no-cache-dir \
    --find-links "$SRC/wheels" "${WHEEL}[agent]" \
    || fail "pip install from $SRC/wheels (were the wheels built for Python $PYVER on $(uname -m)?)"
"$PANTAU_VENV/bin/pantau-agent" --version || fail "$PANTAU_VENV/bin/pantau-agent does not run"
if [ "$PANTAU_AGENT_BIN" != "$PANTAU_VENV/bin/pantau-agent" ]; then
    mkdir -p "$(dirname "$PANTAU_AGENT_BIN")"
    ln -sf "$PANTAU_VENV/bin/pantau-agent" "$PANTAU_AGENT_BIN"
fi

# Config and secrets: readable by the service user only.
install -d -m 750 -o root -g "$GROUP" /etc/pantau
install -d -m 750 -o "$PANTAU_USER" -g "$GROUP" /var/lib/pantau
for f in $PANTAU_FILES; do
    install -m 600 -o "$PANTAU_USER" -g "$GROUP" "$SRC/$f" "/etc/pantau/$f" \
        || fail "install /etc/pantau/$f"
done

# The service's bytecode cache (the unit's PYTHONOPTIMIZE and PYTHONPYCACHEPREFIX),
# filled now so the first start is as lean as every later one: `check --offline`
# imports what `run` does. Not fatal: the service compiles what is missing itself.
BYTECODE="$(sed -n 's/^Environment=PYTHONPYCACHEPREFIX=//p' "$SRC/pantau-agent.service")"
OPTIMIZE="$(sed -n 's/^Environment=PYTHONOPTIMIZE=//p' "$SRC/pantau-agent.service")"
if [ -n "$BYTECODE" ]; then
    CACHE="$(dirname "$BYTECODE")"
    install -d -m 750 -o "$PANTAU_USER" -g "$GROUP" "$CACHE"
    if ! PYTHONPYCACHEPREFIX="$BYTECODE" PYTHONOPTIMIZE="$OPTIMIZE" PYTHONDONTWRITEBYTECODE= \
        "$PANTAU_VENV/bin/pantau-agent" check --offline -c /etc/pantau/agent.yaml; then
        echo "warning: pantau-agent check --offline failed (above); the service will say why"
    fi
    chown -R "$PANTAU_USER:$GROUP" "$CACHE"
fi

# The agent's manual where the unit's Documentation= points (systemctl help pantau-agent).
DOC="$(sed -n 's|^Documentation=file://\([^ ]*\).*|\1|p' "$SRC/pantau-agent.service" | head -n 1)"
if [ -n "$DOC" ] && [ -f "$SRC/agent.md" ]; then
    install -D -m 644 "$SRC/agent.md" "$DOC" || echo "warning: could not install $DOC"
fi

install -d -m 755 /etc/systemd/system
install -m 644 "$SRC/pantau-agent.service" /etc/systemd/system/pantau-agent.service
if systemd_running; then
    systemctl daemon-reload || true
    systemctl enable pantau-agent.service || fail "systemctl enable pantau-agent"
    # --no-block: cloud-init's runcmd must not wait for the agent (network-online etc.)
    if [ "$MODE" = cloud-init ]; then systemctl start --no-block pantau-agent.service || true; fi
else
    # chroot or image build: enable offline (symlinks only); it starts at the next boot
    echo "systemd is not running: enabling the unit offline"
    if ! SYSTEMD_OFFLINE=1 systemctl enable pantau-agent.service; then
        install -d -m 755 /etc/systemd/system/multi-user.target.wants
        ln -sf /etc/systemd/system/pantau-agent.service \
            /etc/systemd/system/multi-user.target.wants/pantau-agent.service \
            || fail "enable pantau-agent (no systemctl)"
    fi
fi

# Secrets off the boot partition (anyone with the card could read them there).
for f in $PANTAU_SECRETS settings.env; do rm -f "$SRC/$f"; done
# Without cloud-init (bookworm) nothing reads network-config: drop ours, it holds the
# Wi-Fi password. With cloud-init (trixie) it is read at the first boot it sees.
if ! command -v cloud-init >/dev/null && grep -qs 'written by pantau-provision' "$BOOT/network-config"; then
    rm -f "$BOOT/network-config"
fi
sync
echo "=== pantau agent installed; it starts with the next boot (or now, under cloud-init)"
