# Drone delivery backend. `make run` starts the service; `make test` runs every test.
SHELL := /bin/bash
GO ?= go
PORT ?= 7071
DATA_DIR ?= ./.data
FLEET_SIZE ?= 50
FLEET_CENTER ?= 47.6062,-122.3321
BIN := bin/dronedelivery

.PHONY: all build run test test-deps vet fmt-check unit race bench package clean help

all: build

help:
	@echo "make run      build and start the standalone service on 127.0.0.1:$(PORT) (embedded backend in $(DATA_DIR))"
	@echo "make test     vet, format check and every test"
	@echo "make build    build $(BIN)"
	@echo "make package  assemble the function app in dist/app and dist/app.zip (linux/amd64)"
	@echo "make bench    run the Go benchmarks"

build:
	$(GO) build -o $(BIN) .

run: build
	./$(BIN) serve -addr 127.0.0.1:$(PORT) -data-dir $(DATA_DIR) -seed $(FLEET_SIZE) -fleet-center $(FLEET_CENTER) -banner

test: vet fmt-check test-deps unit race

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

# The Cosmos DB and Service Bus test doubles are Node programs installed from a lockfile.
test-deps:
	@command -v node >/dev/null && command -v npm >/dev/null || { echo "make test needs Node.js 20+ and npm: apt-get install -y nodejs npm"; exit 1; }
	cd shared/testdoubles && npm ci --no-audit --no-fund --loglevel=error

unit:
	$(GO) test -count=1 -timeout 20m ./...

# The packages where concurrency is the point run again under the race detector.
race:
	$(GO) test -count=1 -race -timeout 20m ./shared/geo/ ./shared/runtime/... ./shared/adapters/embedded/ ./handlers/

bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 2000x ./...

package:
	@command -v zip >/dev/null || { echo "make package needs zip: apt-get install -y zip"; exit 1; }
	rm -rf dist/app dist/app.zip
	mkdir -p dist/app
	GOOS=linux GOARCH=amd64 CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o dist/app/dronedelivery .
	cp host.json dist/app/
	for f in functions/*/function.json; do \
		name=$$(basename $$(dirname $$f)); mkdir -p dist/app/$$name; cp $$f dist/app/$$name/; \
	done
	cd dist/app && zip -qr ../app.zip .
	@echo "dist/app.zip ready: cd dist/app && func start"

clean:
	rm -rf bin dist
