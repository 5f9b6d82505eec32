#!/usr/bin/env bash
# Courier cluster demo: three workers on loopback form one cluster (run by
# `make cluster-demo`, after make build). It emits events, kills one node
# with SIGKILL, adds a webhook at run time while it is down, restarts it and
# shows it catching up with no sync command. Everything runs from
# ./cluster-demo and is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

DIR="$PWD/cluster-demo"
BASE="${CLUSTER_DEMO_PORT_BASE:-14240}"   # uses BASE..BASE+9
RECEIVER_PORT=$((BASE + 9))
export COURIER_SPOOL="$DIR/spool"

SCRIPT_NAME=cluster-demo
. scripts/lib.sh
for p in $(seq "$BASE" $((BASE + 9))); do
	if port_busy "$p"; then
		echo "cluster-demo: port $p is in use; set CLUSTER_DEMO_PORT_BASE" >&2
		exit 1
	fi
done

rm -rf "$DIR"
mkdir -p "$DIR"
pids=()
cleanup() {
	for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT


routes="127.0.0.1:$((BASE + 3)), 127.0.0.1:$((BASE + 4)), 127.0.0.1:$((BASE + 5))"
for i in 1 2 3; do
	cat >"$DIR/n$i.yaml" <<YAML
node_id: n$i
data_dir: $DIR/n$i
log: {level: info, format: json}
admin: {listen: "127.0.0.1:$((BASE + 5 + i))"}
outbox: {listen: "127.0.0.1:$((BASE + i - 1))"}
webhook_allow: [127.0.0.1/32]   # the demo's receiver runs on this machine
cluster:
  name: demo
  listen: 127.0.0.1:$((BASE + 2 + i))
  routes: [$routes]
sinks:
  - name: audit
    type: webhook
    url: http://127.0.0.1:$RECEIVER_PORT/listen
    format: gluster
YAML
done

start_node() {
	bin/worker run --config "$DIR/n$1.yaml" 2>>"$DIR/n$1.log" &
	pids+=($!)
	eval "pid_n$1=$!"
}

echo "== receiver on :$RECEIVER_PORT, three workers forming cluster 'demo'"
bin/receiver --listen "127.0.0.1:$RECEIVER_PORT" >"$DIR/receiver.log" 2>&1 &
pids+=($!)
for i in 1 2 3; do start_node "$i"; done
for i in 1 2 3; do wait_for "$DIR/n$i.log" '"worker started"' 1 60; done
bin/worker status --config "$DIR/n1.yaml"

echo "== 20 events through node 1 and node 2"
for i in $(seq 1 10); do bin/emit --url "nats://127.0.0.1:$BASE" --type VOLUME_CREATE --data "{\"i\":$i}" >/dev/null; done
for i in $(seq 11 20); do bin/emit --url "nats://127.0.0.1:$((BASE + 1))" --type VOLUME_CREATE --data "{\"i\":$i}" >/dev/null; done
wait_for "$DIR/receiver.log" "^received" 20 30
echo "receiver: $(grep -c '^received' "$DIR/receiver.log") events"

echo "== kill -9 node 3; emit 10 more and add a sink while it is down"
kill -KILL "$pid_n3"
for i in $(seq 21 30); do bin/emit --url "nats://127.0.0.1:$BASE" --type VOLUME_DELETE --data "{\"i\":$i}" >/dev/null; done
# Right after a kill the cluster may still be electing new leaders: a
# command that times out is simply run again (--replace: the same
# definition again, should the first try have stored it). It waits for
# nodes 1 and 2 to run the sink and lists node 3 as DOWN once its last
# heartbeat is too old.
for attempt in 1 2 3 4 5; do
	bin/worker sinks add --config "$DIR/n1.yaml" late "http://127.0.0.1:$RECEIVER_PORT/listen?sink=late" --events 'VOLUME_*' --replace && break
	[ "$attempt" -lt 5 ] || exit 1
	sleep 2
done
bin/emit --url "nats://127.0.0.1:$BASE" --type VOLUME_STOP --data '{"after":"add"}' >/dev/null

echo "== restart node 3: no sync command"
start_node 3
wait_for "$DIR/n3.log" '"worker started"' 2 60
bin/worker sinks list --config "$DIR/n3.yaml"
wait_for "$DIR/receiver.log" "^received" 32 30
echo "receiver: $(grep -c '^received' "$DIR/receiver.log") deliveries (31 events to audit, 1 to the late sink)"
bin/worker status --config "$DIR/n3.yaml"
echo "== done; logs in $DIR"
