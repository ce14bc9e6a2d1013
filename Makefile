# Agora's entry points. Anything longer than a line lives in scripts/.
.DEFAULT_GOAL := help
SHELL := bash

# A persistent build cache outside the repo, so a fresh clone does not rebuild the world.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/agora/target

.PHONY: help run up down logs status build test bench chaos lint fmt pg-start pg-stop clean images dev-images docker-image kube-up kube-down kube-status k8s chart

help: ## List the targets
	@grep -E '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

run: ## Run the gateway and every service in one process (SQLite under ./data) on :8080
	bash scripts/build-deps.sh
	cargo run --release

up: ## Run the distributed stack: gateway + 4 services, two processes of each (AGORA_UP_REPLICAS=N), on PostgreSQL, Kafka, Consul, Jaeger
	bash scripts/up.sh up

down: ## Stop everything `make up` started (its data stays; `scripts/up.sh purge` deletes it)
	bash scripts/up.sh down

logs: ## Follow the logs of `make up`'s processes and infrastructure
	bash scripts/up.sh logs

status: ## Show what `make up` runs, and where
	bash scripts/up.sh status

build: ## Build every crate and test
	bash scripts/build-deps.sh
	cargo build --workspace --all-targets

test: ## Run the whole suite: fmt, clippy, unit, gRPC, saga and REST tests on SQLite and PostgreSQL
	bash scripts/test.sh

bench: ## Measure: transcoding, gateway vs direct gRPC, saga orders/s, memory and start-up (minutes; prints figures)
	bash scripts/bench.sh

chaos: ## Kill, stop and hang every part of a private distributed stack under load, then reconcile every order (minutes)
	bash scripts/chaos.sh

images: ## Build the container image agora.local/agora:VERSION without Docker (an OCI archive; loaded into the test cluster if it runs)
	bash scripts/image.sh build

dev-images: ## Build the chart's dev component images agora.local/dev/{postgresql,kafka,consul,jaeger} without Docker (loaded into the test cluster if it runs)
	bash scripts/dev-images.sh build

docker-image: ## Build the container image agora.local/agora:VERSION with Docker, from the Dockerfile (needs a Docker engine)
	@command -v docker >/dev/null || { echo "make docker-image needs docker (a Docker engine); none found (make images needs none)" >&2; exit 1; }
	docker build -t agora.local/agora:$$(bash scripts/image.sh tag) .

kube-up: ## Run Agora on a real single-node Kubernetes on this machine: cluster, image, helm install (root; minutes cold)
	bash scripts/kube-up.sh up

kube-down: ## Uninstall, stop the cluster and its infrastructure, restore every host setting
	bash scripts/kube-up.sh down

kube-status: ## Show the test cluster, the release's pods and the infrastructure
	bash scripts/kube-up.sh status

k8s: ## Regenerate the plain manifests in k8s/ from the Helm chart
	bash scripts/chart.sh k8s

chart: ## Check the Helm chart: lint, Kubernetes schemas, switches, k8s/ up to date
	bash scripts/chart.sh check

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
