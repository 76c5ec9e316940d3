# poc-go-micro: every workflow is a target; `make` (or `make help`) lists them.

SHELL := /bin/bash
.DEFAULT_GOAL := help

BIN      := bin
BINARIES := server client-pingpong client-stream client-azqueue-pub
# COMMANDS are every binary `make build` builds: BINARIES, which have
# images, and requeue-poison, a repair tool run by hand.
COMMANDS := $(BINARIES) requeue-poison
TOOLS    := $(CURDIR)/bin/tools
GO       ?= go

# The version stamped into the binaries (--version, the server's
# registration) and the images' tags: `git describe` of the work tree.
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X github.com/poc-go-micro/poc-go-micro/internal/version.Version=$(VERSION)

# Docker: images are $(IMAGE)/<binary>:<version> and :latest. COMPOSE is
# Debian's docker-compose (make deps); with Docker's plugin, use
# COMPOSE="docker compose". BuildKit is needed for the Dockerfile's cache
# mounts.
IMAGE    := poc-go-micro
COMPOSE  ?= docker-compose
BUILDKIT := DOCKER_BUILDKIT=1 COMPOSE_DOCKER_CLI_BUILD=1

# The binaries run by the run-* targets use the local environment of
# `make up`: etcd on 127.0.0.1:2379 (their default registry) and Azurite on
# 127.0.0.1:10001. Variables already set in the environment win.
DEV_ENV := AZURE_STORAGE_CONNECTION_STRING="$${AZURE_STORAGE_CONNECTION_STRING:-UseDevelopmentStorage=true}"

.PHONY: help
help: ## List the targets.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-24s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: deps
deps: ## Install etcd, protoc, Docker, docker-compose, debootstrap (apt), Azurite and dockerfilelint (npm) and the Go generators, when missing.
	@scripts/install-deps.sh

.PHONY: build
build: ## Build every binary into bin/.
	@mkdir -p $(BIN)
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ $(addprefix ./,$(COMMANDS))

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

.PHONY: requeue-poison
requeue-poison: build up ## Move the poison queue's messages back to their queue, once their cause is fixed (TOPIC=, GROUP= choose).
	$(DEV_ENV) $(BIN)/requeue-poison $(if $(TOPIC),--topic=$(TOPIC)) $(if $(GROUP),--group=$(GROUP))

.PHONY: demo
demo: build up ## Run the whole demo: server, the three clients, events received; then stop the server.
	@scripts/demo.sh

.PHONY: docker-build
docker-build: ## Build the container image of every binary: poc-go-micro/<binary>:<version> and :latest (needs Docker).
	@for binary in $(BINARIES); do \
		echo "== $(IMAGE)/$$binary:$(VERSION)"; \
		$(BUILDKIT) docker build --target "$$binary" --build-arg VERSION=$(VERSION) \
			-t $(IMAGE)/$$binary:$(VERSION) -t $(IMAGE)/$$binary:latest . || exit 1; \
	done

.PHONY: compose-up
compose-up: ## Run the whole demo in Docker: docker-compose up --build (Ctrl-C stops it).
	VERSION=$(VERSION) $(BUILDKIT) $(COMPOSE) up --build

.PHONY: compose-down
compose-down: ## Stop and remove the Docker demo: containers, network and volumes.
	$(COMPOSE) down --volumes --remove-orphans

.PHONY: docker-check
docker-check: deps ## Validate docker-compose.yml (docker-compose config -q) and lint the Dockerfile; no Docker engine needed.
	$(COMPOSE) config -q
	tools/node_modules/.bin/dockerfilelint -c tools Dockerfile

.PHONY: lint
lint: ## Check formatting (gofmt) and run go vet, the fault suite included.
	@unformatted=$$(gofmt -l $$(git ls-files '*.go') 2>/dev/null); \
		if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet -tags faults,docker ./...

# The fault suite (faults/) builds only with the faults tag and runs after
# the other packages, alone, so that its timing is not that of a machine
# busy with them. It drives the binaries `make build` put in bin/.
FAULTS := POC_TEST_BIN_DIR=$(CURDIR)/$(BIN) $(GO) test -race -count=1 -tags faults -timeout 30m ./faults/

# The Docker demo's tests (compose/) build only with the docker tag. They
# use the machine's Docker engine, or start dockerd (as root) and stop it;
# base images that cannot be pulled are built here as stand-ins.
COMPOSE_TEST := VERSION=$(VERSION) COMPOSE="$(COMPOSE)" $(GO) test -count=1 -tags docker -timeout 60m -v ./compose/

.PHONY: compose-demo
compose-demo: deps ## Run the Docker demo for real and check it: build the images, docker-compose up, stop, down -v, a server killed mid-stream (starts dockerd if none answers).
	$(COMPOSE_TEST)

.PHONY: test
test: deps lint proto-check docker-check build ## Run every test: unit and end-to-end with -race, the fault suite, then the Docker demo in real containers (about 5 min warm, 10 on a fresh machine).
	$(GO) test -race -count=1 -timeout 20m ./...
	$(FAULTS)
	$(COMPOSE_TEST)

.PHONY: test-faults
test-faults: deps build ## Run only the fault suite: processes killed, servers restarted, hostile input (about 4 min).
	$(FAULTS)

.PHONY: reliability
reliability: deps build ## Run the fault suite and rewrite RELIABILITY.md with the figures it measured.
	POC_RELIABILITY_OUT=$(CURDIR)/RELIABILITY.md $(FAULTS)

# FUZZTIME bounds each fuzz target's run in `make fuzz`.
FUZZTIME ?= 30s

.PHONY: fuzz
fuzz: ## Fuzz the connection-string parser, the envelope decoder and the queue-name mapper, FUZZTIME (30s) each.
	@FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

.PHONY: fuzz-corpus
fuzz-corpus: ## Like fuzz, then copy up to 50 interesting inputs per target to broker/azqueue/testdata/fuzz (commit them).
	@FUZZTIME=$(FUZZTIME) scripts/fuzz.sh --save

.PHONY: bench
bench: deps ## Benchmark every path against plain grpc-go and the raw Azure SDK, also at 10 and 30 ms of round trip (own etcd + Azurite, ~10 min); writes BENCHMARKS.md.
	@scripts/bench.sh

.PHONY: clean
clean: ## Remove bin/ (the local environment's data stays in .data/ until `make down` and rm).
	rm -rf $(BIN)
