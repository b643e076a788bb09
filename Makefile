# Developer entry points. `make run` gives a working parkd on this machine; `make test` is what CI runs.
GO ?= go
BIN := bin/parkd
SERVICES := deploy/local/services.sh
DEMO := deploy/demo/municipality.json

# The banner's URLs follow PARKD_HTTP_ADDR (":8080" by default), as the binary does.
HTTP_ADDR := $(or $(PARKD_HTTP_ADDR),:8080)
HTTP_PORT := $(lastword $(subst :, ,$(HTTP_ADDR)))
API_URL := http://localhost:$(HTTP_PORT)

.DEFAULT_GOAL := build
.PHONY: services db build test run bench fmt vet clean

# Postgres and Redis reachable (started or installed if needed).
services:
	$(SERVICES)

# services, plus the database named in PARKD_DATABASE_URL created if missing.
db:
	$(SERVICES) --create-db

build:
	$(GO) build -o $(BIN) ./cmd/parkd

test: services
	$(GO) test -race -count=1 -timeout 15m ./...
	$(GO) vet ./...

run: db build
	$(BIN) migrate
	$(BIN) seed $(DEMO)
	@echo
	@echo "parkd is starting:"
	@echo "  API       $(API_URL)"
	@echo "  asynqmon  $(API_URL)/monitor/"
	@echo "  try       curl -s localhost:$(HTTP_PORT)/healthz"
	@echo
	exec $(BIN) serve

bench: services
	$(GO) test -run '^$$' -bench . -benchtime 2s ./...

fmt:
	$(GO) fmt ./...

vet:
	$(GO) vet ./...

clean:
	rm -rf bin
	rm -f *.test *.out coverage.* *.coverprofile
