# DeSy developer commands. `make demo` shows DeSy working; `make test` runs the test suite.
SHELL := /bin/bash
# pip installs uv into this Python's scripts directory: make sure it is on PATH.
export PATH := $(shell python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$(PATH)
UV ?= uv
PCAP ?=
IFACE ?=

.PHONY: setup repro lab test bench mlflow-ui demo cluster-demo serve clean

setup:  ## install uv if missing, a C compiler (the agent's engine), the locked environment with every extra, and NSL-KDD
	@command -v $(UV) >/dev/null 2>&1 || python3 -m pip install --quiet uv || python3 -m pip install --quiet --break-system-packages uv
	@command -v gcc >/dev/null 2>&1 || { echo "installing gcc to build the agent's native engine" >&2; \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends gcc libc6-dev python3-dev; }
	$(UV) sync --frozen --all-extras
	$(UV) run dvc pull --quiet data.dvc || { $(UV) run python -c "from pipelines.dataset import DATA_HELP; print(DATA_HELP.format(dir='data/nsl-kdd'))"; exit 1; }

repro: setup  ## run the training pipeline (validate, prepare, train, evaluate, register)
	$(UV) run dvc repro

lab: setup  ## regenerate lab/flows.csv with real servers, clients and attack tools (root; about an hour)
	apt-get install -y -qq --no-install-recommends $$(cat lab/apt-packages.txt)
	$(UV) run python -m lab run
	$(UV) run dvc commit -f lab

test: setup  ## lint (ruff format and check), then the whole test suite
	$(UV) run ruff format --check .
	$(UV) run ruff check .
	$(UV) run pytest

demo: setup  ## train if needed, serve the champion, run the agent on a capture, summarise, open the dashboard (PCAP=file or IFACE=eth0)
	$(UV) run desy demo $(if $(PCAP),--pcap $(PCAP)) $(if $(IFACE),--iface $(IFACE))
	@echo "DeSy dashboard with the demo's alerts: http://127.0.0.1:8080 (Ctrl-C to stop)"
	$(UV) run desy dashboard --store-url sqlite:///$(CURDIR)/logs/demo/alerts.db

cluster-demo: setup  ## DeSy on 6 hosts in network namespaces: 3 live agents, 2 replicas behind nginx (TLS), PostgreSQL, MLflow (root)
	apt-get update -qq && apt-get install -y -qq --no-install-recommends nginx nmap postgresql curl openssl
	$(UV) run python -m deploy.cluster

mlflow-ui:  ## browse runs and registered models at http://127.0.0.1:5000
	$(UV) run mlflow ui --backend-store-uri "$$($(UV) run python -m desy.registry)" --host 127.0.0.1 --port 5000

clean:  ## remove pipeline outputs (not the MLflow store)
	rm -rf artifacts reports
