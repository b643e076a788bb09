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
.PHONY: services db build test run bench chaos fmt vet clean

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
	@token=$$($(BIN) token --role resident --sub RES-3 --permits 2 --ttl 168h 2>/dev/null); \
	ops=$$($(BIN) token --role operator --sub ops --ttl 168h 2>/dev/null); \
	echo; \
	echo "parkd is starting (Ctrl-C stops it):"; \
	echo "  API       $(API_URL)   (OpenAPI: $(API_URL)/v1/openapi.yaml)"; \
	echo "  asynqmon  $(API_URL)/monitor/   (operator token: $$ops)"; \
	echo "  try       curl -s -H 'Authorization: Bearer $$token' $(API_URL)/v1/permits/2"; \
	echo "  park      curl -s -H 'Authorization: Bearer $$token' -d '{\"plate\":\"AB-12-CD\"}' $(API_URL)/v1/permits/2/sessions"; \
	echo "  tokens    $(BIN) token --role resident|eloket|enforcement|operator --sub NAME [--permits 1,2]"; \
	echo
	exec $(BIN) serve

bench: services
	$(GO) test -run '^$$' -bench . -benchtime 2s ./...

# Faults under load (about 6-8 minutes): parkd's split topology on a private Postgres and Redis
# of its own (the shared servers are not touched), a worker SIGKILLed, Redis flushed, Postgres
# restarted and killed; exit 1 if parkd check or any of the run's checks fails.
chaos: build
	$(BIN) chaos

fmt:
	$(GO) fmt ./...

vet:
	$(GO) vet ./...

clean:
	rm -rf bin
	rm -f *.test *.out coverage.* *.coverprofile
