# usysv — build, test, benchmark, fuzz.
#
# `make test` is the CI entry (.ci/run calls it). `make help` lists targets.
# Everything here needs only Go; lint additionally fetches staticcheck
# through the Go module proxy (go run pkg@version: go.mod is not touched).

GO       ?= go
# Hang guard for a whole package's tests, not a speed budget.
TIMEOUT  ?= 10m
# How much `make fuzz` runs each fuzz target: FUZZTIME for every target
# if set (a count of inputs, 5000x, or a duration, 30s), else the target's
# count in FUZZCOUNTS, about 30 s each on the reference machine (2 cores).
# Counts by default: with a duration, Go 1.26's fuzz coordinator can fail
# a target that found nothing, with a bare "context deadline exceeded" as
# the time runs out (golang/go#75804, fixed in Go 1.27); a count sets no
# deadline.
FUZZTIME ?=
FUZZCOUNTS = FuzzCorruptSem:1500 FuzzCorruptMsg:3000 FuzzMsgModel:9000 FuzzMsgDiff:15000 \
	FuzzSegmentHeader:150000 FuzzSemModel:20000 FuzzSemDiff:10000 FuzzRegistryWire:1500
# Extra flags for `make bench`, e.g. BENCHFLAGS=-quick.
BENCHFLAGS ?=
# staticcheck 2026.1.x, which knows Go 1.26.
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2

# Packages `make test-386` leaves out, as a regular expression over import
# paths (empty: none). A package goes here only if it needs a 64-bit
# platform on purpose, with a comment saying why; a 386 failure is otherwise
# a bug (usually a misaligned 64-bit atomic in a shared layout, which is what
# this target exists to catch).
SKIP_386 ?=

.DEFAULT_GOAL := help
.PHONY: help test vet bench fuzz race test-386 lint chaos

help: ## list the targets
	@echo "usysv make targets:"
	@awk 'BEGIN {FS = ":.*## "} /^[a-z0-9-]+:.*## / {printf "  %-9s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "variables: TIMEOUT=$(TIMEOUT) FUZZTIME=$(FUZZTIME) BENCHFLAGS=$(BENCHFLAGS) SKIP_386=$(SKIP_386)"

test: vet ## go vet, then every test of the module (the CI entry)
	$(GO) test -count=1 -timeout $(TIMEOUT) ./...

vet: ## go vet ./...
	$(GO) vet ./...

bench: ## usysv against the kernel, side by side (go run ./cmd/usysv bench)
	@if [ ! -f cmd/usysv/bench.go ]; then \
		echo "make bench: the 'usysv bench' verb does not exist yet (cmd/usysv/bench.go)"; exit 1; \
	fi
	$(GO) run ./cmd/usysv bench $(BENCHFLAGS)

fuzz: ## run each fuzz target in ./fuzz (FUZZTIME, else its FUZZCOUNTS)
	@targets=$$($(GO) test -list '^Fuzz' ./fuzz | grep '^Fuzz') || { echo "make fuzz: no fuzz targets found"; exit 1; }; \
	for t in $$targets; do \
		n="$(FUZZTIME)"; \
		if [ -z "$$n" ]; then \
			n=$$(for c in $(FUZZCOUNTS); do case $$c in "$$t":*) echo "$${c#*:}x";; esac; done); \
		fi; \
		if [ -z "$$n" ]; then echo "make fuzz: $$t has no count in FUZZCOUNTS (Makefile)"; exit 1; fi; \
		echo "== $$t ($$n)"; \
		$(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $$n ./fuzz || exit 1; \
	done

race: ## every test under the race detector
	$(GO) test -race -count=1 -timeout $(TIMEOUT) ./...

test-386: ## every test built for GOARCH=386: a 64-bit atomic alignment tripwire
	@pkgs=$$($(GO) list ./... | { if [ -n "$(SKIP_386)" ]; then grep -v -E '$(SKIP_386)'; else cat; fi; }); \
	echo GOARCH=386 $(GO) test -count=1 -timeout $(TIMEOUT) '<'$$(echo $$pkgs | wc -w) packages'>'; \
	GOARCH=386 $(GO) test -count=1 -timeout $(TIMEOUT) $$pkgs

lint: ## gofmt check, go vet, staticcheck (not part of make test)
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.git/*')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

chaos: ## kill -9 / SIGSTOP fault injection across processes for DURATION (default 60s), with a report
	$(GO) test ./internal/chaos -run '^TestChaos$$' -count=1 -timeout 0 -v -args -chaos.duration=$(or $(DURATION),60s)
