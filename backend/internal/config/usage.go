package config

// Usage is the help text of the backend's settings (bin/backend -h): every
// one comes from the environment; TAWSIL_CONFIG may name a YAML file with the
// non-secret ones.
const Usage = `Usage: backend [-h]

The Tawsil backend: HTTP API, MQTT ingest, live index, dispatch. It takes no
arguments; every setting comes from the environment (an optional YAML file
named by TAWSIL_CONFIG holds the non-secret ones; the environment wins).
Start-up stops with one line per missing or invalid setting.

Required:
  TAWSIL_JWT_SECRET              HMAC key, at least 32 bytes (or TAWSIL_JWT_KEYS=kid:secret,...
                                 with TAWSIL_JWT_ACTIVE_KID)
Listening:
  TAWSIL_HTTP_ADDR               HTTP API address (default :8080)
  TAWSIL_HTTP_TLS_CERT/_KEY      serve HTTPS with this certificate and key
  TAWSIL_MQTT_LISTEN             embedded broker address (default :1883)
  TAWSIL_MQTT_TLS_CERT/_KEY      embedded broker over TLS
  TAWSIL_TRUSTED_PROXIES         IPs/CIDRs allowed to set X-Forwarded-For
  TAWSIL_BODY_LIMIT              request body limit in bytes (default 262144)
Store and broker:
  MONGODB_URI                    MongoDB URL (default: embedded FerretDB in TAWSIL_DATA_DIR)
  TAWSIL_DATA_DIR                embedded store files (default ./data)
  TAWSIL_FERRET_HANDLER          sqlite (default) or postgresql (with TAWSIL_FERRET_PG_URL)
  TAWSIL_MONGO_DB                database name (default tawsil)
  MQTT_URL                       external broker URL (default: embedded broker)
  TAWSIL_MQTT_USERNAME/_PASSWORD the backend's broker login
  TAWSIL_MQTT_CLIENT_ID          stable per replica (default tawsil-backend-1)
  TAWSIL_MQTT_SHARE_GROUP        shared subscription group (default tawsil-backend)
  TAWSIL_MQTT_CA_FILE            CA of an external broker
  TAWSIL_TOPIC_PREFIX            MQTT topic prefix (default tawsil/v1)
Accounts and tokens:
  TAWSIL_ADMIN_EMAIL/_PASSWORD   bootstrap admin, created at first start
  TAWSIL_ACCESS_TTL, TAWSIL_REFRESH_TTL   token lifetimes (default 15m, 720h)
  TAWSIL_JWT_ISSUER, TAWSIL_JWT_AUDIENCE  token claims
Data and rules:
  TAWSIL_POSITIONS_RETENTION_DAYS position history kept (default 30)
  TAWSIL_CUSTOMER_DATA_DAYS      customer data redacted on finished orders after (default 90)
  TAWSIL_MAX_FIX_AGE, TAWSIL_MAX_FIX_FUTURE  device time window (default 48h, 2m)
  TAWSIL_MAX_ACCURACY_M, TAWSIL_MAX_SPEED_MPS fixes refused beyond (default 100, 50)
  TAWSIL_STALE_AFTER             a silent courier is offline after (default 5m)
  TAWSIL_HISTORY_FLUSH, TAWSIL_HISTORY_QUEUE_MAX  history group commit (default 100ms, 200000)
  TAWSIL_OFFER_TIMEOUT           unanswered offers move on after (default 30s)
  TAWSIL_DISPATCH_EVERY          time between dispatch epochs (default 30s)
  TAWSIL_RULES_FILE              failed-delivery rules (YAML; default built-in)
  TAWSIL_VROOM_URL               optional VROOM route optimiser
  TAWSIL_WEBHOOK_ALLOW_PRIVATE   let webhooks reach private addresses (default false)
  TAWSIL_LOG_LEVEL               debug, info (default), warn, error
  TAWSIL_ACCESS_LOG              one log line per HTTP request (default true)
  TAWSIL_SEED                    create demo accounts and fleet credentials (default false)

See README.md (Configuration) for the full description.
`
