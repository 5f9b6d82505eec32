#!/usr/bin/env bash
# Makes sure the real services Courier's tests talk to are running:
# RabbitMQ at 127.0.0.1:5672 (guest/guest) and PostgreSQL at 127.0.0.1:5432
# (trust auth, database "test"), and Debian's Chromium for the console's
# browser tests. Starts each when installed but stopped;
# installs it from Debian's packages when missing (needs root). Exits
# non-zero when it cannot: in CI a missing service is a failure.
set -euo pipefail

up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

install() {
	if [ "$(id -u)" -ne 0 ]; then
		echo "services: $1 is not installed and this is not root; install $1" >&2
		exit 1
	fi
	echo "services: installing $1 (apt-get)"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq "$1" >/dev/null
}

# wait_up NAME PORT: up to 120 s for the port to answer.
wait_up() {
	for _ in $(seq 1 120); do
		if up "$2"; then
			echo "services: $1 is up on 127.0.0.1:$2"
			return 0
		fi
		sleep 1
	done
	echo "services: $1 did not come up within 120s" >&2
	exit 1
}

rabbitmq() {
	if up 5672; then
		echo "services: RabbitMQ is up on 127.0.0.1:5672"
		return
	fi
	command -v rabbitmq-server >/dev/null 2>&1 || install rabbitmq-server
	echo "services: starting RabbitMQ"
	rabbitmq-server -detached
	wait_up RabbitMQ 5672
	rabbitmqctl await_startup >/dev/null 2>&1 || true
}

postgres() {
	if ! up 5432; then
		if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
			install postgresql
			# Debian's cluster asks for passwords on TCP; the tests connect
			# as postgres over loopback with trust, as on the CI machines.
			conf=$(ls /etc/postgresql/*/main/pg_hba.conf)
			sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' "$conf"
		fi
		echo "services: starting PostgreSQL"
		pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
		wait_up PostgreSQL 5432
	else
		echo "services: PostgreSQL is up on 127.0.0.1:5432"
	fi
	if ! psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'test'" | grep -q 1; then
		psql -h 127.0.0.1 -U postgres -c "CREATE DATABASE test" >/dev/null
		echo "services: created database test"
	fi
}

# The console's tests drive a real browser: Debian's chromium (the tests
# find it on PATH, or at $COURIER_CHROMIUM).
chromium_browser() {
	if [ -n "${COURIER_CHROMIUM:-}" ] || command -v chromium >/dev/null 2>&1; then
		echo "services: chromium is installed"
		return
	fi
	install chromium
}

# The package tests unpack the .deb and query the .rpm.
package_tools() {
	if command -v dpkg-deb >/dev/null 2>&1 && command -v rpm >/dev/null 2>&1; then
		echo "services: dpkg-deb and rpm are installed"
		return
	fi
	install rpm
}

# The partition scenario puts nodes in network namespaces of its own.
netns_tools() {
	if command -v ip >/dev/null 2>&1; then
		echo "services: iproute2 is installed"
		return
	fi
	install iproute2
}

rabbitmq
postgres
chromium_browser
package_tools
netns_tools
