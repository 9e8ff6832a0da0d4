# The one task runner: humans and CI (.ci/run) use the same targets.
# `make help` lists them.

CARGO ?= cargo
BIN := target/debug/mindmesh

.PHONY: help run test lint fmt bench services build k8s-validate

help: ## List the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  make %-13s %s\n", $$1, $$2}'

build: ## Build the whole workspace (debug)
	$(CARGO) build --workspace --locked

run: build ## Build and start the embedded server (all five services, SQLite, embedded bus)
	$(BIN) serve

services: ## Install what the tests need and start PostgreSQL and NATS if they are down
	deploy/dev/ensure-services.sh

lint: ## Formatting, clippy with warnings as errors, and the layout rules (SQL only in store/)
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	deploy/dev/layout-check.sh

fmt: ## Format the code
	$(CARGO) fmt --all

test: services lint ## Set up, lint, and run every test against real PostgreSQL and NATS
	$(CARGO) nextest run --workspace --locked

bench: services ## Run the benchmarks (release build); prints each figure beside its baseline
	$(CARGO) bench --locked -p mindmesh-permissions --features bench-compare --bench permissions
	$(CARGO) bench --locked -p mindmesh --bench permissions_grpc
	$(CARGO) bench --locked -p mindmesh --bench storage
	$(CARGO) bench --locked -p mindmesh --bench ingest
	$(CARGO) bench --locked -p mindmesh --bench foundation
	$(CARGO) bench --locked -p mindmesh --bench cascade
	$(CARGO) bench --locked -p mindmesh --bench dsar_export

k8s-validate: ## Render the kustomize overlays and check the manifests parse
	deploy/dev/k8s-validate.sh
