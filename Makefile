# obol: `make run` starts the demo (simulator + gateway, no external
# service); `make test` runs every test (CI runs the same through .ci/run).
GO ?= go
SIM_ADDR ?= 127.0.0.1:9000
# The npm clients the tests drive: each directory's lock file pins them.
NODE_DIRS := gateway/testdata/openai-node gateway/testdata/anthropic-node gateway/testdata/claude-code

.PHONY: run build test test-short node-deps vet fmt-check fuzz bench bench-streams clean image test-image manifests deploy-check

build:
	$(GO) build -o bin/ ./cmd/obol ./loadtest

# The demo's admin token, unless one is set: for the demo only.
DEMO_ADMIN_TOKEN ?= demo-admin-token-not-a-secret

run: build
	@echo "obol demo: simulator on $(SIM_ADDR), gateway on 127.0.0.1:8080 (Ctrl-C stops both)"
	@echo "admin API: OBOL_ADMIN_TOKEN=$${OBOL_ADMIN_TOKEN:-$(DEMO_ADMIN_TOKEN)} bin/obol keys list"
	@bin/loadtest sim -addr $(SIM_ADDR) -tps 40 & sim=$$!; \
	trap 'kill $$sim 2>/dev/null' EXIT INT TERM; \
	OBOL_ADMIN_TOKEN=$${OBOL_ADMIN_TOKEN:-$(DEMO_ADMIN_TOKEN)} bin/obol serve -config configs/demo.yaml

# Each directory is installed from its lock file, and kept while the lock
# file is older than the install (Claude Code is ~390 MB).
node-deps:
	@if command -v npm >/dev/null 2>&1; then \
		for d in $(NODE_DIRS); do \
			[ $$d/node_modules/.package-lock.json -nt $$d/package-lock.json ] || \
			(cd $$d && npm ci --no-audit --no-fund --loglevel=error) || exit 1; \
		done; \
	else echo "npm not found: the npm client tests will be skipped (CI fails them)"; fi

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

test: fmt-check vet node-deps
	$(GO) test -race -count=1 -timeout 8m ./...
	$(MAKE) --no-print-directory deploy-check

# The fast layer: what needs no Redis, PostgreSQL, npm or browser (the
# store helpers and the client tests skip under -short).
test-short: fmt-check vet
	$(GO) test -short -count=1 ./...

# The comparison of issue 8: the same load against the simulator, a bare
# ReverseProxy (the floor), obol embedded and obol with Redis, in one run.
BENCH_DURATION ?= 10s
bench: build
	bin/loadtest compare -obol bin/obol -conns 50 -duration $(BENCH_DURATION)
	bin/loadtest compare -obol bin/obol -conns 1 -duration $(BENCH_DURATION)
	bin/loadtest compare -obol bin/obol -conns 50 -duration $(BENCH_DURATION) -stream -tokens 20
	bin/loadtest compare -obol bin/obol -rate 50 -duration $(BENCH_DURATION) -stream -tokens 20 -tps 20

# 10,000 streams held open through obol: its memory and goroutines idle,
# with every stream open, and after they closed (about 4 minutes).
bench-streams: build
	bin/loadtest streams -obol bin/obol -n 10000 -tokens 30

# Every fuzzer, FUZZTIME each.
FUZZTIME ?= 60s
FUZZERS = ./wire/openai:FuzzDecodeChat ./wire/openai:FuzzSplittersAgree ./wire/openai:FuzzOneMeaningPerField \
	./wire/openai:FuzzBoundHoldsWorstCase ./wire/anthropic:FuzzTranslate ./wire/anthropic:FuzzFromChat ./internal/jsonenc:FuzzAppendString ./internal/chunk:FuzzParse
fuzz:
	@set -e; for f in $(FUZZERS); do \
		echo "fuzzing $${f#*:} in $${f%%:*}"; \
		$(GO) test $${f%%:*} -run '^$$' -fuzz "^$${f#*:}$$" -fuzztime $(FUZZTIME); \
	done

# The Helm chart and the plain manifests: helm lint and template, every
# manifest decoded strictly into the Kubernetes API types (deploy/check, a
# module of its own). helm runs from its Go module at a pinned version.
HELM ?= $(GO) run helm.sh/helm/v3/cmd/helm@v3.21.4
deploy-check:
	cd deploy/check && $(GO) vet ./... && $(GO) test -count=1 ./...

# deploy/kubernetes/obol.yaml: the chart rendered for kubectl users.
manifests:
	$(HELM) template obol deploy/helm/obol --namespace default \
		--set postgresURL=postgres://obol:CHANGE-ME@postgres:5432/obol,redisURL=redis://redis:6379/0 > deploy/kubernetes/obol.yaml

# The container image (Containerfile), with podman or docker, whichever is
# here. The build stage's Go image is GO_IMAGE; where no registry answers,
# one is made from this machine's Go toolchain and CA certificates.
IMAGE ?= obol:latest
GO_IMAGE ?= docker.io/library/golang:1.26-bookworm
ENGINE := $(shell command -v podman 2>/dev/null || command -v docker 2>/dev/null)
image:
	@[ -n "$(ENGINE)" ] || { echo "make image: neither podman nor docker is installed"; exit 1; }
	@go_image=$(GO_IMAGE); \
	if ! $(ENGINE) image exists $$go_image 2>/dev/null && ! $(ENGINE) pull -q $$go_image >/dev/null 2>&1; then \
		echo "make image: $$go_image cannot be pulled; building from this machine's Go ($$(go env GOROOT))"; \
		go_image=localhost/obol-go:host; \
		tar -C / -cf - $$(go env GOROOT | sed 's|^/||') etc/ssl/certs/ca-certificates.crt | \
			$(ENGINE) import --change 'ENV PATH=$(shell go env GOROOT)/bin:/usr/bin:/bin' - $$go_image >/dev/null; \
	fi; \
	$(ENGINE) build $(if $(findstring podman,$(ENGINE)),--runtime runc,) --network host \
		--build-arg GO_IMAGE=$$go_image -t $(IMAGE) -f Containerfile .

# Builds the image and runs it: /healthz, a chat, SIGTERM (TestImage).
test-image: image
	OBOL_TEST_IMAGE=$(IMAGE) $(GO) test ./cmd/obol -run TestImage -count=1 -v

clean:
	rm -rf bin data
