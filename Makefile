# Agora's entry points. Anything longer than a line lives in scripts/.
.DEFAULT_GOAL := help
SHELL := bash

# A persistent build cache outside the repo, so a fresh clone does not rebuild the world.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/agora/target

.PHONY: help run build test lint fmt pg-start pg-stop clean

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

run: ## Run the gateway and every service in one process (SQLite under ./data) on :8080
	cargo run --release

build: ## Build every crate and test
	cargo build --workspace --all-targets

test: ## Run the whole suite: fmt, clippy, unit, gRPC, saga and REST tests on SQLite and PostgreSQL
	bash scripts/test.sh

lint: ## Check formatting and clippy
	cargo fmt --all -- --check && cargo clippy --workspace --all-targets -- -D warnings

fmt: ## Format the code
	cargo fmt --all

pg-start: ## Start the private test PostgreSQL (installing it if needed)
	bash scripts/postgres.sh start

pg-stop: ## Stop the private test PostgreSQL
	bash scripts/postgres.sh stop

clean: ## Remove ./data (the embedded databases); the build cache stays
	rm -rf data
