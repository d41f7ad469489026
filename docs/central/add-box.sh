#!/bin/sh
# Add (or re-key) one box: a random password in mosquitto's password file, and the lines that go
# into the box's linetap.toml on its boot partition (the password goes into the file beside it,
# which first boot imports and removes from the boot partition).
#   ./add-box.sh shop-01 /etc/mosquitto/linetap.passwd broker.example.net
set -eu
id="$1"; passwd="${2:-/etc/mosquitto/linetap.passwd}"; host="${3:-broker.example.net}"
case "$id" in *[!a-z0-9_-]*|"") echo "box id must be [a-z0-9_-]" >&2; exit 2;; esac
pw="$(head -c 24 /dev/urandom | base64 | tr -d '/+=' | head -c 32)"
touch "$passwd"
mosquitto_passwd -b "$passwd" "$id" "$pw"
umask 077
printf '%s\n' "$pw" > "mqtt.password.$id"
cat <<TOML
# linetap.toml for $id (boot partition), with mqtt.password.$id renamed to mqtt.password beside it
[recorder]
id = "$id"

[mqtt]
host = "$host"
port = 8883
username = "$id"
password_file = "mqtt.password"
tls_ca = "ca.crt"
TOML
echo "reload mosquitto (systemctl reload mosquitto) to apply" >&2
