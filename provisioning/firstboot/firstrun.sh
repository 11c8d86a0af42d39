#!/bin/bash
# pantau-firstrun: written by `pantau-provision seed` (Raspberry Pi OS bookworm path).
# Run once by systemd from cmdline.txt (systemd.run=...); then it unhooks itself.
set +e
BOOT=/boot/firmware
[ -d "$BOOT/pantau" ] || BOOT=/boot
# A firstrun.sh that Raspberry Pi Imager wrote before us (user, SSH, locale) runs first.
# It holds the user's password hash and the Wi-Fi key: gone once it has run.
if [ -f "$BOOT/pantau/imager-firstrun.sh" ]; then
    bash "$BOOT/pantau/imager-firstrun.sh"
    rm -f "$BOOT/pantau/imager-firstrun.sh"
fi
bash "$BOOT/pantau/install.sh" firstrun
rm -f "$BOOT/firstrun.sh"
sed -i -e 's| systemd.run=[^ ]*||g' -e 's| systemd.run_success_action=[^ ]*||g' \
    -e 's| systemd.unit=kernel-command-line.target||g' "$BOOT/cmdline.txt"
exit 0
