# Mayfly: `make run` serves, `make test` tests. Both first install what is
# missing (Docker engine, busybox-static, debootstrap) and build the stack
# images.

GO       ?= go
BENCH_REPEAT ?= 1
BIN      := bin/mayfly
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
export PATH := $(PATH):/usr/local/go/bin

.PHONY: help setup build stacks run test test-unit lint bench fuzz chaos clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

setup: ## install what is missing (docker.io, busybox-static, debootstrap) and start the Docker engine
	@bash scripts/setup.sh

build: ## build bin/mayfly (and bin/mayfly-launch, the static launcher of warm containers)
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/mayfly
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o bin/mayfly-launch ./cmd/mayfly-launch

stacks: build ## build every stack image (skips what is current; the first build takes minutes)
	$(BIN) stack build --all

run: setup stacks ## set up, build, and start the server with its defaults
	$(BIN) server

STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

lint: ## gofmt, go vet and staticcheck (its checks: staticcheck.conf)
	@out=$$(gofmt -l $$(git ls-files -co --exclude-standard '*.go') 2>/dev/null); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

test: setup stacks lint ## set up, then run every test, against the real engine, PostgreSQL and S3 (versitygw)
	@bash scripts/setup-compat.sh
	@bash scripts/setup-s3.sh
	MAYFLY_REQUIRE_INTEGRATION=1 MAYFLY_BIN=$(CURDIR)/$(BIN) $(GO) test -race -count=1 -timeout 30m ./...
	@echo "== the API, runner, scheduler and queue set-ups again, on PostgreSQL"
	MAYFLY_REQUIRE_INTEGRATION=1 MAYFLY_TEST_STORE=postgres $(GO) test -race -count=1 -timeout 20m \
		./internal/api/ ./internal/runner/ ./internal/runner/queuetest/ ./internal/scheduler/ ./internal/assembly/
	@echo "== alone, without -race (it skips under it): the dashboard's queries on a million-task store use indexes"
	$(GO) test -count=1 -timeout 10m -run '^TestDashboardQueriesUseIndexes$$' ./internal/store/sqlite/
	@echo "== alone: the Docker engine restarts under a running task"
	MAYFLY_REQUIRE_INTEGRATION=1 MAYFLY_ENGINE_RESTART=1 $(GO) test -count=1 -timeout 10m -run '^TestEngineRestart$$' ./internal/runner/
	@echo "== alone: a burst of $${MAYFLY_BURST_TASKS:-1000} real containers, each run exactly once (5,000 on the fake driver run above)"
	MAYFLY_REQUIRE_INTEGRATION=1 MAYFLY_BURST=1 MAYFLY_BURST_TASKS=$${MAYFLY_BURST_TASKS:-1000} MAYFLY_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -timeout 90m -run '^TestBurst$$' -v ./cmd/mayfly/

test-unit: ## the tests that need nothing but Go (integration tests skip loudly)
	$(GO) test -count=1 ./...

FUZZTIME ?= 1m
fuzz: ## run every fuzz target for FUZZTIME each (make test runs their seeds); crashers land in testdata/fuzz
	@for t in $$($(GO) test -list '^Fuzz' ./... | awk '/^Fuzz/ {print $$1}'); do \
		pkg=$$(grep -rl "func $$t(" --include='*_test.go' internal cmd | head -1 | xargs dirname); \
		echo "== $$t ($$pkg) for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) ./$$pkg || exit 1; \
	done

CHAOS_DURATION ?= 1h
chaos: setup stacks ## the soak: tasks under random kills of runners, servers, PostgreSQL and the engine for CHAOS_DURATION (make test runs 60 s); see docs/chaos.md
	MAYFLY_REQUIRE_INTEGRATION=1 MAYFLY_CHAOS_DURATION=$(CHAOS_DURATION) $(GO) test -count=1 -timeout 0 -run '^TestChaos$$' -v ./cmd/mayfly/ 2>&1 | tee chaos.log
	@grep -q '^ok' chaos.log

bench: setup build ## measure Mayfly against docker run and River (SQLite and PostgreSQL) in one run (BENCH_REPEAT=N: N runs and a repeatability table); writes bench-results/ (see BENCHMARKS.md)
	$(BIN) stack build busybox
	@# The PostgreSQL scenarios get a throw-away server of their own, unless
	@# MAYFLY_BENCH_POSTGRES_URL names one; without either they are skipped.
	@if [ -z "$$MAYFLY_BENCH_POSTGRES_URL" ]; then \
		dir=$$(mktemp -d /tmp/mayfly-bench-pg-XXXXXX); \
		if url=$$(bash scripts/pg-cluster.sh start $$dir); then \
			trap "bash scripts/pg-cluster.sh stop $$dir" EXIT; \
			export MAYFLY_BENCH_POSTGRES_URL=$$url; \
		else \
			echo "no PostgreSQL server could be started: the PostgreSQL scenarios will be skipped" >&2; rm -rf $$dir; \
		fi; \
	fi; \
	echo "$(BIN) bench --repeat $(BENCH_REPEAT) --out bench-results"; \
	$(BIN) bench --repeat $(BENCH_REPEAT) --out bench-results

clean: ## remove the build output
	rm -rf bin
