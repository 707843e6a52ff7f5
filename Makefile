# Tokenwatch: `make run` starts everything locally with demo traffic; `make test` runs every test.
# Both install what is missing first (Debian packages through deploy/stack.sh, then the Swift build).
SHELL := /bin/bash
.DEFAULT_GOAL := help

ROOT        := $(CURDIR)
RUN_STATE   := $(ROOT)/.state/run
TEST_STATE  := $(ROOT)/.state/test
BENCH_STATE := $(ROOT)/.state/bench
SERVICES    := gateway ingestor aggregator detector query
DEMO_RATE   ?= 20
STACK        = bash $(ROOT)/deploy/stack.sh

OTEL_VENV   := $(ROOT)/.state/otel-venv
BROWSER_VENV := $(ROOT)/.state/browser-venv
CONTRACT_VENV := $(ROOT)/.state/contract-venv
FUZZ_STATE  := $(ROOT)/.state/fuzz
FUZZ_SECONDS ?= 60

.PHONY: help install build run stop status unit test bench eval fuzz fuzz-merge otel-fixtures k8s-check image-check image images image-lock clean

help:
	@echo "make run     install, build, start Postgres/Redis/broker and the five services with demo traffic"
	@echo "make stop    stop what make run started"
	@echo "make status  what is running"
	@echo "make unit    the stack-free unit tests only (no servers; a couple of minutes on a warm build)"
	@echo "make test    install, build, start a test stack, run every test, stop the stack"
	@echo "make bench   benchmarks (figures printed, not asserted)"
	@echo "make eval    detector accuracy on the seeded labelled corpus, against two baselines"
	@echo "make fuzz    libFuzzer on the event decoder and batch reader, the whole OTLP path and every topic decoder, FUZZ_SECONDS (default 60) each"
	@echo "make otel-fixtures  regenerate Tests/Fixtures/otlp with the real OpenTelemetry Python SDK and instrumentations"
	@echo "make k8s-check      render and validate the Kubernetes manifests (kubectl kustomize, kubernetes-validate, checkov)"
	@echo "make image-check    hadolint and the runtime packages of deploy/Dockerfile against ldd of the binaries"
	@echo "make image SERVICE=gateway | make images   container images (needs docker or podman), base images by digest"
	@echo "make image-lock     re-pin the base images' digests and the Swift dependencies the images build with"

install:
	@$(STACK) install

# TW_SKIP_BUILD=1 runs what is built already: the quickstart test runs `make run` from inside `swift test`, which
# holds SwiftPM's build lock.
build: install
	@[ -n "$$TW_SKIP_BUILD" ] && [ -x .build/debug/gateway ] || swift build

# MARK: - run

run: build
	@TW_STATE_DIR=$(RUN_STATE) $(STACK) start
	@mkdir -p $(RUN_STATE)/logs $(RUN_STATE)/pids
	@[ -f $(RUN_STATE)/admin.token ] || python3 -c 'import secrets; print(secrets.token_hex(24))' > $(RUN_STATE)/admin.token
	@set -a; . $(RUN_STATE)/stack.env; set +a; export TW_ADMIN_TOKEN=$$(cat $(RUN_STATE)/admin.token); \
	port=8080; for s in $(SERVICES); do \
	  pidfile=$(RUN_STATE)/pids/$$s.pid; \
	  if [ -f $$pidfile ] && kill -0 $$(cat $$pidfile) 2>/dev/null; then echo "$$s already running"; port=$$((port+1)); continue; fi; \
	  TW_HTTP_PORT=$$port nohup bash $(ROOT)/deploy/supervise.sh $$s $(RUN_STATE)/logs/$$s.log $(ROOT)/.build/debug/$$s >>$(RUN_STATE)/logs/supervise.log 2>&1 </dev/null & echo $$! >$$pidfile; \
	  echo "$$s on http://127.0.0.1:$$port (log $(RUN_STATE)/logs/$$s.log; restarted with backoff if it exits)"; port=$$((port+1)); \
	done; \
	pidfile=$(RUN_STATE)/pids/demo.pid; \
	if ! { [ -f $$pidfile ] && kill -0 $$(cat $$pidfile) 2>/dev/null; }; then \
	  nohup $(ROOT)/.build/debug/tokenwatch-bench demo http://127.0.0.1:8080 $(RUN_STATE)/demo.key $(DEMO_RATE) >$(RUN_STATE)/logs/demo.log 2>&1 </dev/null & echo $$! >$$pidfile; \
	  echo "demo traffic: $(DEMO_RATE) events/s POSTed to the gateway as tenant 'demo' (API key in $(RUN_STATE)/demo.key)"; \
	fi
	@# Return once the gateway answers, so the next command (the quickstart's curl) finds it listening.
	@for i in $$(seq 1 240); do \
	  python3 -c 'import urllib.request,sys; urllib.request.urlopen("http://127.0.0.1:8080/readyz", timeout=1)' 2>/dev/null && break; \
	  [ $$i -eq 240 ] && { echo "the gateway did not answer within 120 s; see $(RUN_STATE)/logs/gateway.log"; exit 1; }; sleep 0.5; \
	done
	@echo "admin token: $(RUN_STATE)/admin.token"
	@echo "try: curl -s -H \"Authorization: Bearer \$$(cat $(RUN_STATE)/demo.key)\" 'http://127.0.0.1:8080/v1/breakdown'"
	@echo "stop with: make stop"

stop:
	@for p in $(RUN_STATE)/pids/*.pid; do \
	  [ -f "$$p" ] || continue; pid=$$(cat $$p); \
	  if kill -0 $$pid 2>/dev/null; then kill -TERM $$pid; \
	    for i in $$(seq 1 300); do kill -0 $$pid 2>/dev/null || break; sleep 0.1; done; \
	    kill -0 $$pid 2>/dev/null && kill -KILL $$pid; echo "stopped $$(basename $$p .pid)"; fi; \
	  rm -f $$p; \
	done
	@TW_STATE_DIR=$(RUN_STATE) $(STACK) stop
	@rm -f $(RUN_STATE)/demo.key $(RUN_STATE)/demo.key.tenant

status:
	@TW_STATE_DIR=$(RUN_STATE) $(STACK) status
	@for p in $(RUN_STATE)/pids/*.pid; do [ -f "$$p" ] || continue; \
	  kill -0 $$(cat $$p) 2>/dev/null && echo "$$(basename $$p .pid) running pid $$(cat $$p)" || echo "$$(basename $$p .pid) stopped"; done

# MARK: - test

# The stack-free stage: whole test targets that need no server, and the unit suites of targets that also hold
# integration tests. It runs with every TW_ variable unset, so a test added here that needs a server fails here
# rather than passing by luck on a developer's machine. CI runs it first, so a broken unit fails in minutes.
UNIT_TARGETS := DetectorTests|EventsTests|NotifyTests|OTLPTests|RollupsTests|ServiceKitTests
UNIT_SUITES  := IngestorUnitTests|KafkaConfigurationTests|KafkaMessageTests
unit: install
	swift build --build-tests
	@for v in $$(compgen -e | grep '^TW_'); do unset $$v; done; \
	swift test --skip-build --filter '^($(UNIT_TARGETS))\.|\.($(UNIT_SUITES))(/|$$)'

# The test stack lives in its own state folder, so `make test` never touches a running `make run`, and is stopped
# whatever the tests' outcome.
test: install
	swift build --build-tests
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=20
	@$(MAKE) --no-print-directory k8s-check image-check
	@bash deploy/venv.sh $(OTEL_VENV) >/dev/null
	@bash deploy/browser/setup.sh $(BROWSER_VENV) >/dev/null
	@bash deploy/venv.sh $(CONTRACT_VENV) deploy/contract/requirements.txt >/dev/null
	@TW_STATE_DIR=$(TEST_STATE) $(STACK) start
	@set -a; . $(TEST_STATE)/stack.env; set +a; export TW_STATE_DIR=$(TEST_STATE); \
	export TW_TEST_OTEL_PYTHON=$(OTEL_VENV)/bin/python TW_TEST_BROWSER_PYTHON=$(BROWSER_VENV)/bin/python TW_TEST_CONTRACT_PYTHON=$(CONTRACT_VENV)/bin/python; \
	swift test --skip-build; rc=$$?; \
	TW_STATE_DIR=$(TEST_STATE) $(STACK) stop; exit $$rc

# MARK: - deployment checks and images

K8S_VENV := $(ROOT)/.state/k8s-venv
k8s-check:
	bash deploy/k8s/check.sh $(K8S_VENV)

image-check:
	@[ -x .build/debug/gateway ] || swift build
	bash deploy/image-check.sh $(K8S_VENV) $(ROOT)/.build/debug

# Images need a container engine (none runs on the build machines here; CI checks the Dockerfile with image-check).
ENGINE  ?= $(shell command -v docker || command -v podman)
SERVICE ?= gateway
TAG     ?= dev
image:
	@[ -n "$(ENGINE)" ] || { echo "make image needs docker or podman"; exit 1; }
	bash deploy/image-build.sh $(ENGINE) $(SERVICE) $(TAG)

# Re-pins what images are built from: the base images' current digests (a registry must be reachable) and the Swift
# dependencies at the versions this checkout resolves to (the ones `make test` ran with). Commit both files.
image-lock:
	@[ -n "$(ENGINE)" ] || { echo "make image-lock needs docker (buildx) or podman with skopeo"; exit 1; }
	bash deploy/image-build.sh $(ENGINE) - - --relock
	swift package resolve && cp Package.resolved deploy/dependencies.resolved

images:
	@for s in $(SERVICES); do $(MAKE) --no-print-directory image SERVICE=$$s || exit 1; done

# MARK: - bench

bench: install
	swift build -c release --product tokenwatch-bench
	swift build -c release --product gateway
	swift build -c release --product ingestor
	swift build -c release --product aggregator
	swift build -c release --product query
	@mkdir -p $(BENCH_STATE)
	gcc -O2 -o $(BENCH_STATE)/produce_loop deploy/bench/produce_loop.c $$(pkg-config --cflags --libs rdkafka)
	@TW_STATE_DIR=$(BENCH_STATE) $(STACK) start
	@set -a; . $(BENCH_STATE)/stack.env; set +a; rc=0; bench=$$(swift build -c release --show-bin-path)/tokenwatch-bench; \
	python3 deploy/broker-ctl.py "$$TW_KAFKA_MOCK_CONTROL" "CREATE bench.c 32" "CREATE bench.swift 32" || rc=1; \
	echo "== decode"; $$bench decode || rc=1; \
	echo "== detector"; $$bench detect || rc=1; \
	echo "== produce (300-byte messages)"; \
	c=$$(for i in 1 2 3; do $(BENCH_STATE)/produce_loop "$$TW_KAFKA_BROKERS" bench.c 500000 300 | cut -d' ' -f3 || rc=1; done | sort -n | sed -n 2p); \
	$$bench produce "$$TW_KAFKA_BROKERS" bench.swift 500000 300 $$c || rc=1; \
	echo "== pipeline and queries (release builds of gateway, ingestor, aggregator, query)"; \
	bash deploy/bench/pipeline.sh "$$(dirname $$bench)" $(BENCH_STATE) || rc=1; \
	TW_STATE_DIR=$(BENCH_STATE) $(STACK) stop; exit $$rc

# MARK: - eval

# The detectors' accuracy (release build): precision, recall, F1 and delay per anomaly kind on the corpus generated
# from EVAL_SEED, against a static threshold and a plain z-score; --check fails unless the targets are met.
EVAL_SEED   ?= 42
EVAL_SERIES ?= 300
# Labelled real series in NAB's layout for the real-data report (skipped when the directory is missing).
NAB_DIR     ?= $(ROOT)/../shared/datasets/nab-dev
eval: install
	swift build -c release --product detector
	$$(swift build -c release --show-bin-path)/detector eval --seed $(EVAL_SEED) --series $(EVAL_SERIES) --days 7 \
	    $$([ -f "$(NAB_DIR)/labels/windows.json" ] && echo --nab "$(NAB_DIR)") --check

# MARK: - fuzz

# Three libFuzzer targets (coverage-guided, with AddressSanitizer), built by swiftc outside SwiftPM: the event decoder
# and batch reader (Events sources); the whole OTLP path, decoders -> GenAI mapping -> event encoding -> the
# ingestor's decoder (Events and OTLP sources as one module); and every topic's decoder (raw events, events, rollups,
# anomalies). Seeds come from Tests/Fuzz/corpus, corpus-otlp and corpus-topics (kept in the repo; the OTLP seeds
# start from the SDK fixtures and keep the span that crashed the gateway, issue 13); new finds go to scratch folders, so a run never edits the repo; `make fuzz-merge`
# folds the useful ones in. A crash fails the run and leaves its input in .state/fuzz/.
FUZZ_BIN  := $(FUZZ_STATE)/fuzz-events
FUZZ_OTLP := $(FUZZ_STATE)/fuzz-otlp
FUZZ_TOPICS := $(FUZZ_STATE)/fuzz-topics
# The Foundation-only files of Shared/Rollups: what consumers decode topic messages with.
ROLLUP_PURE := Shared/Rollups/Int64+Saturating.swift Shared/Rollups/QuantileSketch.swift Shared/Rollups/Rollup.swift Shared/Rollups/RollupRecord.swift Shared/Rollups/AnomalyMessage.swift Shared/Rollups/UsageCounters.swift Shared/Rollups/DistinctSketch.swift Shared/Rollups/RollupSketches.swift Shared/Rollups/StoredSketch.swift
FUZZ_QUIET = grep -v -E "Cannot export local symbol|ignoring import|^ *[0-9]* *\||^ *\||^$$" || true
FUZZ_RUN   = -max_total_time=$(FUZZ_SECONDS) -timeout=5 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1
FUZZ_SHOW  = grep -E "^(\#[0-9]+ *DONE|Done|stat::number_of_executed_units|==|SUMMARY|artifact)"
$(FUZZ_BIN): Shared/Events/*.swift Tests/Fuzz/FuzzEvents.swift
	@mkdir -p $(FUZZ_STATE)
	swiftc -parse-as-library -sanitize=fuzzer,address -O -module-name Events -package-name tokenwatch Shared/Events/*.swift Tests/Fuzz/FuzzEvents.swift -o $@ 2>&1 | grep -v "Cannot export local symbol" || true
	@test -x $@

$(FUZZ_OTLP): Shared/Events/*.swift Shared/OTLP/*.swift Tests/Fuzz/FuzzOTLP.swift
	@mkdir -p $(FUZZ_STATE)
	swiftc -parse-as-library -sanitize=fuzzer,address -O -module-name Events -package-name tokenwatch Shared/Events/*.swift Shared/OTLP/*.swift Tests/Fuzz/FuzzOTLP.swift -o $@ 2>&1 | grep -v -E "Cannot export local symbol|ignoring import|^ *[0-9]* *\||^ *\||^$$" || true
	@test -x $@

$(FUZZ_TOPICS): Shared/Events/*.swift $(ROLLUP_PURE) Tests/Fuzz/FuzzTopics.swift
	@mkdir -p $(FUZZ_STATE)
	swiftc -parse-as-library -sanitize=fuzzer,address -O -module-name Events -package-name tokenwatch Shared/Events/*.swift $(ROLLUP_PURE) Tests/Fuzz/FuzzTopics.swift -o $@ 2>&1 | $(FUZZ_QUIET)
	@test -x $@

fuzz: $(FUZZ_BIN) $(FUZZ_OTLP) $(FUZZ_TOPICS)
	@mkdir -p $(FUZZ_STATE)/work $(FUZZ_STATE)/work-otlp $(FUZZ_STATE)/work-topics
	@echo "== events"; cd $(FUZZ_STATE) && $(FUZZ_BIN) $(FUZZ_RUN) $(FUZZ_STATE)/work $(ROOT)/Tests/Fuzz/corpus 2>&1 | $(FUZZ_SHOW); exit $${PIPESTATUS[0]}
	@echo "== otlp"; cd $(FUZZ_STATE) && $(FUZZ_OTLP) $(FUZZ_RUN) $(FUZZ_STATE)/work-otlp $(ROOT)/Tests/Fuzz/corpus-otlp 2>&1 | $(FUZZ_SHOW); exit $${PIPESTATUS[0]}
	@echo "== topics"; cd $(FUZZ_STATE) && $(FUZZ_TOPICS) $(FUZZ_RUN) $(FUZZ_STATE)/work-topics $(ROOT)/Tests/Fuzz/corpus-topics 2>&1 | $(FUZZ_SHOW); exit $${PIPESTATUS[0]}

fuzz-merge: $(FUZZ_BIN) $(FUZZ_OTLP) $(FUZZ_TOPICS)
	$(FUZZ_BIN) -merge=1 -max_len=1024 $(ROOT)/Tests/Fuzz/corpus $(FUZZ_STATE)/work
	$(FUZZ_OTLP) -merge=1 -max_len=16384 $(ROOT)/Tests/Fuzz/corpus-otlp $(FUZZ_STATE)/work-otlp
	$(FUZZ_TOPICS) -merge=1 -max_len=16384 $(ROOT)/Tests/Fuzz/corpus-topics $(FUZZ_STATE)/work-topics

# MARK: - OTLP fixtures

# Regenerates Tests/Fixtures/otlp: the openai client instrumented by OpenLLMetry and by the OpenTelemetry
# instrumentation (current releases, deploy/otel/requirements.txt; plus an OpenLLMetry release from before the
# attribute renames, requirements-legacy.txt), calling a local OpenAI stub and exported by the OpenTelemetry SDK in
# protobuf and JSON to a local capture server. Tests/OTLPTests checks every mapped field against them.
otel-fixtures:
	@py=$$(bash deploy/venv.sh $(OTEL_VENV)) && legacy=$$(bash deploy/venv.sh $(ROOT)/.state/otel-venv-legacy deploy/otel/requirements-legacy.txt) && \
	anthropic=$$(bash deploy/venv.sh $(ROOT)/.state/otel-venv-anthropic deploy/otel/requirements-anthropic.txt) && \
	openlit=$$(bash deploy/venv.sh $(ROOT)/.state/otel-venv-openlit deploy/otel/requirements-openlit.txt) && \
	$$py deploy/otel/llm_client.py fixtures Tests/Fixtures/otlp --legacy-python $$legacy --anthropic-python $$anthropic --openlit-python $$openlit

clean: stop
	rm -rf .state
