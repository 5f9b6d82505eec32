# Courier: build, run, test, lint, bench. Needs Go (go.mod names the version)
# and, for the AMQP tests, RabbitMQ (scripts/services.sh starts or installs it).

GO            ?= go
VERSION       ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS       := -X main.version=$(VERSION)
STATICCHECK   := honnef.co/go/tools/cmd/staticcheck@v0.8.2
BENCHTIME     ?= 3s
FUZZTIME      ?= 1m
# Each fuzz target, as package:name. Their seed corpora are in each
# package's testdata/fuzz and also run with every go test.
FUZZ_TARGETS  := ./event/:FuzzDecodeEnvelope ./event/:FuzzDecodeStored ./ingest/:FuzzDecode ./config/:FuzzParse \
                 ./config/:FuzzParseSink ./retry/:FuzzParseRetryAfter ./sinks/webhook/:FuzzResponse

.PHONY: all build static packages manifests observe observe-test run cluster-demo test test-short lint services fuzz chaos bench bench-quick bench-compare clean

all: lint test

## build: the binaries, in bin/
build:
	@mkdir -p bin
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/worker ./cmd/worker
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/emit ./cmd/emit
	$(GO) build -o bin/receiver ./examples/receiver

## static: the static, reproducible binaries the image and packages ship, in bin/static
static:
	./scripts/build-static.sh bin/static $(VERSION)

## packages: the .deb and .rpm (systemd unit, courier user, /etc/courier), in dist/
PKG_VERSION ?= 0.1.0
packages: static
	cd tools/deploy && SOURCE_DATE_EPOCH=$${SOURCE_DATE_EPOCH:-$$(git log -1 --format=%ct)} \
		$(GO) run ./cmd/package -version $(PKG_VERSION)

## manifests: deploy/kubernetes/courier.yaml, rendered from the Helm chart
manifests:
	cd tools/deploy && $(GO) run ./cmd/render -chart ../../deploy/helm/courier -out ../../deploy/kubernetes/courier.yaml

## run: the quick start: worker with embedded outbox, example receiver, sample events
run: build
	./scripts/quickstart.sh

## cluster-demo: three workers as one cluster; kill one, add a sink, watch it rejoin
cluster-demo: build
	./scripts/cluster.sh

## services: make sure the real brokers the tests use are running
services:
	./scripts/services.sh

## test: vet, then every test with the race detector against real components,
## then the deployment checks (chart, manifests, packages, static binaries;
## a module of their own, tools/deploy)
test: services
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 15m ./...
	cd tools/deploy && $(GO) vet ./... && $(GO) test -count=1 -timeout 10m ./...

## fuzz: each fuzz target for FUZZTIME (CI: 10s each); a crash fails and
## leaves the input in the package's testdata/fuzz (scripts/fuzz-one.sh
## runs a target again only after Go 1.26's spurious deadline failure)
fuzz:
	@for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "== fuzz $$pkg $$name ($(FUZZTIME))"; \
		GO=$(GO) scripts/fuzz-one.sh $$pkg $$name $(FUZZTIME) || exit 1; \
	done

## test-short: the same without the process crash test
test-short:
	$(GO) test -race -count=1 -short ./...

## lint: formatting, vet, staticcheck
lint:
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	cd tools/deploy && $(GO) vet ./... && $(GO) run $(STATICCHECK) ./...
	cd tools/observe && $(GO) vet ./... && $(GO) run $(STATICCHECK) ./...

## bench: emit throughput and end-to-end delivery figures (see README)
bench:
	$(GO) test -run '^$$' -bench . -benchtime $(BENCHTIME) ./outbox/ ./worker/ ./sinks/...
	$(GO) test -run '^$$' -bench . -benchtime 3x ./cmd/emit/
	$(GO) test -run '^$$' -bench . -benchtime 3x ./eventlog/

## chaos: the fault scenarios at full size (make test runs a short version
## of each): the kill storm (100,000 events, 20 SIGKILLs), 20 SIGKILLs under
## HTTP ingest, a receiver hiccup,
## the endpoint down 5 minutes, RabbitMQ and a Kafka broker restarted 10
## times each, a SIGTERM restart under a 1,000,000 backlog, a full disk,
## network partitions (30 s), 10 power losses
chaos:
	COURIER_CHAOS_EVENTS=$${COURIER_CHAOS_EVENTS:-100000} COURIER_CHAOS_KILLS=$${COURIER_CHAOS_KILLS:-20} \
	COURIER_CHAOS_DOWN=$${COURIER_CHAOS_DOWN:-5m} COURIER_CHAOS_BACKLOG=$${COURIER_CHAOS_BACKLOG:-1000000} \
	COURIER_CHAOS_RESTARTS=$${COURIER_CHAOS_RESTARTS:-10} COURIER_CHAOS_CUT=$${COURIER_CHAOS_CUT:-30s} \
	COURIER_CHAOS_POWERLOSSES=$${COURIER_CHAOS_POWERLOSSES:-10} \
		$(GO) test -count=1 -timeout 60m -run '^TestChaos' -v ./cmd/worker/

## observe: a worker beside a real Jaeger and a real Prometheus (built from
## the module proxy in tools/observe): emits the quick start's events, prints
## a delivery's trace and every dashboard panel's value; Ctrl-C stops it
observe:
	cd tools/observe && $(GO) run ./cmd/observe

## observe-test: the same as a test: traces in Jaeger's query API, every
## panel with data in Prometheus, exemplars, and the alert rules (promtool)
observe-test:
	cd tools/observe && $(GO) vet ./... && $(GO) test -count=1 -timeout 60m -v ./...

## bench-quick: every benchmark once, and a short Courier-vs-Watermill run,
## as a smoke test (completion with 0 lost, never a speed)
bench-quick:
	$(GO) test -run '^$$' -bench . -benchtime 1x ./event/ ./outbox/ ./worker/ ./delivery/ ./sinks/... ./cmd/emit/
	COURIER_BENCH_LOG_ROWS=20000 $(GO) test -run '^$$' -bench . -benchtime 1x ./eventlog/
	cd bench && $(GO) run ./cmd/compare --quick

## bench-compare: Courier side by side with a Watermill pipeline (bench/, its own module)
bench-compare:
	cd bench && $(GO) run ./cmd/compare

clean:
	rm -rf bin dist observe quickstart cluster-demo
