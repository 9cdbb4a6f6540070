# kubelvs Makefile (kubebuilder style). `make test` is the CI entry point: it installs what it needs.

# Tools and caches live outside the repository so that fresh clones reuse them.
CACHE_DIR ?= $(HOME)/.cache/kubelvs
LOCALBIN ?= $(CACHE_DIR)/bin
export PATH := $(LOCALBIN):$(PATH)

GO ?= go
GOLANGCI_LINT_VERSION ?= v2.15.0
GOLANGCI_LINT ?= $(LOCALBIN)/golangci-lint-$(GOLANGCI_LINT_VERSION)
CONTROLLER_TOOLS_VERSION ?= v0.23.0
CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen-$(CONTROLLER_TOOLS_VERSION)

# envtest: kube-apiserver, etcd and kubectl built from source by hack/envtest-assets.sh and cached
# under $(CACHE_DIR)/envtest/<version> (setup-envtest cannot download here).
ENVTEST_K8S_VERSION ?= v1.37.2
ENVTEST_ASSETS ?= $(CACHE_DIR)/envtest/$(ENVTEST_K8S_VERSION)

# Packages whose `ipvsvm`-tagged tests need a kernel with IPVS: `make test-vm` runs them in one VM boot.
VM_TEST_PKGS ?= ./hack/vm/smoketest ./pkg/ipvs ./internal/dataplane ./test/e2e ./internal/demo
VM_TEST_FLAGS ?=
# `make bench-ipvs` table size (BENCH_FLAGS=-services 1000 for a quick run).
BENCH_FLAGS ?=
# `make bench-agent` flags (BENCH_AGENT_FLAGS='-vs 1000' for a quick run).
BENCH_AGENT_FLAGS ?=

# `make image`: the image's name in the tarball, and where the tarball goes.
IMG ?= ghcr.io/kubelvs/kubelvs:dev
IMAGE_TAR ?= bin/kubelvs-image.tar

# `make demo DEMO_ARGS=--once` runs the demo's steps and exits instead of waiting for Ctrl-C.
DEMO_ARGS ?=

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

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate CRDs (config/crd/bases) and RBAC (config/rbac, config/agent) from the Go types and markers.
	$(CONTROLLER_GEN) rbac:roleName=kubelvs-controller crd paths="./api/..." paths="./controllers/..." \
	  output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac
	$(CONTROLLER_GEN) rbac:roleName=kubelvs-agent paths="./internal/agent/..." output:rbac:artifacts:config=config/agent

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate deepcopy code (api/*/zz_generated.deepcopy.go).
	$(CONTROLLER_GEN) object paths="./api/..."

.PHONY: generated-check
generated-check: $(CONTROLLER_GEN) ## Fail when `make manifests generate` would change api/ or config/ (stale generated code).
	@state() { git diff --no-ext-diff -- api config; git ls-files -o --exclude-standard -z -- api config | xargs -0 -r cat; }; \
	before=$$(state | sha256sum); \
	$(MAKE) --no-print-directory manifests generate >/dev/null; \
	if [ "$$(state | sha256sum)" != "$$before" ]; then \
	  echo "generated files are stale: 'make manifests generate' changed:"; git status --porcelain -- api config; exit 1; fi; \
	echo "generated files are up to date"

##@ Demo

.PHONY: demo
demo: ## A two-node kubelvs cluster on this machine with real IPVS (the VM where the kernel has none); DEMO_ARGS=--once exits after the steps.
	CACHE_DIR=$(CACHE_DIR) hack/demo/run.sh $(DEMO_ARGS)

##@ Build

.PHONY: build
build: ## Build the kubelvs binary into bin/.
	CGO_ENABLED=0 $(GO) build -o bin/kubelvs ./cmd/kubelvs

.PHONY: image
image: build ## Build the container image (IMG) from bin/kubelvs as a docker-save tarball (IMAGE_TAR) without a container engine (hack/image).
	cd hack/image && $(GO) run . -binary $(CURDIR)/bin/kubelvs -out $(CURDIR)/$(IMAGE_TAR) -tag $(IMG)

##@ Test

.PHONY: test
test: fmt-check vet lint generated-check test-go test-bench test-image test-vm ## Run every test the project has (the CI entry point).

.PHONY: test-go
test-go: envtest-assets ## Unit, fuzz-seed, real-kernel and real-API-server (envtest) tests on this host.
	@# pkg/taskstats and internal/podstats each turn delay accounting on and restore it when they
	@# end; run in parallel, the first to end would turn it off under the other. On for the whole
	@# run, restored after.
	@was=$$(cat /proc/sys/kernel/task_delayacct); echo 1 > /proc/sys/kernel/task_delayacct; \
	KUBEBUILDER_ASSETS=$(ENVTEST_ASSETS) $(GO) test -count=1 ./...; rc=$$?; \
	echo $$was > /proc/sys/kernel/task_delayacct; exit $$rc

.PHONY: test-envtest
test-envtest: envtest-assets ## Only the tests that run against the real API server.
	KUBEBUILDER_ASSETS=$(ENVTEST_ASSETS) $(GO) test -count=1 ./api/... ./controllers/...

.PHONY: envtest-assets
envtest-assets: ## Build (once, cached) kube-apiserver, etcd and kubectl for envtest.
	K8S_VERSION=$(ENVTEST_K8S_VERSION) CACHE_DIR=$(CACHE_DIR) hack/envtest-assets.sh

.PHONY: test-vm
test-vm: envtest-assets ## Run the ipvsvm-tagged tests of VM_TEST_PKGS in a real IPVS kernel (hack/vm, one boot), the API server on the host.
	KUBEBUILDER_ASSETS=$(ENVTEST_ASSETS) hack/vm/run-tests.sh -apiserver $(VM_TEST_FLAGS) $(VM_TEST_PKGS)

.PHONY: test-bench
test-bench: ## Vet and unit-test the benchmark module hack/bench (its own go.mod), so it keeps building.
	cd hack/bench && $(GO) vet ./... && $(GO) test -count=1 ./...

.PHONY: test-image
test-image: ## Vet and test the image builder hack/image (its own go.mod): builds the image of the real binary and reads it back.
	cd hack/image && $(GO) vet ./... && $(GO) test -count=1 ./...

.PHONY: bench-ipvs
bench-ipvs: ## Benchmark IPVS programming/reading (pkg/ipvs, moby, cloudflare, ipvsadm, raw floor) in the VM.
	hack/bench/run.sh $(BENCH_FLAGS)

.PHONY: bench-dataplane
bench-dataplane: ## Benchmark the node dataplane in the VM: 10,000 VIPs bound and filtered from empty, one VIP added to 10,000, against ip -batch + nft -f and ip addr add + nft add element.
	hack/vm/run-tests.sh -v -bench 'BenchmarkDataplane' ./internal/dataplane

.PHONY: bench-agent
bench-agent: envtest-assets ## Benchmark the node agent in the VM (N VirtualServices x 10 endpoints, API server on the host) against kube-proxy-style resyncs and pkg/ipvs.
	KUBEBUILDER_ASSETS=$(ENVTEST_ASSETS) hack/bench/run-agent.sh $(BENCH_AGENT_FLAGS)

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

$(CONTROLLER_GEN):
	@mkdir -p $(LOCALBIN)
	@echo "installing controller-gen $(CONTROLLER_TOOLS_VERSION) (built from source, cached in $(LOCALBIN))"
	GOBIN=$(LOCALBIN) $(GO) install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_TOOLS_VERSION)
	mv $(LOCALBIN)/controller-gen $(CONTROLLER_GEN)

$(GOLANGCI_LINT):
	@mkdir -p $(LOCALBIN)
	@echo "installing golangci-lint $(GOLANGCI_LINT_VERSION) (built from source, cached in $(LOCALBIN))"
	GOBIN=$(LOCALBIN) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	mv $(LOCALBIN)/golangci-lint $(GOLANGCI_LINT)
