"""The lab's scenarios: what normal users and attackers do, each run's parameters drawn from a seed.

A scenario is a family (normal, probe, dos, r2l, mixed), an NSL-KDD label for its attack
connections (the label's category is the verdict DeSy must give) and a function that runs real
clients and tools in the lab's hosts. Mixed scenarios run an attack while normal clients keep
using the same server.
"""

from __future__ import annotations

import random
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from lab.network import ATTACKER, BY_NAME, CLIENTS, SERVER, SUBNET4, Host, Lab
from lab.servers import API_SIZES, PAGE_SIZES, PASSWORD, USER

WEB2 = BY_NAME["web2"]
SSH_OPTS = (
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "LogLevel=ERROR",
)
#: curl fetching a URL and discarding the body, quietly.
QUIET_CURL = ("curl", "-s", "-o", "/dev/null")
WRONG_PASSWORDS = (
    "123456",
    "password",
    "qwerty",
    "letmein",
    "admin",
    "welcome",
    "monkey",
    "dragon",
    "alice1",
    "Summer2026",
    "passw0rd",
    "iloveyou",
    "trustno1",
    "secret",
    "football",
    "abc123",
    "master",
    "sunshine",
    "shadow",
    "princess",
    "Tr0ub4dor",
    "changeme",
    "root",
    "toor",
    "test123",
)


class Run:
    """One scenario run: the lab, its random source and the commands it ran (argv lists)."""

    def __init__(self, lab: Lab, rng: random.Random, workdir) -> None:
        self.lab, self.rng, self.dir = lab, rng, workdir
        self.commands: list[str] = []
        self.failures = 0
        self._lock = threading.Lock()

    def sh(self, host: Host, argv: list[str], timeout: float = 30) -> int:
        """Run argv inside host and wait; a client's failure is normal life, so it is only counted."""
        with self._lock:
            self.commands.append(f"{host.name}: {' '.join(argv)}")
        try:
            done = subprocess.run(
                self.lab.cmd(host, *argv),
                capture_output=True,
                text=True,
                timeout=timeout,
                cwd=self.dir,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return -1
        return done.returncode

    def for_seconds(self, host: Host, argv: list[str], seconds: float) -> None:
        """Run a tool for `seconds` at most (a flood runs until stopped)."""
        with self._lock:
            self.commands.append(f"{host.name}: timeout {seconds:.1f} {' '.join(argv)}")
        subprocess.run(
            self.lab.cmd(host, "timeout", "-s", "INT", f"{seconds:.1f}", *argv),
            capture_output=True,
            timeout=seconds + 30,
            cwd=self.dir,
            check=False,
        )  # hydra leaves hydra.restore in its cwd

    def wordlist(self, size: int, include_right: bool) -> str:
        """A password list of `size` wrong guesses (and the right one last if include_right):
        common passwords, then their variants with digits appended."""
        words = self.rng.sample(WRONG_PASSWORDS, min(size, len(WRONG_PASSWORDS)))
        while len(words) < size:
            words.append(f"{self.rng.choice(WRONG_PASSWORDS)}{self.rng.randrange(1000)}")
        path = self.dir / f"words-{self.rng.randrange(10**6)}.txt"
        path.write_text("\n".join(words + ([PASSWORD] if include_right else [])) + "\n")
        return str(path)


# --- normal users -------------------------------------------------------------------------------


def _target(run: Run, v6_share: float = 0.3) -> tuple[Host, str]:
    """A server and how to write its address in a URL (IPv6 for a share of sessions)."""
    host = SERVER if run.rng.random() < 0.75 else WEB2
    return host, (f"[{host.ip6}]" if run.rng.random() < v6_share else host.ip)


def web(run: Run, client: Host) -> None:
    """A user or a program on the web: pages with curl, the front page and its assets with wget,
    an API with Python, or monitoring (HEAD, conditional GET, health checks, an old link)."""
    _, addr = _target(run)
    base = f"{run.rng.choice(('http', 'https'))}://{addr}"
    kind = run.rng.choices(("pages", "front", "api", "check"), (0.45, 0.2, 0.2, 0.15))[0]
    if kind == "pages":
        urls = [
            f"{base}/page-{run.rng.choice(PAGE_SIZES)}.html" for _ in range(run.rng.randint(1, 5))
        ]
        if run.rng.random() < 0.1:
            urls.append(f"{base}/missing-{run.rng.randrange(100)}.html")
        run.sh(client, ["curl", "-sk", "-o", "/dev/null", "--max-time", "20", *urls])
    elif kind == "front":
        run.sh(
            client,
            [
                "wget",
                "-q",
                "-p",
                "--delete-after",
                "--no-check-certificate",
                "--timeout=20",
                "-P",
                str(run.dir / "wget"),
                f"{base}/",
            ],
        )
    elif (
        kind == "api"
    ):  # urllib closes each connection: one small request and answer per connection
        urls = [
            f"{base}/api/items-{run.rng.choice(API_SIZES)}.json"
            for _ in range(run.rng.randint(1, 4))
        ]
        code = (
            "import ssl, sys, urllib.request\nctx = ssl._create_unverified_context()\n"
            "for url in sys.argv[1:]: urllib.request.urlopen(url, timeout=10, context=ctx).read()"
        )
        run.sh(client, ["python3", "-c", code, *urls])
    else:
        check = run.rng.choice(
            (
                ["-I", f"{base}/"],
                ["-z", "Jan 1 2026", f"{base}/page-2300.html"],
                ["--http1.0", f"{base}/health"],
                [f"{base}/old/page.html"],
            )
        )
        run.sh(client, ["curl", "-sk", "-o", "/dev/null", "--max-time", "10", *check])


def web_login(run: Run, client: Host) -> None:
    """A user logs in to a page behind basic auth; a quarter mistype first."""
    passwords = [PASSWORD]
    if run.rng.random() < 0.25:
        passwords.insert(0, run.rng.choice(WRONG_PASSWORDS))
    for password in passwords:
        run.sh(client, [*QUIET_CURL, "-u", f"{USER}:{password}", f"http://{SERVER.ip}/admin/"])


def dns(run: Run, client: Host) -> None:
    for _ in range(run.rng.randint(1, 3)):
        name = run.rng.choice(("www", "mail", "ftp", "intranet", "srv", "web2", "nosuchhost"))
        qtype = run.rng.choice(("A", "A", "AAAA", "MX"))
        server = SERVER.ip6 if run.rng.random() < 0.2 else SERVER.ip
        run.sh(client, ["dig", "+tries=1", "+time=2", f"@{server}", f"{name}.lab.test", qtype])


def ping(run: Run, client: Host) -> None:
    host, _ = _target(run)
    six = run.rng.random() < 0.3
    run.sh(
        client,
        [
            "ping",
            "-6" if six else "-4",
            "-c",
            str(run.rng.randint(1, 4)),
            "-i",
            "0.3",
            "-W",
            "1",
            host.ip6 if six else host.ip,
        ],
    )


def ssh(run: Run, client: Host) -> None:
    command = run.rng.choice(
        ("ls -l files", "uptime; df -h", "cat files/report-900.txt", "ps aux | head -20")
    )
    argv = ["sshpass", "-p", PASSWORD, "ssh", *SSH_OPTS, f"{USER}@{SERVER.ip}", command]
    if run.rng.random() < 0.3:
        argv = [
            "sshpass",
            "-p",
            PASSWORD,
            "scp",
            *SSH_OPTS,
            f"{USER}@{SERVER.ip}:files/report-14000.txt",
            "/dev/null",
        ]
    run.sh(client, argv)


def ftp(run: Run, client: Host) -> None:
    mistyped = run.rng.random() < 0.4
    path = run.rng.choice(
        ("files/", "files/report-900.txt", "files/report-14000.txt", "files/report-260000.txt")
    )
    if mistyped:  # a user mistypes, then logs in with the right password
        run.sh(
            client, [*QUIET_CURL, f"ftp://{USER}:{run.rng.choice(WRONG_PASSWORDS)}@{SERVER.ip}/"]
        )
    run.sh(
        client,
        [
            *QUIET_CURL,
            *(["--ftp-port", "-"] if run.rng.random() < 0.2 else []),
            f"ftp://{USER}:{PASSWORD}@{SERVER.ip}/{path}",
        ],
    )


def mail(run: Run, client: Host) -> None:
    """A mail client fetches mail; a quarter of the time the user mistypes first."""
    proto = run.rng.choice(("pop3", "imap"))
    path = (
        run.rng.choice(("/", "/1"))
        if proto == "pop3"
        else run.rng.choice(("/INBOX", "/INBOX;UID=1"))
    )
    passwords = [PASSWORD]
    if run.rng.random() < 0.25:
        passwords.insert(0, run.rng.choice(WRONG_PASSWORDS))
    for password in passwords:
        run.sh(client, [*QUIET_CURL, f"{proto}://{USER}:{password}@{SERVER.ip}{path}"])


def ntp(run: Run, client: Host) -> None:
    run.sh(client, ["ntpdate", "-q", SERVER.ip])


def telnet(run: Run, client: Host) -> None:
    script = f"sleep 1; echo {USER}; sleep 1; echo '{PASSWORD}'; sleep 1; echo 'ls; exit'; sleep 1"
    run.sh(client, ["bash", "-c", f"({script}) | telnet {SERVER.ip}"])


def rejoin(run: Run, client: Host) -> None:
    """The client's link goes down and up (a laptop waking, a VM restarting): IPv6 duplicate
    address detection, router solicitation and multicast listener reports, as hosts send them."""
    script = (
        "sysctl -qw net.ipv6.conf.eth0.keep_addr_on_down=1; ip link set eth0 down; "
        f"sleep {run.rng.uniform(0.2, 1.0):.1f}; ip link set eth0 up; sleep 2"
    )
    run.sh(client, ["bash", "-c", script])


#: What users do, with how often they do it.
ACTIVITIES: tuple[tuple[Callable[[Run, Host], None], float], ...] = (
    (web, 0.32),
    (dns, 0.18),
    (ping, 0.08),
    (ssh, 0.1),
    (ftp, 0.1),
    (mail, 0.1),
    (ntp, 0.05),
    (web_login, 0.04),
    (telnet, 0.03),
    (rejoin, 0.02),
)


def users(
    run: Run, seconds: float, clients: int = len(CLIENTS), pauses: tuple[float, float] = (0.3, 2.0)
) -> None:
    """Normal clients using the servers for `seconds`, each pausing between activities."""
    activities, weights = zip(*ACTIVITIES)
    pause = run.rng.uniform(*pauses)
    plans = [(client, random.Random(run.rng.random())) for client in CLIENTS[:clients]]

    def user(client: Host, rng: random.Random) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            rng.choices(activities, weights)[0](run, client)
            time.sleep(rng.expovariate(1 / pause))

    threads = [threading.Thread(target=user, args=plan) for plan in plans]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


# --- attacks --------------------------------------------------------------------------------


def _ports(run: Run) -> list[str]:
    return run.rng.choice(
        (
            ["-p", "1-1024"],
            ["--top-ports", str(run.rng.choice((100, 300, 1000)))],
            ["-p", f"1-{run.rng.randint(200, 3000)}"],
            ["-p-"] if run.rng.random() < 0.2 else ["-F"],
        )
    )


def nmap_scan(kind: str) -> Callable[[Run], None]:
    """An nmap port scan of one server (-sS, -sT, -sF, -sX, -sN, -sU, -sV)."""

    def scan(run: Run) -> None:
        target = run.rng.choice((SERVER, SERVER, WEB2)).ip
        timing = run.rng.choice(("-T3", "-T4", "-T4", "-T5"))
        if kind == "-sU":
            ports = ["--top-ports", str(run.rng.choice((20, 50, 100)))]
        elif kind == "-sV":
            ports = ["-p", "21,22,23,80,110,143,443"]
        elif run.rng.random() < 0.15:  # a slow, sneaky scan of a few ports
            timing, ports = (
                "-T2",
                ["-p", ",".join(str(p) for p in run.rng.sample(range(1, 1024), 12))],
            )
        else:
            ports = _ports(run)
        run.sh(
            ATTACKER,
            ["nmap", "-n", "-Pn", kind, timing, "--max-retries", "1", *ports, target],
            timeout=240,
        )

    return scan


def sweep(run: Run) -> None:
    """A host sweep of the lab subnet: ping sweep or one port across hosts."""
    net = f"{SUBNET4}.0/{run.rng.choice((24, 25, 26))}"
    probe = run.rng.choice(
        (
            ["-sn", "-PE"],
            ["-sn"],
            ["-sn", "-PS22,80,443"],
            ["-sS", "-p", run.rng.choice(("22", "80", "445"))],
        )
    )
    run.sh(
        ATTACKER,
        ["nmap", "-n", "--disable-arp-ping", run.rng.choice(("-T3", "-T4", "-T5")), *probe, net],
        timeout=240,
    )


def _spoof(run: Run) -> list[str]:
    return ["--rand-source"] if run.rng.random() < 0.5 else []


def _interval(run: Run) -> str:
    return f"u{run.rng.choice((100, 200, 400, 1000))}"


def syn_flood(run: Run) -> None:
    port = str(run.rng.choice((80, 80, 443, 22, 21)))
    run.for_seconds(
        ATTACKER,
        ["hping3", "-q", "-S", "-p", port, "-i", _interval(run), *_spoof(run), SERVER.ip],
        run.rng.uniform(2, 5),
    )


def udp_flood(run: Run) -> None:
    port = run.rng.choice(
        (["-p", "53"], ["-p", "123"], ["-p", str(run.rng.randint(1024, 65535))], ["-p", "++1000"])
    )
    size = str(run.rng.choice((0, 64, 512, 1400)))
    run.for_seconds(
        ATTACKER,
        ["hping3", "-q", "--udp", *port, "-d", size, "-i", _interval(run), *_spoof(run), SERVER.ip],
        run.rng.uniform(2, 5),
    )


def icmp_flood(run: Run) -> None:
    size = str(run.rng.choice((0, 56, 512, 1400)))
    run.for_seconds(
        ATTACKER,
        ["hping3", "-q", "--icmp", "-d", size, "-i", _interval(run), *_spoof(run), SERVER.ip],
        run.rng.uniform(2, 5),
    )


def slow_http(run: Run) -> None:
    mode = run.rng.choice(("-H", "-B", "-X"))  # slowloris headers, slow body, slow read
    seconds = run.rng.randint(8, 14)
    argv = [
        "slowhttptest",
        mode,
        "-c",
        str(run.rng.choice((100, 200, 400))),
        "-r",
        str(run.rng.choice((50, 100))),
        "-i",
        str(run.rng.choice((2, 5))),
        "-l",
        str(seconds),
        "-u",
        f"http://{SERVER.ip}/page-2300.html",
    ]
    if mode == "-X":
        argv += ["-w", "10", "-y", "20", "-n", "5", "-z", "32"]
    run.sh(ATTACKER, argv, timeout=seconds + 40)


def _script(service: str, login: str, words: str) -> list[str]:
    """A scripted guesser: one curl login per connection, as a shell loop over the list."""
    url = {
        "ftp": f"ftp://{SERVER.ip}/",
        "pop3": f"pop3://{SERVER.ip}/",
        "imap": f"imap://{SERVER.ip}/INBOX",
        "http": f"http://{SERVER.ip}/admin/",
    }[service]
    return [
        "bash",
        "-c",
        f'while read -r p; do curl -s -o /dev/null --max-time 10 -u "{login}:$p" {url}; done < {words}',
    ]


def guess(service: str) -> Callable[[Run], None]:
    """Password guessing against one service with hydra, medusa, ncrack or a scripted client."""

    def attack(run: Run) -> None:
        words = run.wordlist(run.rng.randint(20, 80), include_right=run.rng.random() < 0.3)
        login = USER if run.rng.random() < 0.7 else run.rng.choice(("admin", "root", "bob"))
        tools = (
            ("hydra", "medusa", "ncrack", "script", "script")
            if service != "telnet"
            else ("hydra", "medusa", "ncrack")
        )
        tool = run.rng.choice(tools if service != "http" else ("hydra", "script"))
        tasks = str(run.rng.choice((1, 2, 4)))
        if tool == "hydra":
            module = {"http": "http-get"}.get(service, service)
            target = f"{module}://{SERVER.ip}" + ("/admin/" if service == "http" else "")
            argv = ["hydra", "-I", "-l", login, "-P", words, "-t", tasks, "-W", "1", target]
        elif tool == "medusa":
            argv = ["medusa", "-h", SERVER.ip, "-u", login, "-P", words, "-M", service, "-t", tasks]
        elif tool == "ncrack":
            argv = [
                "ncrack",
                "--user",
                login,
                "-P",
                words,
                f"{service}://{SERVER.ip}",
                "-g",
                f"CL={tasks}",
            ]
        else:
            argv = _script(service, login, words)
        run.for_seconds(ATTACKER, argv, 45)  # servers delay each failure by 1-2 s

    return attack


@dataclass(frozen=True)
class Scenario:
    """A named situation: its family, the label of its attack connections, what it does."""

    name: str
    family: str
    label: str
    attack: Callable[[Run], None] | None
    normal_seconds: tuple[float, float] = (0, 0)  # normal users around the attack (min, max)
    clients: int = len(CLIENTS)
    pauses: tuple[float, float] = (0.3, 2.0)  # range of a run's mean pause between activities, s

    def play(self, run: Run) -> None:
        seconds = run.rng.uniform(*self.normal_seconds)
        background = (
            threading.Thread(target=users, args=(run, seconds, self.clients, self.pauses))
            if seconds
            else None
        )
        if background:
            background.start()
            time.sleep(min(2.0, seconds / 4))
        if self.attack:
            self.attack(run)
        if background:
            background.join()


ATTACKS: dict[str, tuple[str, str, Callable[[Run], None]]] = {
    "probe-syn": ("probe", "nmap", nmap_scan("-sS")),
    "probe-connect": ("probe", "nmap", nmap_scan("-sT")),
    "probe-fin": ("probe", "nmap", nmap_scan("-sF")),
    "probe-xmas": ("probe", "nmap", nmap_scan("-sX")),
    "probe-null": ("probe", "nmap", nmap_scan("-sN")),
    "probe-udp": ("probe", "nmap", nmap_scan("-sU")),
    "probe-version": ("probe", "satan", nmap_scan("-sV")),
    "probe-sweep": ("probe", "ipsweep", sweep),
    "dos-syn": ("dos", "neptune", syn_flood),
    "dos-udp": ("dos", "udpstorm", udp_flood),
    "dos-icmp": ("dos", "smurf", icmp_flood),
    "dos-slowhttp": ("dos", "apache2", slow_http),
    "r2l-ftp": ("r2l", "guess_passwd", guess("ftp")),
    "r2l-telnet": ("r2l", "guess_passwd", guess("telnet")),
    "r2l-pop3": ("r2l", "guess_passwd", guess("pop3")),
    "r2l-imap": ("r2l", "guess_passwd", guess("imap")),
    "r2l-http": ("r2l", "guess_passwd", guess("http")),
}
#: Attacks that also run with normal users on the same server (the "mixed" family).
MIXED = (
    "probe-syn",
    "probe-connect",
    "probe-udp",
    "dos-syn",
    "dos-udp",
    "dos-icmp",
    "dos-slowhttp",
    "r2l-ftp",
    "r2l-pop3",
)

SCENARIOS: dict[str, Scenario] = {
    "normal": Scenario("normal", "normal", "normal", None, (15, 30)),
    # One user on a quiet network, as a freshly started agent sees it: sparse host windows.
    "normal-quiet": Scenario(
        "normal-quiet", "normal", "normal", None, (25, 45), clients=1, pauses=(2.0, 6.0)
    ),
    **{
        name: Scenario(name, family, label, attack)
        for name, (family, label, attack) in ATTACKS.items()
    },
    **{
        f"mixed-{name}": Scenario(
            f"mixed-{name}", "mixed", ATTACKS[name][1], ATTACKS[name][2], (8, 16)
        )
        for name in MIXED
    },
}
