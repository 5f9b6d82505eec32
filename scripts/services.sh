#!/usr/bin/env bash
# Makes sure the real brokers Courier's tests talk to are running:
# RabbitMQ at 127.0.0.1:5672 (guest/guest). Starts it when installed but
# stopped; installs it from Debian's packages when missing (needs root).
# Exits non-zero when it cannot: in CI a missing broker is a failure.
set -euo pipefail

amqp_up() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }

if amqp_up; then
	echo "services: RabbitMQ is up on 127.0.0.1:5672"
	exit 0
fi
if ! command -v rabbitmq-server >/dev/null 2>&1; then
	echo "services: installing RabbitMQ (apt-get)"
	if [ "$(id -u)" -ne 0 ]; then
		echo "services: RabbitMQ is not installed and this is not root; install rabbitmq-server" >&2
		exit 1
	fi
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq rabbitmq-server >/dev/null
fi
echo "services: starting RabbitMQ"
rabbitmq-server -detached
for _ in $(seq 1 120); do
	if amqp_up; then
		rabbitmqctl await_startup >/dev/null 2>&1 || true
		echo "services: RabbitMQ is up on 127.0.0.1:5672"
		exit 0
	fi
	sleep 1
done
echo "services: RabbitMQ did not come up within 120s" >&2
exit 1
