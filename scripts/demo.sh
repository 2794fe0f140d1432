#!/usr/bin/env bash
# The README's demo: build provd, create a demo CA, start provd-boardsim with
# simulated boards on pseudo-terminals, let provd provision all of them into
# SQLite, print a summary and stop everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
count=${PROVD_DEMO_BOARDS:-16}

./scripts/deps.sh
if [ ! -f build/build.ninja ]; then
        meson setup build >/dev/null
fi
ninja -C build >/dev/null

work=$(mktemp -d /tmp/provd-demo.XXXXXX)
chmod 0755 "$work"
pids=()
cleanup() {
        for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
        wait 2>/dev/null || true
}
trap cleanup EXIT

B=build
mkdir -p "$work/ca" "$work/boards" "$work/state"
"$B/daemon/provctl" ca init --dir "$work/ca" >/dev/null

cat > "$work/provd.conf" <<CONF
[station]
name = demo
state_dir = $work/state
control_socket = $work/provd.sock
control_group =
[ports]
glob = $work/boards/board-*
rescan_ms = 500
[signer]
uri = file:$work/ca/signer.key
cert = $work/ca/signer.pem
root = $work/ca/root.pem
[profile]
thing_name = cn
# One board per simulated port: well inside the default guards, set here to show them.
max_certs_per_hour = 50000
max_certs_per_port_per_minute = 60
[board]
aws_endpoint = demo-ats.iot.eu-west-1.amazonaws.com
CONF

echo "demo: starting $count simulated boards in $work/boards"
"$B/station-proto/boardsim/provd-boardsim" --count "$count" --dir "$work/boards" \
        --state-dir "$work/boardstate" > "$work/boardsim.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q '^ready' "$work/boardsim.log" && break; sleep 0.1; done

echo "demo: starting provd"
"$B/daemon/provd" --config "$work/provd.conf" 2> "$work/provd.log" &
provd_pid=$!
pids+=($provd_pid)

ctl() { "$B/daemon/provctl" --socket "$work/provd.sock" "$@"; }
start=$(date +%s.%N)
done_n=0
for _ in $(seq 600); do
        if json=$(ctl status --json 2>/dev/null); then
                done_n=$(printf '%s' "$json" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["totals"]["provisioned"])')
                [ "$done_n" -ge "$count" ] && break
        fi
        sleep 0.1
done
end=$(date +%s.%N)

echo
ctl status || true
echo
kill -TERM "$provd_pid"
wait "$provd_pid" || true

db="$work/state/provd.db"
echo "=================================================================="
printf 'provisioned %s/%s boards in %s s\n' "$done_n" "$count" "$(/usr/bin/python3 -c "print(f'{$end - $start:.1f}')")"
echo "database:   $db"
sqlite3 "$db" "SELECT state, count(*) FROM devices GROUP BY state;" | sed 's/^/  devices   /'
sqlite3 "$db" "SELECT count(*) FROM certificates;" | sed 's/^/  certificates issued: /'
sqlite3 "$db" "SELECT count(*) FROM aws_outbox WHERE state = 'pending';" | sed 's/^/  AWS registrations queued: /'
echo "look at it: sqlite3 $db 'SELECT serial, state, provisioned_at FROM devices'"
echo "logs:       $work/provd.log, $work/boardsim.log"
echo "board state (what each simulated board stored): $work/boardstate"
echo "=================================================================="
[ "$done_n" -ge "$count" ]
