#!/bin/sh
# The outbox in /var/lib/courier is kept: it may hold events not yet
# delivered.
set -e
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
