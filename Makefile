# elt — developer tasks. `make help` lists them.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

CARGO        ?= cargo
SERVICES_DIR ?= .elt-services
N            ?= 1000000

.PHONY: help build release services services-stop demo test lint fmt bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

build: ## cargo build --release (binary: target/release/elt)
	$(CARGO) build --release

release: build

services: ## start (or reuse) throwaway PostgreSQL + Redis in .elt-services/
	@scripts/services.sh start $(SERVICES_DIR)

services-stop: ## stop the services of `make services` / `make demo`
	@scripts/services.sh stop $(SERVICES_DIR)

demo: build ## load a demo shop into M, run the jobs in jobs/, change M, run again
	@scripts/demo.sh

test: ## fmt check, clippy, cargo test (starts its own services unless ELT_TEST_PG_URL/ELT_TEST_REDIS_URL are set)
	@scripts/test.sh

lint: ## cargo fmt --check and clippy -D warnings
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt: ## cargo fmt
	$(CARGO) fmt --all

bench: build ## run bench/run.sh with N rows (default N=1000000)
	@if [ -x bench/run.sh ]; then N=$(N) bench/run.sh; \
	elif [ -f bench/run.sh ]; then N=$(N) bash bench/run.sh; \
	else echo "bench: bench/run.sh does not exist yet"; fi

clean: ## stop the services and remove build output, .elt-services/ and logs/
	-@scripts/services.sh stop $(SERVICES_DIR)
	$(CARGO) clean
	rm -rf $(SERVICES_DIR) logs
