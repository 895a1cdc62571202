"""DeSy deployed across hosts, in network namespaces on one machine (root).

Three monitored hosts (web1-3, nginx each) run an agent capturing their live interface, each with
its own token; the server host (ctl) runs the MLflow tracking server, two model-server replicas
(HTTPS, the alert store on PostgreSQL) and nginx balancing them over HTTPS with a CA made here; a
client (cli) browses the web hosts and an attacker (att) scans one. Used by
tests/serving/test_cluster.py and `make cluster-demo` (`python -m deploy.cluster`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil

from lab.network import Host, Lab, run
from serving import agent_tokens

SUBNET = "10.204.0"
CTL, CLIENT, ATTACKER = (
    Host("ctl", "server", f"{SUBNET}.10"),
    Host("cli", "client", f"{SUBNET}.21"),
    Host("att", "attacker", f"{SUBNET}.66"),
)
WEBS = tuple(Host(f"web{i}", "server", f"{SUBNET}.{10 + i}") for i in (1, 2, 3))
HOSTS = (CTL, *WEBS, CLIENT, ATTACKER)
#: This machine's own address on the cluster's switch (it registers models in MLflow).
UPLINK = f"{SUBNET}.1"
MLFLOW_PORT, BALANCER_PORT, REPLICA_PORTS = 5000, 3000, (3001, 3002)
MLFLOW_URI = f"http://{CTL.ip}:{MLFLOW_PORT}"
SERVER_URL = f"https://{CTL.ip}:{BALANCER_PORT}"
#: Name in the servers' certificate that nginx checks on its way to a replica.
SERVER_NAME = "desy-server"
PAGES = {"index.html": 2_300, "big.html": 180_000}


def certificates(directory: Path, names: tuple[str, ...]) -> tuple[Path, Path, Path]:
    """A CA, and a certificate for these names (DNS names or IP addresses) that it signs:
    (ca.pem, server.pem, server.key)."""
    ca, ca_key = directory / "ca.pem", directory / "ca.key"
    cert, key, request = directory / "server.pem", directory / "server.key", directory / "csr"
    san = ",".join(f"{'IP' if n[0].isdigit() else 'DNS'}:{n}" for n in names)
    (directory / "san.ext").write_text(f"subjectAltName={san}\n")
    req = ["openssl", "req", "-newkey", "rsa:2048", "-nodes"]
    run(*req, "-x509", "-days", "1", "-subj", "/CN=DeSy CA", "-keyout", str(ca_key), "-out", str(ca), timeout=60)  # fmt: skip
    run(*req, "-subj", f"/CN={names[0]}", "-keyout", str(key), "-out", str(request), timeout=60)
    run(
        "openssl", "x509", "-req", "-in", str(request), "-CA", str(ca), "-CAkey", str(ca_key),
        "-CAcreateserial", "-days", "1", "-extfile", str(directory / "san.ext"), "-out", str(cert),
        timeout=60,
    )  # fmt: skip
    return ca, cert, key


def wait_for(check, what: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    """Poll check() until it is true; fail after timeout or when proc exits."""
    deadline = time.monotonic() + timeout
    while not check():
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not ready after {timeout:.0f} s")
        time.sleep(0.5)


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


class Cluster:
    """The deployment; start() brings it up in order, stop() takes it down."""

    def __init__(self, workdir: Path, store_url: str, mlflow_backend: str) -> None:
        self.dir, self.store_url, self.mlflow_backend = workdir, store_url, mlflow_backend
        self.lab = Lab(tag=f"c{os.getpid() % 10000}", hosts=HOSTS, uplink=UPLINK)
        self.procs: dict[str, subprocess.Popen] = {}
        self.tokens: dict[str, str] = {}
        self.www = Path(tempfile.mkdtemp(prefix="desy-cluster-www-"))
        self.www.chmod(0o755)

    # --- bring-up ---------------------------------------------------------------------------------
    def start(self) -> Cluster:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.lab.up()
        self.ca, self.cert, self.key = certificates(self.dir, (CTL.ip, SERVER_NAME, "127.0.0.1"))
        for web in WEBS:
            self.tokens[web.name] = agent_tokens.add(self.dir / "agents.json", web.name)
            self._web(web)
        self._mlflow()
        self._balancer()
        return self

    def spawn(self, name: str, host: Host, argv: list[str], env: dict | None = None) -> None:
        """Start argv inside host in a session of its own, output to <name>.log."""
        with (self.dir / f"{name}.log").open("ab") as log:
            self.procs[name] = subprocess.Popen(
                self.lab.cmd(host, *argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.dir,
                start_new_session=True,
            )

    def _web(self, host: Host) -> None:
        # nginx's workers run as www-data: the pages live where it can read them
        root = self.www / host.name
        root.mkdir(mode=0o755)
        (self.dir / host.name).mkdir()
        for page, size in PAGES.items():
            (root / page).write_bytes(os.urandom(size // 2).hex().encode()[:size])
        conf = self.dir / host.name / "nginx.conf"
        conf.write_text(
            f"daemon off; worker_processes 1; pid {conf.parent}/nginx.pid;\n"
            f"error_log {conf.parent}/error.log;\nevents {{}}\n"
            f"http {{ access_log off; server {{ listen {host.ip}:80; root {root}; }} }}\n"
        )
        self.spawn(f"nginx-{host.name}", host, ["nginx", "-c", str(conf)])

    def _mlflow(self) -> None:
        argv = [
            sys.executable, "-m", "mlflow", "server", "--host", CTL.ip, "--port", str(MLFLOW_PORT),
            "--backend-store-uri", self.mlflow_backend, "--serve-artifacts",
            "--artifacts-destination", str(self.dir / "mlartifacts"), "--workers", "1",
        ]  # fmt: skip
        self.spawn("mlflow", CTL, argv)
        wait_for(lambda: answers(f"{MLFLOW_URI}/health"), "MLflow", 120, self.procs["mlflow"])

    def _balancer(self) -> None:
        upstreams = "".join(
            f"server 127.0.0.1:{port} max_fails=1 fail_timeout=3s; " for port in REPLICA_PORTS
        )
        conf = self.dir / "balancer.conf"
        conf.write_text(
            f"daemon off; worker_processes 1; pid {self.dir}/balancer.pid;\n"
            f"error_log {self.dir}/balancer-error.log;\nevents {{}}\nhttp {{\n"
            f"  access_log {self.dir}/balancer-access.log;\n"
            f"  upstream desy {{ {upstreams}}}\n"
            f"  server {{\n    listen {CTL.ip}:{BALANCER_PORT} ssl;\n"
            f"    ssl_certificate {self.cert}; ssl_certificate_key {self.key};\n"
            "    client_max_body_size 16m;\n"
            "    location / {\n      proxy_pass https://desy;\n"
            f"      proxy_ssl_verify on; proxy_ssl_trusted_certificate {self.ca};\n"
            f"      proxy_ssl_name {SERVER_NAME}; proxy_ssl_server_name on;\n"
            "      proxy_next_upstream error timeout http_502 http_503;\n"
            "    }\n  }\n}\n"
        )
        self.spawn("balancer", CTL, ["nginx", "-c", str(conf)])

    # --- model-server replicas ----------------------------------------------------------------
    def start_replica(self, index: int) -> None:
        """Replica index (0 or 1) on the server host, loading the champion from MLflow."""
        argv = [
            sys.executable, "-m", "commands", "serve", "--host", "127.0.0.1",
            "--port", str(REPLICA_PORTS[index]), "--workers", "1",
            "--agents-file", str(self.dir / "agents.json"), "--store-url", self.store_url,
            "--ssl-certfile", str(self.cert), "--ssl-keyfile", str(self.key),
        ]  # fmt: skip
        env = dict(os.environ, MLFLOW_TRACKING_URI=MLFLOW_URI, XDG_STATE_HOME=str(self.dir))
        env.pop("DESY_API_TOKEN", None)
        self.spawn(f"replica-{index}", CTL, argv, env)

    def wait_replica(self, index: int, timeout: float = 300) -> None:
        url = f"https://127.0.0.1:{REPLICA_PORTS[index]}/readyz"
        argv = self.lab.cmd(CTL, "curl", "-sf", "-o", "/dev/null", "--cacert", str(self.ca), url)

        def ready() -> bool:  # a probe that times out (a loaded machine) is a "not yet"
            try:
                return subprocess.run(argv, check=False, timeout=10).returncode == 0
            except subprocess.TimeoutExpired:
                return False

        wait_for(
            ready,
            f"replica {index}",
            timeout,
            self.procs[f"replica-{index}"],
        )

    def kill_replica(self, index: int, sig: int = signal.SIGKILL) -> None:
        self._signal(f"replica-{index}", sig)

    # --- agents and traffic ---------------------------------------------------------------------
    def start_agents(self) -> None:
        """An agent on every web host, capturing its eth0 live (not its own uploads)."""
        for web in WEBS:
            token = self.dir / web.name / "token"
            token.write_text(self.tokens[web.name])
            token.chmod(0o600)
            argv = [
                sys.executable, "-m", "capture_agent.cli", "run", "--iface", "eth0",
                "--server", SERVER_URL, "--ca-cert", str(self.ca), "--token-file", str(token),
                "--bpf", f"not (host {CTL.ip} and port {BALANCER_PORT})",
                "--log-dir", str(self.dir / web.name / "logs"), "--batch-interval", "0.5",
            ]  # fmt: skip
            self.spawn(f"agent-{web.name}", web, argv)
        time.sleep(3)  # the captures are open

    def browse(self, rounds: int) -> None:
        """The client fetches every page of every web host `rounds` times, and pings them."""
        urls = [f"http://{web.ip}/{page}" for _ in range(rounds) for web in WEBS for page in PAGES]
        for start in range(0, len(urls), 6):  # a few pages per connection, like a browser
            run(*self.lab.cmd(CLIENT, "curl", "-sf", "-o", "/dev/null", *urls[start : start + 6]))
        for web in WEBS:
            run(*self.lab.cmd(CLIENT, "ping", "-c", "2", "-i", "0.2", web.ip))

    def scan(self, target: Host, ports: str = "1-300") -> None:
        """A TCP SYN scan of target by the attacker."""
        run(*self.lab.cmd(ATTACKER, "nmap", "-sS", "-n", "-Pn", "-T4", "-p", ports, target.ip), timeout=120)  # fmt: skip

    def stop_agents(self, timeout: float = 120) -> dict[str, int]:
        """Stop every agent (it sends what it holds first); their exit codes."""
        for web in WEBS:
            self._signal(f"agent-{web.name}", signal.SIGTERM, wait=False)
        return {web.name: self.procs.pop(f"agent-{web.name}").wait(timeout) for web in WEBS}

    def logs(self, web: Host) -> Path:
        return self.dir / web.name / "logs"

    # --- take-down --------------------------------------------------------------------------------
    def _signal(self, name: str, sig: int, wait: bool = True) -> None:
        """Signal a process and all its descendants (a server's workers leave its session); wait
        until they end (SIGKILL after 60 s)."""
        proc = self.procs.get(name)
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(psutil.NoSuchProcess):
            tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
            for member in tree:
                with contextlib.suppress(psutil.NoSuchProcess):
                    member.send_signal(sig)
            if wait:
                _, alive = psutil.wait_procs(tree, timeout=60)
                for member in alive:
                    with contextlib.suppress(psutil.NoSuchProcess):
                        member.kill()
                psutil.wait_procs(alive, timeout=30)
                proc.wait(30)

    def stop(self) -> None:
        try:
            for name in list(self.procs):
                self._signal(name, signal.SIGTERM, wait=False)
            for name in list(self.procs):
                self._signal(name, signal.SIGTERM)
        finally:
            self.lab.down()  # also kills whatever still runs in the hosts
            shutil.rmtree(self.www, ignore_errors=True)


@contextmanager
def running(workdir: Path, store_url: str, mlflow_backend: str) -> Iterator[Cluster]:
    cluster = Cluster(workdir, store_url, mlflow_backend)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


def main() -> None:
    """`make cluster-demo`: the project's champion, served by two replicas to three live agents
    while a client browses and an attacker scans; prints what each agent and the store saw."""
    from sqlalchemy import func, select

    from alerts.database import engine_for
    from alerts.tables import alerts
    from benchmarks.postgres import temporary_postgres
    from commands.project import PROJECT

    if os.geteuid() != 0 or shutil.which("nginx") is None or shutil.which("nmap") is None:
        sys.exit("cluster-demo needs root, nginx and nmap (apt-get install nginx nmap)")
    registry = f"sqlite:///{PROJECT}/mlruns/mlflow.db"
    workdir = Path(tempfile.mkdtemp(prefix="desy-cluster-"))
    with temporary_postgres() as store, running(workdir, store, registry) as cluster:
        print(f"hosts up; MLflow at {MLFLOW_URI} over {registry}; logs in {workdir}", flush=True)
        for index in (0, 1):
            cluster.start_replica(index)
            cluster.wait_replica(index)
        print(
            f"2 replicas behind nginx at {SERVER_URL}; agents on {', '.join(w.name for w in WEBS)}"
        )
        cluster.start_agents()
        cluster.browse(rounds=3)
        print(f"cli browsed every web host; att scans {WEBS[1].name} ...", flush=True)
        cluster.scan(WEBS[1])
        cluster.browse(rounds=1)
        time.sleep(2)
        cluster.stop_agents()
        for web in WEBS:
            summary = json.loads((cluster.logs(web) / "summary.json").read_text())
            print(
                f"  agent {web.name}: {summary['connections_emitted']} connections, "
                f"{summary['flows_classified']} verdicts, {summary['flows_lost']} lost"
            )
        engine = engine_for(store)
        query = select(alerts.c.agent_id, alerts.c.category, func.count()).group_by(
            alerts.c.agent_id, alerts.c.category
        )
        with engine.connect() as connection:
            for agent_id, category, count in connection.execute(query.order_by(alerts.c.agent_id)):
                print(f"  store: {count} {category} alerts from agent {agent_id}")
        engine.dispose()


if __name__ == "__main__":
    main()
