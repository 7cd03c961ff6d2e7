# Mayfly: `make run` serves, `make test` tests. Both first install what is
# missing (Docker engine, busybox-static) and build the stack images.

GO       ?= go
BIN      := bin/mayfly
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -s -w -X main.version=$(VERSION)
export PATH := $(PATH):/usr/local/go/bin

.PHONY: help setup build stacks run test test-unit lint clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

setup: ## install what is missing (docker.io, busybox-static) and start the Docker engine
	@bash scripts/setup.sh

build: ## build bin/mayfly
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/mayfly

stacks: build ## build the default stack images (skips what is current)
	$(BIN) stack build busybox

run: setup stacks ## set up, build, and start the server with its defaults
	$(BIN) server

lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go') 2>/dev/null); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

test: setup stacks lint ## set up, then run every test, integration tests against the real engine included
	MAYFLY_REQUIRE_INTEGRATION=1 MAYFLY_BIN=$(CURDIR)/$(BIN) $(GO) test -race -count=1 -timeout 30m ./...

test-unit: ## the tests that need nothing but Go (integration tests skip loudly)
	$(GO) test -count=1 ./...

clean: ## remove the build output
	rm -rf bin
