#!/usr/bin/env bash
# Prints the agent's figures: bytes on the wire per fix, outbox and filter
# throughput, RSS and CPU of `agent run` at 1 fix/s, and fleet capacity.
#
#   agent/bench.sh                      # ~60 s run + 30 s fleet
#   RUN_SECONDS=20 FLEET_SECONDS=10 FLEET_COURIERS=100 agent/bench.sh
#
# RSS/CPU and fleet figures need a broker: Mosquitto is started on a free
# loopback port when installed (apt-get install -y mosquitto), or set
# BROKER=tcp://host:port to use another one.
set -euo pipefail
cd "$(dirname "$0")"

RUN_SECONDS=${RUN_SECONDS:-60}
FLEET_SECONDS=${FLEET_SECONDS:-30}
FLEET_COURIERS=${FLEET_COURIERS:-200}
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

echo "== bytes on the wire per fix, codec, outbox, filter (go test -bench)"
go test -run '^$' -bench 'BytesPerFix' -benchtime 2000x ./internal/link | grep -E '^Benchmark'
go test -run '^$' -bench '.' -benchtime 2000x ./internal/outbox | grep -E '^Benchmark'
go test -run '^$' -bench '.' -benchtime 20000x ./internal/filter | grep -E '^Benchmark'
echo "   (OwnTracks JSON for the same fix: see BenchmarkBytesPerFix/owntracks)"

CGO_ENABLED=0 go build -o "$work/agent" ./cmd/agent
echo "== binary size: $(du -h "$work/agent" | cut -f1) (CGO_ENABLED=0, linux/$(go env GOARCH))"

if [[ -z "${BROKER:-}" ]]; then
  mosq=$(command -v mosquitto || ls /usr/sbin/mosquitto 2>/dev/null || true)
  if [[ -z "$mosq" ]]; then
    echo "== no broker (install mosquitto or set BROKER=tcp://host:port): skipping RSS/CPU and fleet figures"
    exit 0
  fi
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$port" > "$work/mosquitto.conf"
  "$mosq" -c "$work/mosquitto.conf" >/dev/null 2>&1 &
  pids+=($!)
  sleep 0.5
  BROKER="tcp://127.0.0.1:$port"
fi

clk=$(getconf CLK_TCK)
# cpu_ticks PID: utime+stime in clock ticks (fields 14 and 15 of /proc/PID/stat).
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }

echo "== agent run, sim:casablanca at 1 fix/s read rate, ${RUN_SECONDS}s (profile: rugged-android-handheld, read_interval_s 1)"
TAWSIL_AGENT_PASSWORD=x "$work/agent" run --broker "$BROKER" --courier bench-1 --username bench-1 \
  --source sim:casablanca --profile ../firmware-configs/rugged-android-handheld.yaml \
  --outbox "$work/outbox" --status-addr 127.0.0.1:0 2>"$work/run.log" &
apid=$!
pids+=($apid)
sleep 5 # start-up excluded
t0=$(cpu_ticks $apid)
sleep "$RUN_SECONDS"
t1=$(cpu_ticks $apid)
echo "   VmRSS $(( $(rss_kb $apid) / 1024 )) MB, VmHWM (peak) $(( $(hwm_kb $apid) / 1024 )) MB"
awk -v d=$((t1 - t0)) -v clk="$clk" -v s="$RUN_SECONDS" \
  'BEGIN { printf "   CPU %.3f s over %d s = %.3f%% of one core\n", d/clk, s, 100*d/clk/s }'
kill -TERM $apid; wait $apid || true

echo "== fleet: ${FLEET_COURIERS} simulated couriers, 1 GPS sample/s each, ${FLEET_SECONDS}s"
"$work/agent" fleet --broker "$BROKER" --couriers "$FLEET_COURIERS" --city casablanca --rate 1 \
  --duration "$((FLEET_SECONDS + 5))s" --report-every 1h >"$work/fleet.json" 2>"$work/fleet.log" &
fpid=$!
pids+=($fpid)
sleep 5
t0=$(cpu_ticks $fpid)
sleep "$FLEET_SECONDS"
t1=$(cpu_ticks $fpid)
frss=$(rss_kb $fpid)
wait $fpid || true
awk -v d=$((t1 - t0)) -v clk="$clk" -v s="$FLEET_SECONDS" -v n="$FLEET_COURIERS" -v rss="$frss" \
  'BEGIN { c = d/clk/s; printf "   CPU %.1f%% of one core, RSS %d MB (%.0f KB/courier) => about %.0f couriers per core at 1 sample/s\n", 100*c, rss/1024, rss/n, (c > 0 ? n/c : 0) }'
echo "   totals: $(tail -1 "$work/fleet.json")"
