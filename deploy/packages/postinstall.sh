#!/bin/sh
# The unit is not started: the configuration needs its sinks and secrets
# first.
set -e
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
	if systemctl is-active --quiet courier-worker; then
		# An upgrade: the running worker takes the new binary.
		systemctl restart courier-worker || true
	else
		echo "courier: edit /etc/courier/courier.yaml (secrets in /etc/courier/courier.env), then: systemctl enable --now courier-worker"
	fi
fi
