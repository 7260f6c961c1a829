#!/usr/bin/env bash
# Prints the agent's figures: bytes on the wire per fix at steady 1 fix/s
# over a real broker and backend (uplink, storage-ack downlink, total, beside
# OwnTracks JSON), the codec's bytes per fix, outbox and filter throughput,
# RSS and CPU of `agent run` at 1 fix/s, and fleet capacity.
#
#   agent/bench.sh                      # ~2.5 min bytes + ~60 s run + 30 s fleet
#   BYTES_ACKS=2 RUN_SECONDS=20 FLEET_SECONDS=10 FLEET_COURIERS=100 agent/bench.sh
#   AGENT_SECTIONS=bytes agent/bench.sh       # only the bytes per fix (also: codec, run, fleet)
#
# The bytes-per-fix run builds and starts the backend (../backend/cmd/backend,
# embedded broker and document store, default settings: storage
# acknowledgements every 30 s) and measures from one storage acknowledgement
# to the BYTES_ACKS-th after it (whole acknowledgement intervals). When
# TAWSIL_BENCH_SUMMARY names a file (.ci/bench.sh), the figure is appended to
# it as a SUMMARY| row.
#
# RSS/CPU and fleet figures need a broker: Mosquitto is started on a free
# loopback port when installed (apt-get install -y mosquitto), or set
# BROKER=tcp://host:port to use another one.
set -euo pipefail
cd "$(dirname "$0")"

RUN_SECONDS=${RUN_SECONDS:-60}
BYTES_ACKS=${BYTES_ACKS:-3}
AGENT_SECTIONS=${AGENT_SECTIONS:-bytes codec run fleet} # not SECTIONS: .ci/bench.sh exports its own
has() { [[ " $AGENT_SECTIONS " == *" $1 "* ]]; }
FLEET_SECONDS=${FLEET_SECONDS:-30}
FLEET_COURIERS=${FLEET_COURIERS:-200}
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# bytes_per_fix: the agent at steady 1 fix/s (sim:casablanca, a profile that
# sends every fix: rugged-android-handheld with the filter opened up, so
# max_publish_delay_s 5) against the real backend and its embedded broker,
# compact topics and storage acknowledgements on (the defaults). Every byte
# of the agent's broker connection is counted both ways (status endpoint
# conn_bytes_sent / conn_bytes_received: all MQTT packets, TCP/IP headers
# excluded), from one storage acknowledgement to the BYTES_ACKS-th after it,
# and divided by the fixes accepted in between.
#
# bytes_per_fix LABEL ACK_INTERVAL COMPACT DELAY_S: one such run (the
# defaults are "now 30s true 5"; BYTES_BEFORE=1 adds the settings before
# issue 17: acks every 5 s, long topics, each fix at once).
bytes_per_fix() {
  local label=$1 ackint=$2 compact=$3 delay=$4
  echo "== bytes on the wire per fix at steady 1 fix/s ($label): agent -> broker -> backend, storage acks back (real processes)"
  [[ -x "$work/backend" ]] || (cd ../backend && go build -o "$work/backend" ./cmd/backend && go build -o "$work/loadgen" ./cmd/loadgen)
  local admin=admin@agent-bench.tawsil.test adminpw=agent-bench-admin-password-2026
  rm -rf "$work/bdata" "$work/bytes-outbox" "$work/backend.log"
  mkdir -p "$work/bdata"
  env TAWSIL_HTTP_ADDR=127.0.0.1:0 TAWSIL_MQTT_LISTEN=127.0.0.1:0 TAWSIL_DATA_DIR="$work/bdata" TAWSIL_ACK_INTERVAL="$ackint" \
    TAWSIL_JWT_SECRET="agent-bench-$(head -c 24 /dev/urandom | base64)" TAWSIL_ACCESS_TTL=2h \
    TAWSIL_ADMIN_EMAIL="$admin" TAWSIL_ADMIN_PASSWORD="$adminpw" TAWSIL_LOG_LEVEL=info TAWSIL_ACCESS_LOG=false \
    "$work/backend" >"$work/backend.log" 2>&1 &
  pids+=($!)
  local bpid=$!
  local api="" mqtt="" i
  for ((i = 0; i < 1200; i++)); do
    api=$(grep -m1 'HTTP API listening' "$work/backend.log" 2>/dev/null | grep -o '"addr":"[^"]*"' | cut -d'"' -f4 || true)
    mqtt=$(grep -m1 'embedded MQTT broker listening' "$work/backend.log" 2>/dev/null | grep -o '"addr":"[^"]*"' | cut -d'"' -f4 || true)
    [[ -n "$api" && -n "$mqtt" ]] && break
    kill -0 "${pids[-1]}" 2>/dev/null || { echo "   backend exited:"; tail -5 "$work/backend.log"; return 0; }
    sleep 0.1
  done
  [[ -n "$api" ]] || { echo "   backend did not listen"; return 0; }
  for ((i = 0; i < 600; i++)); do curl -fsS -o /dev/null "http://$api/readyz" 2>/dev/null && break; sleep 0.1; done
  TAWSIL_ADMIN_EMAIL="$admin" TAWSIL_ADMIN_PASSWORD="$adminpw" \
    "$work/loadgen" provision -api "http://$api" -n 1 -out "$work/creds.json" >/dev/null 2>"$work/provision.log" ||
    { echo "   provision failed:"; tail -3 "$work/provision.log"; return 0; }
  local cid user pass client
  read -r cid user pass client < <(python3 -c 'import json,sys; c=json.load(open(sys.argv[1]))[0]; print(c["courier_id"], c["mqtt_username"], c["mqtt_password"], c["client_id"])' "$work/creds.json")
  sed -e 's/^  min_interval_s: .*/  min_interval_s: 0/' -e 's/^  max_interval_s: .*/  max_interval_s: 1/' \
    -e 's/^  min_distance_m: .*/  min_distance_m: 0/' -e 's/^  still_heartbeat_s: .*/  still_heartbeat_s: 1/' \
    -e 's/^name: .*/name: bench-every-fix/' -e "s/^  max_publish_delay_s: [0-9.]*/  max_publish_delay_s: $delay/" \
    ../firmware-configs/rugged-android-handheld.yaml >"$work/every-fix.yaml"
  echo "   backend $api (embedded broker $mqtt, TAWSIL_ACK_INTERVAL $ackint), courier id $cid (${#cid} characters), --compact-topics=$compact"
  echo "   profile: rugged-android-handheld with every fix sent (filter min_interval_s 0, max_interval_s 1), mqtt.max_publish_delay_s $(awk '/max_publish_delay_s/ {print $2}' "$work/every-fix.yaml")"
  TAWSIL_AGENT_PASSWORD="$pass" "$work/agent" run --broker "tcp://$mqtt" --courier "$cid" --username "$user" --client-id "$client" --compact-topics="$compact" \
    --source sim:casablanca --profile "$work/every-fix.yaml" --outbox "$work/bytes-outbox" --status-addr 127.0.0.1:0 2>"$work/bytes-agent.log" &
  pids+=($!)
  local status=""
  for ((i = 0; i < 100; i++)); do
    status=$(grep -m1 'status endpoint' "$work/bytes-agent.log" 2>/dev/null | grep -oE '127\.0\.0\.1:[0-9]+' | head -1 || true)
    [[ -n "$status" ]] && break
    sleep 0.1
  done
  [[ -n "$status" ]] || { echo "   agent status endpoint not found"; tail -5 "$work/bytes-agent.log"; return 0; }
  local ot
  ot=$(go test -run '^$' -bench 'BytesPerFix/owntracks' -benchtime 1x ./internal/link | awk '/owntracks/ { for (i = 3; i < NF; i++) if ($(i+1) == "wire-B/fix") print $i }')
  local sum=""
  [[ "$label" == now ]] && sum=${TAWSIL_BENCH_SUMMARY:-}
  python3 - "http://$status/status" "$BYTES_ACKS" "${ot:-235}" "$sum" "$delay" "$compact" <<'PY'
import json, sys, time, urllib.request
url, acks, ot, summary, delay = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
form = "compact" if sys.argv[6] == "true" else "long"
def get():
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.load(r)
def wait_ack(after, limit):
    end = time.time() + limit
    while time.time() < end:
        s = get()
        if s["storage_acks"] > after:
            return s
        time.sleep(0.2)
    sys.exit("   no storage acknowledgement within %d s" % limit)
first = wait_ack(0, 120)              # the first one comes at once: start-up is behind it
a = wait_ack(first["storage_acks"], 90)  # a whole interval later: the steady state
b = a
for _ in range(acks):
    b = wait_ack(b["storage_acks"], 90)
fixes = b["fixes"]["accepted"] - a["fixes"]["accepted"]
up = b["conn_bytes_sent"] - a["conn_bytes_sent"]
down = b["conn_bytes_received"] - a["conn_bytes_received"]
msgs = b["messages_published"] - a["messages_published"]
payload = b["payload_bytes"] - a["payload_bytes"]
ackb = b["storage_ack_bytes"] - a["storage_ack_bytes"]
nacks = b["storage_acks"] - a["storage_acks"]
print("   window: %d storage acks, %d fixes accepted, %d messages (%.2f fixes/message), %d fixes re-sent" % (
    nacks, fixes, msgs, fixes / max(msgs, 1), b["fixes_resent"] - a["fixes_resent"]))
print("   uplink   %7d B = %5.2f B/fix (pos payload %.2f B/fix; PUBLISH framing on the %s topic; every other packet)" % (up, up / fixes, payload / fixes, form))
print("   downlink %7d B = %5.2f B/fix (storage acks %.2f B/fix, the rest PUBACKs)" % (down, down / fixes, ackb / fixes))
total = (up + down) / fixes
print("   total    %7d B = %5.2f B/fix   OwnTracks JSON %.0f B/fix (its QoS1 PUBLISH alone)   ratio %.1fx smaller" % (up + down, total, ot, ot / total))
if summary:
    with open(summary, "a") as f:
        f.write("SUMMARY|agent bytes on the wire per fix at steady 1 fix/s, uplink + storage-ack downlink (MQTT framing included), publish delay <= %s s|%.1f B (up %.1f, down %.1f)|OwnTracks JSON %.0f B|%.1fx smaller\n" % (delay, total, up / fixes, down / fixes, ot, ot / total))
PY
  kill -TERM "${pids[-1]}" 2>/dev/null; wait "${pids[-1]}" 2>/dev/null || true
  kill -TERM "$bpid" 2>/dev/null; wait "$bpid" 2>/dev/null || true
}

CGO_ENABLED=0 go build -o "$work/agent" ./cmd/agent
echo "== binary size: $(du -h "$work/agent" | cut -f1) (CGO_ENABLED=0, linux/$(go env GOARCH))"

if has bytes; then
  [[ -n "${BYTES_BEFORE:-}" ]] && bytes_per_fix "before issue 17's settings" 5s false 0
  bytes_per_fix now 30s true 5
fi

if has codec; then
  echo "== bytes on the wire per fix, codec, outbox, filter (go test -bench)"
  go test -run '^$' -bench 'BytesPerFix' -benchtime 2000x ./internal/link | grep -E '^Benchmark'
  go test -run '^$' -bench '.' -benchtime 2000x ./internal/outbox | grep -E '^Benchmark'
  go test -run '^$' -bench '.' -benchtime 20000x ./internal/filter | grep -E '^Benchmark'
  echo "   (OwnTracks JSON for the same fix: see BenchmarkBytesPerFix/owntracks)"
fi


if has run || has fleet; then
if [[ -z "${BROKER:-}" ]]; then
  mosq=$(command -v mosquitto || ls /usr/sbin/mosquitto 2>/dev/null || true)
  if [[ -z "$mosq" ]]; then
    echo "== no broker (install mosquitto or set BROKER=tcp://host:port): skipping RSS/CPU and fleet figures"
    exit 0 # (the bytes-per-fix run has its own broker: the backend's)
  fi
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  printf 'listener %s 127.0.0.1\nallow_anonymous true\n' "$port" > "$work/mosquitto.conf"
  "$mosq" -c "$work/mosquitto.conf" >/dev/null 2>&1 &
  pids+=($!)
  sleep 0.5
  BROKER="tcp://127.0.0.1:$port"
fi
fi

clk=$(getconf CLK_TCK)
# cpu_ticks PID: utime+stime in clock ticks (fields 14 and 15 of /proc/PID/stat).
cpu_ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }

if has run; then
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
fi

if has fleet; then
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
fi
