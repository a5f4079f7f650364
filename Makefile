# cnimatrix: the verbs. `make help` lists them.
SHELL := /bin/bash
GO ?= go
export GOFLAGS ?= -buildvcs=false
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
OUT ?= _out
SCENARIO ?= scenarios/offline-flannel.yaml
GINKGO_FLAGS ?=
# FILTER: cells make matrix runs, space-separated key=value (cnimatrix run --filter),
# e.g. FILTER='arch=arm64 provider=kind'; empty runs every cell of SCENARIO.
FILTER ?=
# SHARD: K/N runs only the K-th of N cost-balanced parts of those cells (cnimatrix run --shard).
SHARD ?=

.PHONY: help setup build bench bench-parallel bench-matrix test test-unit test-e2e test-short e2e images matrix lint gc clean

help: ## list the verbs
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

setup: ## install and start what the tests need (Docker engine, binfmt, qemu, mmdebstrap); needs root
	@bash hack/setup-host.sh

build: ## build bin/cnimatrix
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/cnimatrix ./cmd/cnimatrix

test: setup test-unit test-e2e ## unit and integration tests, then the real offline e2e (clusters, CNI, checks, matrix)

test-unit: ## every package's tests except the e2e suite (integration tests use Docker and build what e2e needs)
	CNIMATRIX_SLOW=1 CNIMATRIX_QEMU=1 $(GO) test -count=1 -p 1 -timeout 90m $$($(GO) list ./... | grep -v /e2e)

test-e2e: ## the e2e suite: default scenario + negative self-tests, matrix asserted (needs Docker)
	$(GO) test -count=1 -timeout 170m -v ./e2e/ -ginkgo.v $(GINKGO_FLAGS)

test-short: ## fast tests only: no Docker, no cluster
	$(GO) test -short ./...

e2e: setup ## the main job: run the default scenario through the Ginkgo suite and write the matrix to $(OUT)/e2e
	CNIMATRIX_SCENARIOS=$(SCENARIO) CNIMATRIX_OUT=$(CURDIR)/$(OUT)/e2e $(GO) test -count=1 -timeout 170m -v ./e2e/ -ginkgo.v $(GINKGO_FLAGS)
	@echo; cat $(OUT)/e2e/matrix.md | head -20

images: setup build ## build every image the default scenario needs (cached by content)
	bin/cnimatrix images build

matrix: setup build ## run SCENARIO=... (cells picked by FILTER=...) with the CLI; matrix and artifacts to $(OUT)
	bin/cnimatrix run $(SCENARIO) --out $(OUT) --artifacts $(OUT)/artifacts $(foreach f,$(FILTER),--filter '$(f)') $(if $(SHARD),--shard $(SHARD))

lint: ## gofmt, go vet, staticcheck
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo 'gofmt: files above need formatting'; exit 1; }
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

bench: setup build ## one mixed-arch cell (kind amd64 control plane + arm64 QEMU VM worker) by the harness and by hand; per-phase times and their ratio
	$(GO) build -o bin/kind sigs.k8s.io/kind
	bash hack/bench.sh

bench-parallel: setup build ## four cells (2 kind, 2 with a QEMU VM) with --parallel 1, 2 and auto: wall time, memory, verdicts compared
	bash hack/bench-parallel.sh

bench-matrix: setup build ## six real Calico v3.32.1 cells (3 on a reused amd64 kind cluster, 3 on a reused mixed arm64 cluster): per-cell costs and the 54-cell matrix projected on one machine and on 8 shards
	bash hack/bench-matrix.sh

gc: build ## delete clusters and networks that earlier runs left behind
	bin/cnimatrix gc

clean: ## remove build output (not the image cache)
	rm -rf bin $(OUT)
