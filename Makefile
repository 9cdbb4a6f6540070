# kubelvs Makefile (kubebuilder style). `make test` is the CI entry point: it installs what it needs.

# Tools and caches live outside the repository so that fresh clones reuse them.
CACHE_DIR ?= $(HOME)/.cache/kubelvs
LOCALBIN ?= $(CACHE_DIR)/bin
export PATH := $(LOCALBIN):$(PATH)

GO ?= go
GOLANGCI_LINT_VERSION ?= v2.15.0
GOLANGCI_LINT ?= $(LOCALBIN)/golangci-lint-$(GOLANGCI_LINT_VERSION)

# Packages whose `ipvsvm`-tagged tests need a kernel with IPVS: `make test-vm` runs them in one VM boot.
VM_TEST_PKGS ?= ./hack/vm/smoketest ./pkg/ipvs
VM_TEST_FLAGS ?=
# `make bench-ipvs` table size (BENCH_FLAGS=-services 1000 for a quick run).
BENCH_FLAGS ?=

FUZZTIME ?= 10s
BENCHTIME ?= 1s

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  %-18s %s\n", $$1, $$2 } /^##@/ { printf "\n%s\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: fmt
fmt: ## Run gofmt on the tree.
	gofmt -w $$(git ls-files '*.go')

.PHONY: fmt-check
fmt-check: ## Fail when gofmt would change a file.
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

.PHONY: vet
vet: ## Run go vet.
	$(GO) vet ./...

.PHONY: lint
lint: $(GOLANGCI_LINT) ## Run golangci-lint.
	$(GOLANGCI_LINT) run ./...

##@ Build

.PHONY: build
build: ## Build the kubelvs binary into bin/.
	CGO_ENABLED=0 $(GO) build -o bin/kubelvs ./cmd/kubelvs

##@ Test

.PHONY: test
test: fmt-check vet lint test-go test-vm ## Run every test the project has (the CI entry point).

.PHONY: test-go
test-go: ## Unit, fuzz-seed and real-kernel tests on this host (needs root for the kernel tests).
	$(GO) test -count=1 ./...

.PHONY: test-vm
test-vm: ## Run the ipvsvm-tagged tests of VM_TEST_PKGS in a real IPVS kernel (hack/vm, one boot).
	hack/vm/run-tests.sh $(VM_TEST_FLAGS) $(VM_TEST_PKGS)

.PHONY: bench-ipvs
bench-ipvs: ## Benchmark IPVS programming/reading (pkg/ipvs, moby, cloudflare, ipvsadm, raw floor) in the VM.
	hack/bench/run.sh $(BENCH_FLAGS)

.PHONY: bench
bench: ## Run the Go benchmarks with -benchmem.
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./...

.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZTIME each.
	@set -e; for pkg in $$($(GO) list ./...); do \
	  dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
	  for t in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/^func //'); do \
	    echo "fuzz $$pkg $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

##@ Tools

$(GOLANGCI_LINT):
	@mkdir -p $(LOCALBIN)
	@echo "installing golangci-lint $(GOLANGCI_LINT_VERSION) (built from source, cached in $(LOCALBIN))"
	GOBIN=$(LOCALBIN) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	mv $(LOCALBIN)/golangci-lint $(GOLANGCI_LINT)
