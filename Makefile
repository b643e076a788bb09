# Developer entry points. `make run` gives a working parkd on this machine; `make test` is what CI runs.
GO ?= go
BIN := bin/parkd
LAB := bin/parkdlab
SERVICES := deploy/local/services.sh
DEMO := deploy/demo/municipality.json

# The banner's URLs follow PARKD_HTTP_ADDR (":8080" by default), as the binary does.
HTTP_ADDR := $(or $(PARKD_HTTP_ADDR),:8080)
HTTP_PORT := $(lastword $(subst :, ,$(HTTP_ADDR)))
API_URL := http://localhost:$(HTTP_PORT)

# make run starts the register emulator (bin/parkdlab registrar) beside parkd and points
# PARKD_REGISTRAR_URL at it, so that the demo zones' sessions are registered.
NPR_ADDR ?= 127.0.0.1:8090
NPR_TOKEN ?= parkd-dev-register-token
NPR_URL := http://$(NPR_ADDR)

.DEFAULT_GOAL := build
.PHONY: services db build lab test test-root test-tools run bench microbench chaos fmt vet clean

# Postgres and Redis reachable (started or installed if needed).
services:
	$(SERVICES)

# services, plus the database named in PARKD_DATABASE_URL created if missing.
db:
	$(SERVICES) --create-db

# parkd version names them; go build records VCS details only in a plain clone, not a worktree.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null)

build:
	$(GO) build -ldflags "-X main.version=$(VERSION) -X main.commit=$(COMMIT)" -o $(BIN) ./cmd/parkd

# The lab (tools/, a module of its own, never linked into parkd): bin/parkdlab bench|chaos,
# which run bin/parkd as a separate binary.
lab: build
	cd tools && $(GO) build -o ../$(LAB) ./cmd/parkdlab

# Both modules' tests, with the race detector, at once (the lab's are mostly waiting on
# parkd's auto-stops); each module's output is printed whole when it ends. Fails if either does.
test: services
	@$(MAKE) --no-print-directory -j2 --output-sync=target test-root test-tools
	$(GO) vet ./...
	cd tools && $(GO) vet ./...
	$(GO) -C deploy/validate test -count=1 ./...   # deploy/: k8s, compose, systemd, offline

test-root:
	@start=$$(date +%s); $(GO) test -race -count=1 -timeout 15m ./...; rc=$$?; \
	echo "parkd module tests: $$(( $$(date +%s) - start ))s"; exit $$rc

test-tools:
	@start=$$(date +%s); cd tools && $(GO) test -race -count=1 -timeout 15m ./...; rc=$$?; \
	echo "tools module tests: $$(( $$(date +%s) - start ))s"; exit $$rc

run: db lab
	$(BIN) migrate
	$(BIN) seed $(DEMO)
	@token=$$($(BIN) token --role resident --sub RES-3 --permits 2 --ttl 168h 2>/dev/null); \
	ops=$$($(BIN) token --role operator --sub ops --ttl 168h 2>/dev/null); \
	echo; \
	echo "parkd is starting (Ctrl-C stops it, and the register emulator with it):"; \
	echo "  API       $(API_URL)   (OpenAPI: $(API_URL)/v1/openapi.yaml)"; \
	echo "  asynqmon  $(API_URL)/monitor/   (operator token: $$ops)"; \
	echo "  try       curl -s -H 'Authorization: Bearer $$token' $(API_URL)/v1/permits/2"; \
	echo "  park      curl -s -H 'Authorization: Bearer $$token' -d '{\"plate\":\"AB-12-CD\"}' $(API_URL)/v1/permits/2/sessions"; \
	echo "  register  $(NPR_URL)/rights   (the register emulator: $(LAB) registrar -h for its fault knobs)"; \
	echo "  enforce   curl -s '$(NPR_URL)/enforcement?plate=AB-12-CD&area=OOST'   (after parking: the right the register holds)"; \
	echo "  tokens    $(BIN) token --role resident|eloket|enforcement|operator --sub NAME [--permits 1,2]"; \
	echo
	@$(LAB) registrar --addr $(NPR_ADDR) --token $(NPR_TOKEN) & npr=$$!; \
	trap 'kill $$npr 2>/dev/null; wait $$npr 2>/dev/null' EXIT; trap : INT TERM; \
	sleep 0.5; kill -0 $$npr 2>/dev/null || echo "the register emulator did not start (is $(NPR_ADDR) taken? NPR_ADDR=HOST:PORT chooses another): rights stay pending"; \
	PARKD_REGISTRAR_URL=$(NPR_URL) PARKD_REGISTRAR_TOKEN=$(NPR_TOKEN) $(BIN) serve

# The load generator with its defaults (about 4 minutes): bin/parkd serve on a fresh database
# parkd_bench and Redis index 15; bin/parkdlab bench -h for the flags.
bench: services lab
	$(LAB) bench

# Go's microbenchmarks of the product's packages.
microbench: services
	$(GO) test -run '^$$' -bench . -benchtime 2s ./...

# Faults under load (about 6-8 minutes): parkd's split topology on a private Postgres and Redis
# of its own (the shared servers are not touched), a worker SIGKILLed, Redis flushed, Postgres
# restarted and killed; exit 1 if parkd check or any of the run's checks fails.
chaos: lab
	$(LAB) chaos

fmt:
	$(GO) fmt ./...
	cd tools && $(GO) fmt ./...

vet:
	$(GO) vet ./...
	cd tools && $(GO) vet ./...

clean:
	rm -rf bin
	rm -f *.test *.out coverage.* *.coverprofile
