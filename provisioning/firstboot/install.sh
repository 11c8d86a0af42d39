#!/bin/bash
# Pantau first boot: install the agent from the wheelhouse on the boot partition
# (no internet needed), create its user, config and systemd unit, then remove the
# secrets from the boot partition. Written by `pantau-provision seed`.
#
# Called once by firstrun.sh (Raspberry Pi OS bookworm: `install.sh firstrun`) or by
# cloud-init's runcmd (trixie: `install.sh cloud-init`). Safe to run again by hand:
#     sudo bash /boot/firmware/pantau/install.sh
set -u
MODE="${1:-manual}"
BOOT=/boot/firmware
[ -d "$BOOT/pantau" ] || BOOT=/boot
SRC="$BOOT/pantau"
LOG=/var/log/pantau-firstboot.log
exec >>"$LOG" 2>&1
echo "=== pantau first boot ($MODE) $(date -Is)"

fail() { echo "FAILED: $*"; echo "the files stay in $SRC; fix and run: sudo bash $SRC/install.sh"; exit 1; }

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
            CURRENT="$(tr -d ' \t\n\r' </etc/hostname)"
            echo "$PANTAU_HOSTNAME" >/etc/hostname
            sed -i "s/127.0.1.1.*$CURRENT/127.0.1.1\t$PANTAU_HOSTNAME/g" /etc/hosts
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

# The agent, from the wheels on the boot partition only (--no-index: no internet).
ls "$SRC"/wheels/pantau-*.whl >/dev/null 2>&1 || fail "no pantau wheel in $SRC/wheels"
python3 -m venv "$PANTAU_VENV" || fail "python3 -m venv $PANTAU_VENV (is python3-venv installed?)"
WHEEL="$(ls "$SRC"/wheels/pantau-*.whl | sort -V | tail -n 1)"
"$PANTAU_VENV/bin/pip" install --no-index --find-links "$SRC/wheels" "${WHEEL}[agent]" \
    || fail "pip install from $SRC/wheels"
if [ "$PANTAU_AGENT_BIN" != "$PANTAU_VENV/bin/pantau-agent" ]; then
    ln -sf "$PANTAU_VENV/bin/pantau-agent" "$PANTAU_AGENT_BIN"
fi

# Config and secrets: readable by the service user only.
install -d -m 750 -o root -g "$PANTAU_USER" /etc/pantau
install -d -m 750 -o "$PANTAU_USER" -g "$PANTAU_USER" /var/lib/pantau
for f in $PANTAU_FILES; do
    install -m 600 -o "$PANTAU_USER" -g "$PANTAU_USER" "$SRC/$f" "/etc/pantau/$f" \
        || fail "install /etc/pantau/$f"
done

install -m 644 "$SRC/pantau-agent.service" /etc/systemd/system/pantau-agent.service
systemctl daemon-reload 2>/dev/null || true
systemctl enable pantau-agent.service || fail "systemctl enable pantau-agent"
if [ "$MODE" = cloud-init ]; then systemctl start pantau-agent.service || true; fi

# Secrets off the boot partition (anyone with the card could read them there).
for f in $PANTAU_SECRETS settings.env; do rm -f "$SRC/$f"; done
sync
echo "=== pantau agent installed; it starts with the next boot (or now, under cloud-init)"
