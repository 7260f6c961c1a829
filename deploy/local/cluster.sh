#!/usr/bin/env bash
# `make cluster`: Tawsil as it runs with several replicas, on this machine:
# Mosquitto (per-device logins, deploy/mosquitto/acl), one document store
# (bin/docstore: embedded FerretDB as its own process, SQLite by default,
# PostgreSQL with TAWSIL_FERRET_HANDLER=postgresql TAWSIL_FERRET_PG_URL=...),
# and REPLICAS backend replicas (default 3) sharing both. Replica i serves
# HTTP on 127.0.0.1:$((8080+i-1)) with MQTT client id tawsil-backend-i.
# Ctrl-C stops everything. Data and logs: $TAWSIL_CLUSTER_DIR (./data/cluster).
set -euo pipefail
cd "$(dirname "$0")/../.."
REPLICAS=${REPLICAS:-3}
dir=${TAWSIL_CLUSTER_DIR:-./data/cluster}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
mosq=$(command -v mosquitto || echo /usr/sbin/mosquitto)
[ -x "$mosq" ] || { echo "mosquitto not installed: apt-get install -y mosquitto mosquitto-clients"; exit 1; }
: "${TAWSIL_MQTT_PASSWORD:=backend-local-$(head -c 9 /dev/urandom | od -An -tx1 | tr -d ' \n')}"
: "${TAWSIL_DOCSTORE_PASSWORD:=store-local-$(head -c 9 /dev/urandom | od -An -tx1 | tr -d ' \n')}"
export TAWSIL_MQTT_PASSWORD TAWSIL_DOCSTORE_PASSWORD
# Development defaults, as `make run` has them (the Makefile exports the same).
: "${TAWSIL_JWT_SECRET:=dev-only-secret-change-me-0123456789abcdef}"
: "${TAWSIL_ADMIN_EMAIL:=admin@demo.tawsil.ma}" "${TAWSIL_ADMIN_PASSWORD:=tawsil-admin-2026}"
export TAWSIL_JWT_SECRET TAWSIL_ADMIN_EMAIL TAWSIL_ADMIN_PASSWORD

mosquitto_passwd -b -c "$dir/backend.passwd" tawsil-backend "$TAWSIL_MQTT_PASSWORD"
touch "$dir/devices.passwd"
{
  [ "$(id -u)" = 0 ] && echo "user root"
  cat <<CONF
per_listener_settings true
persistence true
persistence_location $dir/
max_inflight_messages 1000
max_queued_messages 200000
message_size_limit 65536
log_dest file $dir/mosquitto.log
listener 1883 127.0.0.1
allow_anonymous false
use_username_as_clientid true
password_file $dir/devices.passwd
acl_file $PWD/deploy/mosquitto/acl
listener 1884 127.0.0.1
allow_anonymous false
password_file $dir/backend.passwd
acl_file $PWD/deploy/mosquitto/acl
CONF
} >"$dir/mosquitto.conf"

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

"$mosq" -c "$dir/mosquitto.conf" &
pids+=($!)
TAWSIL_DATA_DIR="$dir/store" TAWSIL_DOCSTORE_LISTEN=127.0.0.1:27017 bin/docstore 2>"$dir/docstore.log" &
pids+=($!)
sleep 1
kill -0 "${pids[0]}" 2>/dev/null || { echo "mosquitto exited; see $dir/mosquitto.log"; exit 1; }
kill -0 "${pids[1]}" 2>/dev/null || { echo "docstore exited:"; cat "$dir/docstore.log"; exit 1; }

export MONGODB_URI="mongodb://tawsil:$TAWSIL_DOCSTORE_PASSWORD@127.0.0.1:27017/?authMechanism=PLAIN"
export MQTT_URL=tcp://127.0.0.1:1884 TAWSIL_MQTT_USERNAME=tawsil-backend TAWSIL_MQTT_SHARE_GROUP=tawsil-backend
for i in $(seq 1 "$REPLICAS"); do
  TAWSIL_HTTP_ADDR=127.0.0.1:$((8080 + i - 1)) TAWSIL_MQTT_CLIENT_ID=tawsil-backend-$i TAWSIL_DATA_DIR="$dir/replica-$i" \
    TAWSIL_SEED=$([ "$i" = 1 ] && echo true || echo false) bin/backend 2>"$dir/replica-$i.log" &
  pids+=($!)
  for _ in $(seq 1 150); do
    curl -fsS "http://127.0.0.1:$((8080 + i - 1))/readyz" >/dev/null 2>&1 && break
    sleep 0.2
  done
  curl -fsS "http://127.0.0.1:$((8080 + i - 1))/readyz" >/dev/null || { echo "replica $i not ready; see $dir/replica-$i.log"; tail -5 "$dir/replica-$i.log"; exit 1; }
done

cat <<MSG

Tawsil cluster running: $REPLICAS replicas, Mosquitto, one document store.
  replicas  $(for i in $(seq 1 "$REPLICAS"); do printf 'http://127.0.0.1:%d ' $((8080 + i - 1)); done)
  MQTT      devices tcp://127.0.0.1:1883 (logins in $dir/devices.passwd), replicas tcp://127.0.0.1:1884
  store     ${MONGODB_URI/$TAWSIL_DOCSTORE_PASSWORD/\$TAWSIL_DOCSTORE_PASSWORD}
  logs      $dir/*.log
  admin     $TAWSIL_ADMIN_EMAIL / $TAWSIL_ADMIN_PASSWORD

Device logins are issued by POST /v1/couriers/{id}/device-credentials; add each to Mosquitto with
  mosquitto_passwd -b $dir/devices.passwd <courier id> <password> && kill -HUP ${pids[0]}
Ctrl-C stops everything.
MSG
wait "${pids[@]}"
