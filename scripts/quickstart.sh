#!/usr/bin/env bash
# Courier quick start: builds nothing itself (make run builds first), then
# starts the example webhook receiver and a worker with the embedded outbox,
# emits a few Gluster-style events and shows them delivered. Everything runs
# from ./quickstart and is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

export QUICKSTART_DIR="$PWD/quickstart"
export QUICKSTART_OUTBOX_PORT="${QUICKSTART_OUTBOX_PORT:-4244}"
export QUICKSTART_RECEIVER_PORT="${QUICKSTART_RECEIVER_PORT:-9000}"
export QUICKSTART_ADMIN_PORT="${QUICKSTART_ADMIN_PORT:-9464}"
export QUICKSTART_INGEST_PORT="${QUICKSTART_INGEST_PORT:-8080}"
export QUICKSTART_TOKEN="quickstart-token"
# The console's sign-in token (and the admin API's): random unless given.
export QUICKSTART_ADMIN_TOKEN="${QUICKSTART_ADMIN_TOKEN:-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')}"
export COURIER_URL="nats://127.0.0.1:${QUICKSTART_OUTBOX_PORT}"
# A spool of its own: emit would otherwise send events waiting in your real
# one (~/.local/state/courier/spool) to this throwaway outbox.
export COURIER_SPOOL="$QUICKSTART_DIR/spool"
CONFIG=examples/quickstart.yaml

SCRIPT_NAME=quickstart
. scripts/lib.sh
for p in "$QUICKSTART_OUTBOX_PORT" "$QUICKSTART_RECEIVER_PORT" "$QUICKSTART_ADMIN_PORT" "$QUICKSTART_INGEST_PORT"; do
	if port_busy "$p"; then
		echo "quickstart: port $p is in use; set QUICKSTART_OUTBOX_PORT / QUICKSTART_RECEIVER_PORT / QUICKSTART_ADMIN_PORT / QUICKSTART_INGEST_PORT" >&2
		exit 1
	fi
done

rm -rf "$QUICKSTART_DIR"
mkdir -p "$QUICKSTART_DIR"
pids=()
cleanup() {
	for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT


echo "== starting the example webhook receiver on :$QUICKSTART_RECEIVER_PORT"
bin/receiver --listen "127.0.0.1:$QUICKSTART_RECEIVER_PORT" --token "$QUICKSTART_TOKEN" >"$QUICKSTART_DIR/receiver.log" 2>&1 &
pids+=($!)

echo "== starting the worker (embedded JetStream outbox on $COURIER_URL)"
bin/worker check --config "$CONFIG"
bin/worker run --config "$CONFIG" 2>"$QUICKSTART_DIR/worker.log" &
worker_pid=$!
pids+=("$worker_pid")
wait_for "$QUICKSTART_DIR/worker.log" "worker started" 1 30
wait_for "$QUICKSTART_DIR/receiver.log" "receiver listening" 1 10

echo "== emitting events (each command returns once the event is fsynced in the outbox)"
bin/emit --type VOLUME_CREATE --key gv1 --data '{"name":"gv1"}'
bin/emit --type PEER_DETACH --data '{"host":"server3.example.com"}'
bin/emit --file examples/events.jsonl
expected=5 # of the 6 events, 5 match the sink's filter (VOLUME_*, PEER_*)
if command -v curl >/dev/null 2>&1; then
	echo "== posting one over HTTP (answered once fsynced, like emit):"
	curl -fsS "http://127.0.0.1:$QUICKSTART_INGEST_PORT/v1/events" -H 'Content-Type: application/json' \
		-d '{"type":"VOLUME_START","key":"gv1","data":{"name":"gv1"}}'
	expected=6
fi

wait_for "$QUICKSTART_DIR/receiver.log" "^received" "$expected" 30
echo "== the receiver got (Gluster format: nodeid, ts, event, message):"
grep '^received' "$QUICKSTART_DIR/receiver.log"

echo "== webhook-test, as in gluster-eventsapi:"
bin/worker sinks test --config "$CONFIG" gluster-webhook

if command -v curl >/dev/null 2>&1; then
	echo "== metrics (http://127.0.0.1:$QUICKSTART_ADMIN_PORT/metrics):"
	curl -fsS "http://127.0.0.1:$QUICKSTART_ADMIN_PORT/metrics" | grep -E '^courier_(deliveries_total\{|event_log_(events_total|lag))' || true
fi

echo "== worker status (as gluster-eventsapi status):"
bin/worker status --config "$CONFIG"

echo "== the event log (CloudStack's listEvents): what was emitted, and each sink's answer"
# Attempts reach the log in batches, a fraction of a second after delivery.
for _ in $(seq 1 50); do
	bin/worker events list --config "$CONFIG" --json | grep -q '"state":"delivered"' && break
	sleep 0.1
done
bin/worker events list --config "$CONFIG"
echo "== its VOLUME_* events of the last hour:"
bin/worker events list --config "$CONFIG" --type 'VOLUME_*' --since 1h

echo "== dead letters of the sink (none expected):"
bin/worker dlq list --config "$CONFIG" --sink gluster-webhook

CONSOLE="http://127.0.0.1:$QUICKSTART_ADMIN_PORT/"
if command -v curl >/dev/null 2>&1; then
	echo "== the web console ($CONSOLE): signed in, its overview lists"
	jar="$QUICKSTART_DIR/console.cookies"
	curl -fsS -o /dev/null -c "$jar" --data-urlencode "token=$QUICKSTART_ADMIN_TOKEN" "${CONSOLE}login"
	curl -fsS -b "$jar" "${CONSOLE}overview" | grep -oE 'data-(node|sink)="[^"]+"' | sed 's/^data-/  /'
fi
if [ -n "${QUICKSTART_KEEP:-}" ]; then
	echo "== the worker keeps running: open $CONSOLE and sign in with the token $QUICKSTART_ADMIN_TOKEN; Ctrl-C stops it"
	wait "$worker_pid" || true
	exit 0
fi
echo "   (QUICKSTART_KEEP=1 make run keeps the worker running to open the console in a browser)"

echo "== stopping the worker (SIGTERM: in-flight deliveries finish first)"
kill -TERM "$worker_pid"
wait "$worker_pid"
echo "quickstart: done. Logs and data are in $QUICKSTART_DIR"
