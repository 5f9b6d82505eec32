#!/bin/sh
# Stops the worker when the package is removed (deb: "remove", rpm: 0),
# not on upgrade. SIGTERM lets in-flight deliveries finish.
set -e
if [ -d /run/systemd/system ] && { [ "$1" = remove ] || [ "$1" = 0 ]; }; then
	systemctl disable --now courier-worker >/dev/null 2>&1 || true
fi
