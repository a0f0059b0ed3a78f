# scimcord — the one entry point. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

TOOLS := $(CURDIR)/.tools/bin
export PATH := $(TOOLS):$(PATH)

# Pinned tool versions (installed into .tools/bin, git-ignored).
BUF_VERSION                := v1.75.0
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.5.1

MODULES := ./pkg/... ./services/ingest/... ./services/mapping/... ./services/applier/... ./services/scimcord/...

include deploy/helm/helm.mk
include deploy/dev/tools.mk

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  %-14s %s\n", $$1, $$2}'

.PHONY: run
run: ## run the whole system in one process (embedded NATS, the three services, the Discord emulator)
	@mkdir -p bin && go build -o bin/scimcord ./services/scimcord/cmd/scimcord
	./bin/scimcord

.PHONY: test
test: lint checkgenerate chart browser gotest ## everything CI runs: lint, generated code fresh, chart, all Go tests

.PHONY: gotest
gotest: ## the Go tests of every module (unit, integration, end-to-end, IdP cases, conformance suites)
	go test -count=1 -timeout 25m $(MODULES)

.PHONY: lint
lint: ## gofmt + go vet
	@out=$$(gofmt -l pkg services deploy); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	go vet $(MODULES) ./deploy/helm/...

.PHONY: tools
tools: $(TOOLS)/buf $(TOOLS)/protoc-gen-go $(TOOLS)/protoc-gen-go-grpc ## install the pinned code generators

$(TOOLS)/buf:
	GOBIN=$(TOOLS) go install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
$(TOOLS)/protoc-gen-go:
	GOBIN=$(TOOLS) go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
$(TOOLS)/protoc-gen-go-grpc:
	GOBIN=$(TOOLS) go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

.PHONY: generate
generate: tools ## regenerate pkg/gen from proto/
	buf lint
	rm -rf pkg/gen
	buf generate

.PHONY: checkgenerate
checkgenerate: generate ## fail when the committed generated code is stale
	@git diff --exit-code -- pkg/gen && test -z "$$(git status --porcelain -- pkg/gen)" || { echo "pkg/gen is stale: run make generate and commit"; exit 1; }

FUZZTIME ?= 30s
.PHONY: fuzz
fuzz: ## run every fuzz target for FUZZTIME each (default 30s)
	@set -e; for dir in $$(grep -rl --include='*_test.go' '^func Fuzz' pkg services | xargs -n1 dirname | sort -u); do \
	  for f in $$(grep -h '^func Fuzz' $$dir/*_test.go | sed 's/^func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do \
	    echo "fuzz: $$dir $$f ($(FUZZTIME))"; \
	    go test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) ./$$dir; \
	  done; \
	done

.PHONY: bench
bench: ## run the benchmarks (figures go to the README)
	go test -run '^$$' -bench . -benchmem -timeout 30m $(MODULES)
