# Drone delivery backend. `make run` starts the service; `make test` runs every test.
SHELL := /bin/bash
GO ?= go
PORT ?= 7071
DATA_DIR ?= ./.data
FLEET_SIZE ?= 50
FLEET_CENTER ?= 47.6062,-122.3321
BIN := bin/dronedelivery

.PHONY: all build run test test-deps vet fmt-check unit race test-stress bench bench-go fuzz package deploy start clean help

all: build

help:
	@echo "make run      build and start the standalone service on 127.0.0.1:$(PORT) (embedded backend in $(DATA_DIR))"
	@echo "make test     vet, format check and every test; ends with the ten slowest tests"
	@echo "make test-stress  the tests STRESS_RUNS times (default 3) beside STRESS_LOAD busy loops (default 2); not part of make test"
	@echo "make build    build $(BIN)"
	@echo "make package  assemble the function app in dist/app and dist/app.zip (linux/amd64)"
	@echo "make deploy   OPERATOR_KEY=... : create or update the Azure resources (infra/main.bicep) and publish dist/app.zip; see docs/deploy.md"
	@echo "make publish  publish dist/app.zip to the deployed app only (a code-only redeploy)"
	@echo "make start    run the packaged app under Azure Functions Core Tools (func start) with ./local.settings.json"
	@echo "make bench    load-test the service beside a bare net/http baseline (about 5 minutes); writes bench/report.md and bench/report.json"
	@echo "make bench-go run the Go benchmarks"
	@echo "make package-lambda  build the AWS Lambda bootstrap into dist/lambda.zip (LAMBDA_ARCH=amd64|arm64)"
	@echo "make deploy-aws      deploy infra/aws/template.yaml with the SAM CLI; see docs/aws.md"
	@echo "make screenshots  refresh docs/console.png and docs/tracking-page.png from the browser tests"
	@echo "make fuzz     run every fuzz target for FUZZTIME (default $(FUZZTIME)) each; not part of make test"
	@echo "make simulate fly every assigned drone of a running service (make run) so deliveries reach Completed; SIMULATE_ARGS passes flags"
	@echo "make clean    remove bin and dist"

build:
	$(GO) build -o $(BIN) .

# The simulator's clock runs -time-scale times as fast as the real one: a
# service started here takes its reports up to a day ahead (docs/SECURITY.md).
run: build
	TELEMETRY_CLOCK_SKEW=$${TELEMETRY_CLOCK_SKEW:-24h} ./$(BIN) serve -addr 127.0.0.1:$(PORT) -data-dir $(DATA_DIR) -seed $(FLEET_SIZE) -fleet-center $(FLEET_CENTER) -banner

test: vet fmt-check test-deps unit race
	@cat $(SLOWEST)

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

# The Cosmos DB and Service Bus test doubles are Node programs installed from a lockfile.
# npm ci runs again only when the lock file is newer than the last install.
NODE_DEPS := tools/testdoubles/node_modules/.installed

$(NODE_DEPS): tools/testdoubles/package-lock.json
	@command -v node >/dev/null && command -v npm >/dev/null || { echo "make test needs Node.js 20+ and npm: apt-get install -y nodejs npm"; exit 1; }
	cd tools/testdoubles && npm ci --no-audit --no-fund --loglevel=error
	touch $@

test-deps: $(NODE_DEPS)
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium)
	command -v zip >/dev/null || (apt-get update && apt-get install -y zip)
	command -v curl >/dev/null || (apt-get update && apt-get install -y curl)

# go test -json through tools/testreport: the same text as go test writes,
# package by package, then the ten slowest tests, which are also kept in
# $(SLOWEST) for make test to show again at its very end. pipefail keeps go
# test's exit status.
SLOWEST ?= bin/slowest-tests.txt

unit:
	@mkdir -p $(dir $(SLOWEST))
	set -o pipefail; $(GO) test -json -count=1 -timeout 20m ./... | $(GO) run ./tools/testreport -slowest 10 -save $(SLOWEST)

# The packages where concurrency is the point run again under the race detector.
race:
	$(GO) test -count=1 -race -timeout 20m ./shared/geo/ ./shared/functionapp/... ./shared/adapters/embedded/ ./handlers/

# The suite again and again beside a CPU load, as on a busy CI machine; see
# docs/testing.md. tools/stress.sh stops the busy loops however
# it ends.
STRESS_RUNS ?= 3
STRESS_LOAD ?= 2
STRESS_TARGET ?= unit

test-stress:
	STRESS_RUNS=$(STRESS_RUNS) STRESS_LOAD=$(STRESS_LOAD) STRESS_TARGET=$(STRESS_TARGET) MAKE="$(MAKE)" ./tools/stress.sh

# The load generator starts the service as a separate process and loads it
# over loopback; BENCH_FLAGS passes flags through (dronedelivery bench -h).
BENCH_FLAGS ?=

bench: build
	./$(BIN) bench -out bench $(BENCH_FLAGS)

# The root package's chain benchmarks start the binary per iteration, so
# they run once; every other benchmark runs 2000 iterations.
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 2000x ./shared/... ./handlers/...
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 1x .

# Each decoder of hostile input in turn: the delivery request (and its
# reschedule and telemetry siblings), the queue messages, the sign-up, the
# service area and no-fly zone, the query string, and the Functions host's
# invocations. A failure leaves the input in the package's
# testdata/fuzz, where it runs with the unit tests from then on.
FUZZTIME ?= 60s
FUZZ_TARGETS := \
	./shared/wire:FuzzParseDeliveryRequest \
	./shared/wire:FuzzParseReschedule \
	./shared/wire:FuzzParseTelemetry \
	./shared/wire:FuzzParseTelemetryMessage \
	./shared/wire:FuzzParseEnvelope \
	./shared/wire:FuzzParseSignUp \
	./shared/wire:FuzzParseZone \
	./shared/functionapp:FuzzParseQuery \
	./shared/functionapp/host:FuzzDecodeHTTPInvocation \
	./shared/functionapp/host:FuzzDecodeQueueInvocation

fuzz:
	@set -eo pipefail; log=$$(mktemp); trap 'rm -f $$log' EXIT; \
	for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "== $$fn ($$pkg) for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) $$pkg 2>&1 | tee $$log | grep -v '^fuzz: elapsed'; \
		grep '^fuzz: elapsed' $$log | tail -1 | sed "s|^fuzz: |$$fn: |"; \
	done

# DIST lets a test package into a temporary directory (infra/package_test.go).
DIST ?= dist

package:
	@command -v zip >/dev/null || { echo "make package needs zip: apt-get install -y zip"; exit 1; }
	@test -n "$(DIST)" || { echo "make package: DIST must not be empty"; exit 1; }
	rm -rf $(DIST)/app $(DIST)/app.zip
	mkdir -p $(DIST)/app
	GOOS=linux GOARCH=amd64 CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o $(DIST)/app/dronedelivery .
	cp host.json $(DIST)/app/
	for f in functions/*/function.json; do \
		name=$$(basename $$(dirname $$f)); mkdir -p $(DIST)/app/$$name; cp $$f $(DIST)/app/$$name/; \
	done
	cd $(DIST)/app && zip -qr ../app.zip .
	@echo "$(DIST)/app.zip ready: cd $(DIST)/app && func start"

clean:
	rm -rf bin dist

.PHONY: package-lambda deploy-aws

# The AWS Lambda package (infra/aws/template.yaml): the same binary, named
# bootstrap as the provided.al2023 runtime wants, alone in a zip. lambda.norpc
# leaves out aws-lambda-go's RPC mode, which only the retired go1.x runtime used.
LAMBDA_ARCH ?= amd64

package-lambda:
	@command -v zip >/dev/null || { echo "make package-lambda needs zip: apt-get install -y zip"; exit 1; }
	@test -n "$(DIST)" || { echo "make package-lambda: DIST must not be empty"; exit 1; }
	@case "$(LAMBDA_ARCH)" in amd64|arm64) ;; *) echo "make package-lambda: LAMBDA_ARCH must be amd64 or arm64"; exit 1;; esac
	rm -rf $(DIST)/lambda $(DIST)/lambda.zip
	mkdir -p $(DIST)/lambda
	GOOS=linux GOARCH=$(LAMBDA_ARCH) CGO_ENABLED=0 $(GO) build -trimpath -tags lambda.norpc -ldflags '-s -w' -o $(DIST)/lambda/bootstrap .
	cd $(DIST)/lambda && zip -q ../lambda.zip bootstrap
	@echo "$(DIST)/lambda.zip ready for infra/aws/template.yaml"

# Deploy to AWS (docs/aws.md): needs the SAM CLI and AWS
# credentials, and Secrets Manager secrets holding the Cosmos DB connection
# string and the operator key. STACK is also the queues' name prefix, so at
# most 39 characters.
STACK ?= dronedelivery
COSMOS_SECRET ?= dronedelivery/cosmos-connection
OPERATOR_SECRET ?= dronedelivery/operator-key
AWS_ARCH = $(if $(filter arm64,$(LAMBDA_ARCH)),arm64,x86_64)

deploy-aws:
	@command -v sam >/dev/null || { echo "make deploy-aws needs the AWS SAM CLI: https://docs.aws.amazon.com/serverless-application-model/latest/developerguide/install-sam-cli.html"; exit 1; }
	$(MAKE) package-lambda
	sam deploy --template-file infra/aws/template.yaml --stack-name $(STACK) --resolve-s3 \
		--capabilities CAPABILITY_IAM --no-fail-on-empty-changeset \
		--parameter-overrides CosmosConnectionSecret=$(COSMOS_SECRET) OperatorKeySecret=$(OPERATOR_SECRET) Architecture=$(AWS_ARCH)

# Deploy to Azure (docs/deploy.md): needs the az CLI (2.60 or later) with
# Bicep, signed in to a subscription, and curl. NAME is the base of every
# resource name; LOCATION must offer Flex Consumption. The resource group is
# created if it does not exist.
#
# The operator key is the template's secure parameter operatorKey, so it is
# part of the app settings the template deploys, every time: the settings
# resource replaces the whole set, and a key set by a later command would be
# lost at the next deployment. It goes to az in a parameters file that only
# this user can read, not on the command line, where ps would show it.
#
# EXTRA_APP_SETTINGS, when set, names a JSON file of app settings of your
# own, e.g. {"PUBLIC_BASE_URL": "https://drones.example.com"}, which go into
# the same parameters file as the template's secure parameter
# extraAppSettings, so that every deployment sets them too. A name the
# template sets itself keeps the template's value.
#
# make publish (part of make deploy) sends dist/app.zip with
# az functionapp deployment source config-zip, which for a Flex Consumption
# app posts it to the One Deploy endpoint (/api/publish) and then polls the
# host's status without a bound (azure-cli, appservice/custom.py,
# enable_zip_deploy_flex and check_flex_app_after_deployment, whose loop
# never counts its attempts): PUBLISH_TIMEOUT bounds it. Then the health
# endpoint must answer 200 within HEALTH_TIMEOUT seconds.
NAME ?= dronedelivery
RESOURCE_GROUP ?= rg-$(NAME)
LOCATION ?= eastus
SMS_SENDER ?=
EXTRA_APP_SETTINGS ?=
PUBLISH_TIMEOUT ?= 900
HEALTH_TIMEOUT ?= 300

.PHONY: deploy-check deploy-infra publish

deploy-check:
	@command -v az >/dev/null || { echo "make deploy needs the Azure CLI: https://learn.microsoft.com/cli/azure/install-azure-cli, then az login"; exit 1; }
	@command -v curl >/dev/null || { echo "make deploy needs curl for its health check"; exit 1; }
	@v=$$(az version --query '"azure-cli"' --output tsv 2>/dev/null); \
	[ "$$(printf '%s\n2.60.0\n' "$$v" | sort -V | head -1)" = 2.60.0 ] || { echo "make deploy needs Azure CLI 2.60.0 or later (found '$$v'): az upgrade"; exit 1; }

deploy: deploy-check
	@printf '%s' "$$OPERATOR_KEY" | LC_ALL=C grep -Eq '^[!-~]{16,}$$' || { echo "make deploy needs OPERATOR_KEY, the fleet endpoints' key: at least 16 printable characters without spaces (openssl rand -hex 32 makes one); keep it and pass the same on every deploy"; exit 1; }
	@case "$$OPERATOR_KEY" in dd_*) echo "OPERATOR_KEY must not start with dd_, which marks business API keys"; exit 1;; esac
	@where=$$(az group show --name $(RESOURCE_GROUP) --query location --output tsv 2>/dev/null || true); \
	if [ -n "$$where" ] && [ "$$where" != "$(LOCATION)" ]; then \
		echo "make deploy: resource group $(RESOURCE_GROUP) is in $$where, not LOCATION=$(LOCATION); a deployment's resources stay where they were made: pass LOCATION=$$where, or another NAME (or RESOURCE_GROUP) for a second deployment elsewhere"; exit 1; \
	fi
	$(MAKE) package
	az group create --name $(RESOURCE_GROUP) --location $(LOCATION) --output none
	$(MAKE) deploy-infra
	$(MAKE) publish

# The template alone; OPERATOR_KEY and EXTRA_APP_SETTINGS as for make deploy.
deploy-infra: deploy-check
	@set -e; umask 077; params=$$(mktemp); trap 'rm -f "$$params"' EXIT; \
	key=$$(printf '%s' "$$OPERATOR_KEY" | sed 's/[\\"]/\\&/g'); \
	extra='{}'; \
	if [ -n "$(EXTRA_APP_SETTINGS)" ]; then \
		test -r "$(EXTRA_APP_SETTINGS)" || { echo "make deploy: EXTRA_APP_SETTINGS names $(EXTRA_APP_SETTINGS), which cannot be read"; exit 1; }; \
		extra=$$(cat "$(EXTRA_APP_SETTINGS)"); \
	fi; \
	printf '{"$$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentParameters.json#", "contentVersion": "1.0.0.0", "parameters": {"operatorKey": {"value": "%s"}, "extraAppSettings": {"value": %s}}}\n' "$$key" "$$extra" > "$$params"; \
	echo "az deployment group create --resource-group $(RESOURCE_GROUP) --name $(NAME) --template-file infra/main.bicep (operatorKey from OPERATOR_KEY$(if $(EXTRA_APP_SETTINGS), and extraAppSettings from $(EXTRA_APP_SETTINGS)))"; \
	az deployment group create --resource-group $(RESOURCE_GROUP) --name $(NAME) \
		--template-file infra/main.bicep --parameters @infra/main.parameters.json \
		--parameters name=$(NAME) location=$(LOCATION) $(if $(SMS_SENDER),smsSender=$(SMS_SENDER)) --parameters "@$$params" --output none

# Publish dist/app.zip to the deployed app (a code-only redeploy) and wait,
# a bounded time, for its health endpoint.
publish: deploy-check
	@test -f $(DIST)/app.zip || { echo "make publish needs $(DIST)/app.zip: make package"; exit 1; }
	@set -e; \
	app=$$(az deployment group show --resource-group $(RESOURCE_GROUP) --name $(NAME) --query properties.outputs.functionAppName.value --output tsv); \
	api=$$(az deployment group show --resource-group $(RESOURCE_GROUP) --name $(NAME) --query properties.outputs.apiBaseUrl.value --output tsv); \
	[ -n "$$app" ] && [ -n "$$api" ] || { echo "make publish: no deployment $(NAME) with a function app in resource group $(RESOURCE_GROUP): make deploy first (with the same NAME)"; exit 1; }; \
	bound=$$(command -v timeout || command -v gtimeout || true); \
	[ -n "$$bound" ] || echo "warning: no timeout command (coreutils): az cannot be bounded and may wait forever on an unhealthy app"; \
	echo "publishing $(DIST)/app.zip to $$app"; \
	$${bound:+$$bound $(PUBLISH_TIMEOUT)} az functionapp deployment source config-zip --resource-group $(RESOURCE_GROUP) --name "$$app" --src $(DIST)/app.zip --output none \
		|| { echo "publishing to $$app failed or took over $(PUBLISH_TIMEOUT) s; see docs/deploy.md, When a deployment fails"; exit 1; }; \
	deadline=$$(( $$(date +%s) + $(HEALTH_TIMEOUT) )); \
	while :; do \
		code=$$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$$api/healthz" || true); \
		if [ "$$code" = 200 ]; then echo "deployed $$app: $$api/healthz answers 200"; exit 0; fi; \
		if [ "$$(date +%s)" -ge "$$deadline" ]; then echo "$$api/healthz answered $$code, not 200, for $(HEALTH_TIMEOUT) s; see docs/deploy.md, When a deployment fails"; exit 1; fi; \
		sleep 5; \
	done

# Run the packaged app under the real Functions host, for those with Core Tools.
# The settings come from ./local.settings.json (git-ignored) because make package
# rebuilds $(DIST)/app from scratch.
start:
	@command -v func >/dev/null || { echo "make start needs Azure Functions Core Tools v4 (func): https://learn.microsoft.com/azure/azure-functions/functions-run-local; make run serves the same API without it"; exit 1; }
	@test -f local.settings.json || { echo "make start needs local.settings.json: cp local.settings.sample.json local.settings.json and fill in your endpoints (docs/deploy.md)"; exit 1; }
	@[ "$$($(GO) env GOHOSTOS)/$$($(GO) env GOHOSTARCH)" = linux/amd64 ] || echo "warning: make package builds linux/amd64; on this machine build dronedelivery for your platform into $(DIST)/app"
	$(MAKE) package
	cp local.settings.json $(DIST)/app/local.settings.json
	cd $(DIST)/app && func start --port $(PORT)

# Fly every assigned drone of a running service (make run in another
# terminal) so deliveries reach Completed and the tracking page moves:
# make simulate SIMULATE_ARGS='-time-scale 20 -until-idle'
.PHONY: simulate
simulate:
	$(GO) run . simulate -api http://127.0.0.1:$(PORT) -data-dir $(DATA_DIR) $(SIMULATE_ARGS)

# The README's pictures of the operator console and the tracking page, taken
# by the browser tests in headless Chromium.
.PHONY: screenshots
screenshots: test-deps
	SCREENSHOT_DIR=$(CURDIR)/docs go test ./e2e -run 'TestConsoleInBrowser|TestTrackingPageInBrowser' -count=1
