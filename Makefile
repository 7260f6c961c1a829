# Tawsil — one-hour delivery platform. `make run` and `make test` are all you need.
SHELL    := /bin/bash
MODULES  := shared backend agent
GO       ?= go
BIN      := bin
DATA     ?= ./data
# Fuzz each decoder of outside input this many executions in `make test` (CI too).
# A count, not a duration: go1.26 fails duration-bound fuzzing at random with
# "context deadline exceeded" (golang/go#75804, fixed in go1.27).
FUZZTIME ?= 100000x

export TAWSIL_JWT_SECRET ?= dev-only-secret-change-me-0123456789abcdef
export TAWSIL_ADMIN_EMAIL ?= admin@demo.tawsil.ma
export TAWSIL_ADMIN_PASSWORD ?= tawsil-admin-2026
export TAWSIL_DATA_DIR ?= $(DATA)

.PHONY: all build build-prod run cluster test test-short fuzz bench lint spec-lint sim clean tools web web-deps

all: build

build:
	@mkdir -p $(BIN)
	cd backend && $(GO) build -o ../$(BIN)/backend ./cmd/backend
	cd backend && $(GO) build -o ../$(BIN)/demo ./cmd/demo
	cd backend && $(GO) build -o ../$(BIN)/docstore ./cmd/docstore
	cd agent && CGO_ENABLED=0 $(GO) build -o ../$(BIN)/agent ./cmd/agent
	cd agent && CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -o ../$(BIN)/agent-linux-arm64 ./cmd/agent

# A production backend: no embedded FerretDB or broker linked in (MONGODB_URI and MQTT_URL required).
build-prod:
	@mkdir -p $(BIN)
	cd backend && $(GO) build -tags tawsil_noembed -o ../$(BIN)/backend-prod ./cmd/backend

# The whole system on embedded defaults: broker, FerretDB, demo data, and a
# small simulated fleet publishing over MQTT.
run: build
	@deploy/local/run.sh

# Several replicas locally: REPLICAS (3) backends on :8080.., Mosquitto, one
# document store process (bin/docstore). See deploy/README.md.
cluster: build
	@deploy/local/cluster.sh

# Every module with -race (backend/web's tests drive the web faces in
# headless Chromium), then each fuzz target for $(FUZZTIME).
test: web-deps
	@set -e; for m in $(MODULES); do \
	  echo "== go test -race $$m"; \
	  (cd $$m && $(GO) test -race -count=1 -timeout 20m ./...); \
	done
	@$(MAKE) --no-print-directory fuzz

test-short:
	@set -e; for m in $(MODULES); do (cd $$m && $(GO) test -short -count=1 ./...); done

fuzz:
	@.ci/fuzz.sh $(FUZZTIME)

# The web faces' npm packages (pinned in backend/web/package-lock.json): the
# build tool and the browser-test driver. The built assets are committed in
# backend/web/dist, so `make build` needs Go only.
web-deps:
	@if command -v npm >/dev/null 2>&1; then \
	  if [ ! -d backend/web/node_modules ] || [ backend/web/package-lock.json -nt backend/web/node_modules ]; then \
	    (cd backend/web && npm ci --no-audit --no-fund) && touch backend/web/node_modules; fi; \
	else echo "npm not found: the browser tests will be skipped (they fail under CI)"; fi

# Rebuild backend/web/dist from backend/web/src (commit the result).
web: web-deps
	cd backend/web && npm run build

bench:
	@.ci/bench.sh

lint:
	@out=$$(gofmt -l $(MODULES)); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	@set -e; for m in $(MODULES); do (cd $$m && $(GO) vet ./...); done
	@set -e; for m in $(MODULES); do (cd $$m && $(GO) mod tidy -diff >/dev/null) || { echo "go mod tidy would change $$m/go.mod or go.sum"; exit 1; }; done
	@sc=$$(command -v staticcheck || echo "$$($(GO) env GOPATH)/bin/staticcheck"); \
	  if [ ! -x "$$sc" ]; then echo "staticcheck not installed: make tools"; exit 1; fi; \
	  for m in $(MODULES); do echo "== staticcheck $$m"; (cd $$m && $$sc ./...) || exit 1; done
	@$(MAKE) --no-print-directory spec-lint

# api/openapi.yaml (Redocly CLI, 0 errors 0 warnings) and api/asyncapi.yaml
# (@asyncapi/parser), both pinned in .ci/node/package-lock.json.
spec-lint:
	@.ci/spec-lint.sh

# staticcheck's release names (2025.1.1) are refused by the module proxy here; its semver tag is served.
tools:
	$(GO) install honnef.co/go/tools/cmd/staticcheck@v0.8.2

clean:
	rm -rf $(BIN)
