# Talos. `make run` starts a control plane on embedded SQLite; `make test` runs
# every test. Both build what they need.
GO        ?= go
BIN       := bin/talos
PROTO_DIR := pkg/api/talos/v2alpha1
SIDECAR_PROTO_DIR := pkg/api/talos/sidecar/v1
PROTOC_INCLUDE ?= /usr/include

.PHONY: all build run test test-short helm-test envtest-bin helm-dryrun generate lint bench microbench fuzz clean tools image

all: build

# talos version: the version, commit and build date (cmd/talos/root.go;
# without them it falls back to the Go build info).
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null)
DATE    ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS ?= -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.date=$(DATE)

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/talos

run: build
	./scripts/run.sh

# The container image, without a Docker daemon or a base image
# (scripts/image, docs/kubernetes.md): a static binary (CGO_ENABLED=0,
# -trimpath, no VCS stamp, no build ID) in one layer with the nonroot user,
# a CA bundle and /data, as bin/talos-image.tar (docker load, podman load)
# and the OCI layout bin/talos-image-oci. Reproducible: every timestamp is
# SOURCE_DATE_EPOCH (default: the last commit's time). Prints the digest.
IMAGE_FLAGS ?=
image:
	$(GO) run ./scripts/image $(IMAGE_FLAGS)

test:
	$(GO) test -race -count=1 -timeout 20m ./...

test-short:
	$(GO) test -short -count=1 ./...

# The Helm chart alone (deploy/README.md, "How the chart is tested").
helm-test:
	$(GO) test -count=1 -run 'Helm|Istio' ./deploy/

# kube-apiserver and etcd built from the Go module proxy (tools/kube; about
# 7 minutes on 2 cores the first time), the chart's server-side dry run
# against them, and the API server calling the injector through the chart's
# webhook. Opt-in: not part of make test.
envtest-bin:
	cd tools/kube && $(GO) build -o ../../bin/envtest/ k8s.io/kubernetes/cmd/kube-apiserver ./etcd

helm-dryrun: envtest-bin
	TALOS_TEST_KUBE_BIN=$(abspath bin/envtest) $(GO) test -count=1 -run 'TestHelmServerDryRun|TestInjectorAPIServer' -v ./deploy/

# Regenerates the committed protobuf/gRPC/gateway code, byte for byte. Needs
# protoc and the well-known types (Debian: protobuf-compiler, installed here
# when missing and running as root); the Go plugins are pinned as tool lines
# in go.mod, so the output does not depend on what is installed.
generate:
	@command -v protoc >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq protobuf-compiler; } \
		|| { echo "protoc missing: apt-get install -y protobuf-compiler"; exit 1; }
	protoc -I $(PROTO_DIR) -I $(PROTOC_INCLUDE) \
		--plugin=protoc-gen-go="$$($(GO) tool -n protoc-gen-go)" \
		--plugin=protoc-gen-go-grpc="$$($(GO) tool -n protoc-gen-go-grpc)" \
		--plugin=protoc-gen-grpc-gateway="$$($(GO) tool -n protoc-gen-grpc-gateway)" \
		--go_out=$(PROTO_DIR) --go_opt=paths=source_relative \
		--go-grpc_out=$(PROTO_DIR) --go-grpc_opt=paths=source_relative \
		--grpc-gateway_out=$(PROTO_DIR) --grpc-gateway_opt=paths=source_relative \
		--grpc-gateway_opt=grpc_api_configuration=$(PROTO_DIR)/gateway.yaml \
		--grpc-gateway_opt=allow_patch_feature=false \
		$(PROTO_DIR)/talos.proto
	protoc -I $(SIDECAR_PROTO_DIR) -I $(PROTOC_INCLUDE) \
		--plugin=protoc-gen-go="$$($(GO) tool -n protoc-gen-go)" \
		--plugin=protoc-gen-go-grpc="$$($(GO) tool -n protoc-gen-go-grpc)" \
		--go_out=$(SIDECAR_PROTO_DIR) --go_opt=paths=source_relative \
		--go-grpc_out=$(SIDECAR_PROTO_DIR) --go-grpc_opt=paths=source_relative \
		$(SIDECAR_PROTO_DIR)/sidecar.proto

lint:
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# The performance harness (bench/README.md): builds talos, runs the control
# plane, the sidecar and no-op baselines as processes on loopback and writes
# bench/results/<date>-*.{json,md,png}. About 8 minutes; not part of CI
# (make test runs it in a smoke mode of seconds). Override BENCH_FLAGS, e.g.
# make bench BENCH_FLAGS='-scenarios l1-hit -duration 5s'.
BENCH_PG_DSN ?= postgres://postgres@127.0.0.1:5432/test?sslmode=disable
BENCH_REDIS  ?= 127.0.0.1:6379
BENCH_FLAGS  ?=
bench:
	$(GO) run ./bench -pg-dsn '$(BENCH_PG_DSN)' -redis '$(BENCH_REDIS)' $(BENCH_FLAGS)

# The Go micro-benchmarks next to the code.
microbench:
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./...

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime 30s ./pkg/apikey/

clean:
	rm -rf bin .data
