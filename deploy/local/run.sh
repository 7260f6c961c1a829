#!/usr/bin/env bash
# `make run`: the whole system on embedded defaults — backend with its embedded
# MQTT broker and embedded FerretDB, demo accounts, and a live demo in
# Casablanca (bin/demo): simulated couriers that publish over MQTT, take
# offers, drive their routes and deliver, and a merchant that books orders.
# Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${TAWSIL_HTTP_ADDR:=127.0.0.1:8080}"
: "${TAWSIL_MQTT_LISTEN:=127.0.0.1:1883}"
: "${TAWSIL_DATA_DIR:=./data}"
export TAWSIL_HTTP_ADDR TAWSIL_MQTT_LISTEN TAWSIL_DATA_DIR TAWSIL_SEED=true
mkdir -p "$TAWSIL_DATA_DIR"
log="$TAWSIL_DATA_DIR/backend.log"
echo "== $(date -u +%FT%TZ) make run" >>"$log"
bin/backend 2>>"$log" &   # appended: earlier runs stay readable
backend=$!
fleet=""
cleanup() {
  [ -n "$fleet" ] && kill "$fleet" 2>/dev/null || true
  kill "$backend" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM
api="http://$TAWSIL_HTTP_ADDR"
for _ in $(seq 1 150); do
  if curl -fsS "$api/readyz" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$backend" 2>/dev/null; then echo "backend exited; see $log"; tail -20 "$log"; exit 1; fi
  sleep 0.2
done
curl -fsS "$api/readyz" >/dev/null || { echo "backend not ready; see $log"; exit 1; }
bin/demo -api "$api" -broker "tcp://$TAWSIL_MQTT_LISTEN" -credentials "$TAWSIL_DATA_DIR/fleet-credentials.json" \
  >"$TAWSIL_DATA_DIR/demo.log" 2>&1 &
fleet=$!
pw=${TAWSIL_DEMO_PASSWORD:-tawsil-demo-2026}
cat <<MSG

Tawsil is running.
  Console  $api/console/     dispatcher@demo.tawsil.ma / $pw   (orders and moving couriers within a minute)
  Courier  $api/courier/     courier1@demo.tawsil.ma .. courier12@demo.tawsil.ma / $pw
  Tracking $api/t/<tracking_token>   (the merchant gets the token when booking)
  API      $api          (logs: $log)
  MQTT     tcp://$TAWSIL_MQTT_LISTEN   (demo couriers and merchant: $TAWSIL_DATA_DIR/demo.log)
  admin    $TAWSIL_ADMIN_EMAIL / $TAWSIL_ADMIN_PASSWORD
  demo     merchant@demo.tawsil.ma, dispatcher@demo.tawsil.ma / $pw

Try:
  TOKEN=\$(curl -s $api/v1/auth/login -H 'Content-Type: application/json' \\
      -d '{"email":"dispatcher@demo.tawsil.ma","password":"$pw"}' | sed 's/.*"access_token":"\\([^"]*\\)".*/\\1/')
  curl -s "$api/v1/couriers?near=33.5731,-7.5898&status=available&limit=5" -H "Authorization: Bearer \$TOKEN"
  curl -s "$api/v1/density?res=8" -H "Authorization: Bearer \$TOKEN"
  MTOKEN=\$(curl -s $api/v1/auth/login -H 'Content-Type: application/json' \\
      -d '{"email":"merchant@demo.tawsil.ma","password":"$pw"}' | sed 's/.*"access_token":"\\([^"]*\\)".*/\\1/')
  curl -s $api/v1/quotes -H "Authorization: Bearer \$MTOKEN" -H 'Content-Type: application/json' \\
      -d '{"pickup":{"lat":33.5731,"lng":-7.5898,"address":"Bd Zerktouni"},"dropoff":{"lat":33.5890,"lng":-7.6330,"address":"Twin Center"},"parcel":{"size":"S"}}'

Ctrl-C stops everything.
MSG
wait "$backend"
