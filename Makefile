# Strata's build. `make run` and `make test` are the README's two commands.
GO        ?= go
BIN       := bin/strata
PKGS      := ./...
# Packages whose code runs concurrently: the race detector runs on these.
RACE_PKGS := ./storage/... ./raftfsm/... ./controller/... ./broker/... ./client/... ./internal/... ./integration/netproxy/ ./integration/checker/
# Seconds each fuzz target runs in `make test` (on top of its seed corpus).
FUZZTIME  ?= 3s

# Pinned code generators and linters (installed into ./bin/tools on demand).
PROTOC_GEN_GO_VERSION      := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
STATICCHECK_VERSION        := v0.8.2
TOOLS := $(CURDIR)/bin/tools

.PHONY: all build run sample test test-long faults image bench fmt lint vet proto proto-check fuzz clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/strata

# The main job: a one-node cluster (controller + broker) on the default ports, data in ./data.
run: build
	./$(BIN) dev

# A sample partition log written by the storage engine, dumped and verified.
sample: build
	rm -rf data/sample
	$(GO) run ./scripts/samplelog -dir data/sample
	./$(BIN) dump-log --records data/sample/orders-0/00000000000000000000.log
	./$(BIN) dump-log --verify data/sample/orders-0

test: vet proto-check
	$(GO) test -count=1 $(PKGS)
	$(GO) test -count=1 -race $(RACE_PKGS)
	$(MAKE) fuzz

# Every fuzz target, a few seconds each, on its seed corpus and whatever it finds.
fuzz:
	FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

# Long soak and fault runs: not part of CI.
test-long:
	STRATA_LONG=1 $(GO) test -count=1 -timeout 60m $(PKGS)

# The fault suite alone, verbose: its summary table is printed at the end
# (STRATA_LONG=1 for the long runs and the Docker test).
faults:
	$(GO) test -count=1 -v -timeout 60m -run 'TestFault|TestHarness|TestGarbage|TestHuge|TestConnectionFlood|TestDocker' ./integration/...

# A static binary and a Docker image FROM scratch holding only it (nothing is pulled).
IMAGE ?= strata:latest
image:
	rm -rf bin/image && mkdir -p bin/image/data
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o bin/image/strata ./cmd/strata
	cp deploy/Dockerfile bin/image/Dockerfile
	docker build -t $(IMAGE) bin/image

bench:
	$(GO) test -run='^$$' -bench=. -benchmem $(PKGS)

fmt:
	gofmt -w $$(git ls-files '*.go')

vet:
	$(GO) vet $(PKGS)
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1)

lint: vet
	GOBIN=$(TOOLS) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	$(TOOLS)/staticcheck $(PKGS)

$(TOOLS)/protoc-gen-go:
	GOBIN=$(TOOLS) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
$(TOOLS)/protoc-gen-go-grpc:
	GOBIN=$(TOOLS) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

# Regenerate the Go code from proto/strata/v1/*.proto (needs protoc: apt-get install protobuf-compiler).
proto: $(TOOLS)/protoc-gen-go $(TOOLS)/protoc-gen-go-grpc
	@if ls proto/strata/v1/*.proto >/dev/null 2>&1; then \
	  PATH=$(TOOLS):$$PATH protoc -I proto \
	    --go_out=proto --go_opt=paths=source_relative \
	    --go-grpc_out=proto --go-grpc_opt=paths=source_relative \
	    proto/strata/v1/*.proto; \
	fi

# Fails when the committed generated code is not what `make proto` makes.
proto-check: proto
	@git diff --exit-code -- proto/ || (echo "proto/: generated code is stale; run make proto and commit" && exit 1)

clean:
	rm -rf bin data
