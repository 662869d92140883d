# elt — developer tasks. `make help` lists them.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

CARGO        ?= cargo
SERVICES_DIR ?= .elt-services
N            ?= 1000000

.PHONY: help build release services services-stop demo test lint fmt bench clean
.PHONY: man completions install uninstall deb
.PHONY: test-faults test-load

# Installation layout (`make install PREFIX=/usr DESTDIR=/tmp/stage`)
PREFIX      ?= /usr/local
DESTDIR     ?=
BINDIR      ?= $(PREFIX)/bin
MANDIR      ?= $(PREFIX)/share/man
DOCDIR      ?= $(PREFIX)/share/doc/elt
SYSCONFDIR  ?= /etc
SYSTEMDDIR  ?= $(PREFIX)/lib/systemd/system
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR  ?= $(PREFIX)/share/zsh/site-functions
FISHCOMPDIR ?= $(PREFIX)/share/fish/vendor_completions.d
TARGET_DIR  ?= $(or $(CARGO_TARGET_DIR),target)
BIN         ?= $(TARGET_DIR)/release/elt

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

test-faults: ## fault suite (kill -9, Redis/M restarts, ...) + many-runners load test; prints the fault table
	@scripts/faults.sh all

test-load: ## only the load test: 3 runners x 30 jobs x 10 cycles under pgbench
	@scripts/faults.sh load

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

man: build ## man pages generated from the command line definitions into target/man/
	@mkdir -p $(TARGET_DIR)/man
	$(BIN) man --dir $(TARGET_DIR)/man
	@echo "man pages in $(TARGET_DIR)/man (try: man -l $(TARGET_DIR)/man/elt.1)"

completions: build ## shell completions into target/completions/
	@mkdir -p $(TARGET_DIR)/completions
	$(BIN) completions bash > $(TARGET_DIR)/completions/elt
	$(BIN) completions zsh > $(TARGET_DIR)/completions/_elt
	$(BIN) completions fish > $(TARGET_DIR)/completions/elt.fish

# Does not build (so `sudo make install` needs no Rust toolchain for root) unless the binary
# is missing: run `make build` first after changing the sources.
install: ## install binary, man pages, completions, systemd units, examples, /etc/elt/elt.env (PREFIX, DESTDIR)
	@[ -x "$(BIN)" ] || $(CARGO) build --release
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(DOCDIR) \
		$(DESTDIR)$(SYSTEMDDIR) $(DESTDIR)$(BASHCOMPDIR) $(DESTDIR)$(ZSHCOMPDIR) \
		$(DESTDIR)$(FISHCOMPDIR)
	install -m 0755 $(BIN) $(DESTDIR)$(BINDIR)/elt
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
		$(BIN) man --dir "$$tmp" && \
		install -m 0644 "$$tmp"/*.1 $(DESTDIR)$(MANDIR)/man1/ && \
		$(BIN) completions bash > "$$tmp/elt.bash" && \
		$(BIN) completions zsh > "$$tmp/_elt" && \
		$(BIN) completions fish > "$$tmp/elt.fish" && \
		install -m 0644 "$$tmp/elt.bash" $(DESTDIR)$(BASHCOMPDIR)/elt && \
		install -m 0644 "$$tmp/_elt" $(DESTDIR)$(ZSHCOMPDIR)/_elt && \
		install -m 0644 "$$tmp/elt.fish" $(DESTDIR)$(FISHCOMPDIR)/elt.fish
	@# the units and the crontab name the binary by its installed path
	for f in elt.service elt.timer; do \
		sed 's|/usr/local/bin/elt|$(BINDIR)/elt|g' packaging/systemd/$$f > $(DESTDIR)$(SYSTEMDDIR)/$$f; \
		chmod 0644 $(DESTDIR)$(SYSTEMDDIR)/$$f; \
	done
	sed 's|/usr/local/bin/elt|$(BINDIR)/elt|g' crontab.example > $(DESTDIR)$(DOCDIR)/crontab.example
	chmod 0644 $(DESTDIR)$(DOCDIR)/crontab.example
	install -m 0644 README.md packaging/elt.env.example $(DESTDIR)$(DOCDIR)/
	@# the environment file holds passwords: 0600, and never overwritten
	install -d -m 0755 $(DESTDIR)$(SYSCONFDIR)/elt
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/elt/elt.env ]; then \
		echo "kept the existing $(DESTDIR)$(SYSCONFDIR)/elt/elt.env"; \
	else \
		install -m 0600 packaging/elt.env.example $(DESTDIR)$(SYSCONFDIR)/elt/elt.env; \
		echo "installed $(DESTDIR)$(SYSCONFDIR)/elt/elt.env: fill in the URLs"; \
	fi

uninstall: ## remove what `make install` placed, except /etc/elt/elt.env
	rm -f $(DESTDIR)$(BINDIR)/elt $(DESTDIR)$(MANDIR)/man1/elt.1 $(DESTDIR)$(MANDIR)/man1/elt-*.1 \
		$(DESTDIR)$(SYSTEMDDIR)/elt.service $(DESTDIR)$(SYSTEMDDIR)/elt.timer \
		$(DESTDIR)$(BASHCOMPDIR)/elt $(DESTDIR)$(ZSHCOMPDIR)/_elt $(DESTDIR)$(FISHCOMPDIR)/elt.fish
	rm -rf $(DESTDIR)$(DOCDIR)

deb: build ## Debian package with cargo-deb (installed from crates.io if missing): target/debian/*.deb
	@command -v cargo-deb >/dev/null 2>&1 || $(CARGO) install cargo-deb --locked
	rm -rf target/deb-root
	$(MAKE) --no-print-directory install DESTDIR=$(CURDIR)/target/deb-root PREFIX=/usr \
		ZSHCOMPDIR=/usr/share/zsh/vendor-completions BIN=$(BIN)
	@# debug line tables (profile.release) go to a separate elt-dbgsym package: a small binary
	$(CARGO) deb --no-build --dbgsym
