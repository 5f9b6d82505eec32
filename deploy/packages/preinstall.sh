#!/bin/sh
# Creates the courier user and group before the files are unpacked, so
# /etc/courier/courier.yaml gets its group.
set -e
if ! getent group courier >/dev/null 2>&1; then
	groupadd --system courier
fi
if ! getent passwd courier >/dev/null 2>&1; then
	useradd --system --gid courier --home-dir /var/lib/courier --no-create-home \
		--shell /usr/sbin/nologin --comment "Courier event delivery" courier
fi
