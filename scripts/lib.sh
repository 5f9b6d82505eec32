# Shell helpers shared by the quick start and the cluster demo; source it
# after setting SCRIPT_NAME (used to prefix messages).

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_for FILE PATTERN COUNT SECONDS: until FILE has COUNT lines matching.
wait_for() {
	local deadline=$((SECONDS + $4))
	local n
	while n=$(grep -c -- "$2" "$1" 2>/dev/null || true); [ "${n:-0}" -lt "$3" ]; do
		if [ "$SECONDS" -ge "$deadline" ]; then
			echo "$SCRIPT_NAME: timed out waiting for '$2' in $1:" >&2
			tail -n 40 "$1" >&2
			exit 1
		fi
		sleep 0.1
	done
}
