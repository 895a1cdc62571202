# DeSy's container images, built the way uv's Docker guide shows: the locked dependencies in a
# layer of their own (rebuilt only when uv.lock changes), then the project, non-editable, into a
# virtual environment that the runtime stage copies; every image runs as a non-root user.
#
#   docker build --network host --target agent     -t desy-agent .
#   docker build --network host --target server    -t desy-server .
#   docker build --network host --target dashboard -t desy-dashboard .
#
# BASE is any Debian bookworm with Python 3.11 and venv. Where no image registry is reachable,
# deploy/docker-base.sh builds one with debootstrap (`--build-arg BASE=desy-base:bookworm`).
# Stages come in build order: the legacy builder builds every stage before its target. Each
# stage ends with its large COPY: the legacy builder makes a container of every instruction, and
# on the vfs storage driver each one copies the whole filesystem (a minute for the server's).
# Running the images: docs/deploy.md.
ARG BASE=python:3.11-slim-bookworm

# uv from PyPI (no image registry needed), and the lock. pip and uv trust the system's CA
# store, so a base that trusts a site's TLS-inspecting proxy builds behind it.
# gcc and Python's headers build the agent's native engine (capture_agent/_engine.c).
FROM ${BASE} AS uv
ARG UV_VERSION=0.13.9
RUN apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends gcc libc6-dev python3-dev \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/uv \
    && /opt/uv/bin/pip install --no-cache-dir --quiet --cert /etc/ssl/certs/ca-certificates.crt \
        "uv==${UV_VERSION}"
ENV PATH=/opt/uv/bin:$PATH \
    UV_SYSTEM_CERTS=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1 \
    UV_PYTHON=python3.11 \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app
WORKDIR /src
COPY pyproject.toml uv.lock ./

# What every image runs on.
FROM ${BASE} AS runtime
# Its home holds what a volume keeps (mount one there and it starts owned by the user): the
# agent's logs/, the server's alert store and BentoML state under .local/, MLflow's artifacts.
RUN useradd --system --uid 10001 --user-group --create-home --home-dir /home/desy desy \
    && install -d -o desy -g desy /home/desy/logs /home/desy/.local/share/desy /home/desy/.local/state \
        /home/desy/mlartifacts
ENV PATH=/app/bin:$PATH \
    PYTHONUNBUFFERED=1
WORKDIR /home/desy

# Each environment: one extra's locked dependencies, then the project (.dockerignore lets through
# only what its wheel holds), so that a change of code does not reinstall the dependencies.
FROM uv AS agent-env
RUN uv sync --locked --no-dev --no-install-project --extra agent
COPY . .
RUN uv sync --locked --no-dev --no-editable --extra agent

# The capture agent, without the ML stack. Live capture needs CAP_NET_RAW only, given to its
# Python as a file capability so that it runs as the non-root user (libpcap for --bpf); no
# setuid programs are left, so nothing else can raise privileges:
#   docker run --network host --cap-drop ALL --cap-add NET_RAW desy-agent run --iface eth0 ...
FROM runtime AS agent
RUN apt-get update -qq \
    && apt-get install -y -qq --no-install-recommends libpcap0.8 libcap2-bin \
    && setcap cap_net_raw+ep "$(readlink -f "$(command -v python3.11)")" \
    && apt-get purge -y -qq libcap2-bin \
    && find / -xdev -perm /6000 -type f -exec chmod a-s {} + \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt /var/log/dpkg.log
USER desy
ENTRYPOINT ["desy-agent"]
CMD ["--help"]
COPY --from=agent-env /app /app

FROM uv AS server-env
RUN uv sync --locked --no-dev --no-install-project --extra serve
COPY . .
RUN uv sync --locked --no-dev --no-editable --extra serve

# The model server on DESY_PORT: the champion from MLFLOW_TRACKING_URI, a token (DESY_API_TOKEN) or an agents
# file (--agents-file), one worker per core, alerts in DESY_STORE_URL (default: a SQLite file
# under /home/desy/.local/share/desy); HTTPS with DESY_SSL_CERTFILE and DESY_SSL_KEYFILE.
FROM runtime AS server
USER desy
ENV DESY_PORT=3000
EXPOSE 3000
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 CMD ["python3", "-m", "serving.healthcheck"]
ENTRYPOINT ["desy", "serve", "--host", "0.0.0.0"]
COPY --from=server-env /app /app

FROM uv AS dashboard-env
RUN uv sync --locked --no-dev --no-install-project --extra dashboard
COPY . .
RUN uv sync --locked --no-dev --no-editable --extra dashboard

# The alert dashboard: reads DESY_STORE_URL; DESY_DASHBOARD_TOKEN is required off loopback.
FROM runtime AS dashboard
USER desy
EXPOSE 8080
ENTRYPOINT ["desy", "dashboard", "--host", "0.0.0.0", "--port", "8080"]
COPY --from=dashboard-env /app /app
