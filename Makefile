# poc-go-micro: every workflow is a target; `make` (or `make help`) lists them.

SHELL := /bin/bash
.DEFAULT_GOAL := help

BIN      := bin
BINARIES := server client-pingpong client-stream client-azqueue-pub
TOOLS    := $(CURDIR)/bin/tools
GO       ?= go

# The binaries run by the run-* targets use the local environment of
# `make up`: etcd on 127.0.0.1:2379 (their default registry) and Azurite on
# 127.0.0.1:10001. Variables already set in the environment win.
DEV_ENV := AZURE_STORAGE_CONNECTION_STRING="$${AZURE_STORAGE_CONNECTION_STRING:-UseDevelopmentStorage=true}"

.PHONY: help
help: ## List the targets.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-24s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: deps
deps: ## Install etcd, protoc, docker-compose (apt), Azurite (npm) and the Go generators, when missing.
	@scripts/install-deps.sh

.PHONY: build
build: ## Build every binary into bin/.
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ $(addprefix ./,$(BINARIES))

.PHONY: proto
proto: deps ## Regenerate proto/example/*.pb.go and *.pb.micro.go with the pinned protoc plugins.
	PATH="$(TOOLS):$$PATH" protoc -I proto \
		--go_out=proto --go_opt=paths=source_relative \
		--micro_out=proto --micro_opt=paths=source_relative \
		proto/example/example.proto

.PHONY: proto-check
proto-check: proto ## Fail if regenerating the proto code changes it.
	@git diff --exit-code -- proto/ || { echo "proto: generated code is stale, run 'make proto' and commit" >&2; exit 1; }

.PHONY: up
up: deps ## Start the local etcd and Azurite on 127.0.0.1 (reuses healthy ones).
	@scripts/devenv.sh up

.PHONY: down
down: ## Stop the local etcd and Azurite started by `make up`.
	@scripts/devenv.sh down

.PHONY: status
status: ## Show whether the local etcd and Azurite are healthy.
	@scripts/devenv.sh status

.PHONY: run-server
run-server: build up ## Run the server against the local etcd and Azurite (Ctrl-C stops it).
	$(DEV_ENV) $(BIN)/server --server_address=127.0.0.1:0

.PHONY: run-client-pingpong
run-client-pingpong: build ## Call the server once, then play 10 PingPong rounds.
	$(BIN)/client-pingpong

.PHONY: run-client-stream
run-client-stream: build ## Read a server Stream, then run full-duplex PingPong.
	$(BIN)/client-stream --count 10 --duplex

.PHONY: run-client-azqueue-pub
run-client-azqueue-pub: build up ## Publish an event every second until Ctrl-C.
	$(DEV_ENV) $(BIN)/client-azqueue-pub

.PHONY: demo
demo: build up ## Run the whole demo: server, the three clients, events received; then stop the server.
	@scripts/demo.sh

.PHONY: lint
lint: ## Check formatting (gofmt) and run go vet.
	@unformatted=$$(gofmt -l $$(git ls-files '*.go') 2>/dev/null); \
		if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

.PHONY: test
test: deps lint proto-check ## Run every test (unit and end-to-end on real etcd and Azurite) with -race.
	$(GO) test -race -count=1 -timeout 20m ./...

.PHONY: clean
clean: ## Remove bin/ (the local environment's data stays in .data/ until `make down` and rm).
	rm -rf $(BIN)
