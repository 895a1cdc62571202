"""Real servers from Debian's packages on the lab's server hosts, with a lab user and real content.

`srv` runs nginx (HTTP, HTTPS, basic auth on /admin), vsftpd, OpenSSH, dnsmasq, Dovecot (POP3,
IMAP), telnetd under inetd and chrony as an NTP server; `web2` runs nginx. The lab user's
account lives only inside `srv` (its /etc/passwd and /etc/shadow are bound by `ip netns exec`).
"""

from __future__ import annotations

import random
import shutil
import subprocess
import time
from pathlib import Path

from lab.network import BY_NAME, SERVER, Lab, run

USER, PASSWORD = "alice", "Tr0ub4dor&3"
#: Page sizes of a small real site (bytes): HTML, CSS, scripts, images, a download.
PAGE_SIZES = (512, 2_300, 7_800, 15_000, 48_000, 120_000, 350_000, 1_200_000)
#: The front page's assets (bytes), fetched with it by browsers and `wget -p`.
ASSETS = {"style.css": 3_400, "app.js": 21_000, "logo.png": 6_100, "favicon.ico": 1_150}
#: Small JSON answers of the site's API (bytes), the traffic of scripts and single-page apps.
API_SIZES = (90, 240, 700, 1_800)
PORTS = {
    "http": 80,
    "https": 443,
    "ftp": 21,
    "ssh": 22,
    "telnet": 23,
    "pop3": 110,
    "imap": 143,
    "dns": 53,
    "ntp": 123,
}


class Servers:
    """Start every lab server; stop() ends them."""

    def __init__(self, lab: Lab, workdir: Path, seed: int = 0) -> None:
        self.lab, self.dir, self.rng = lab, workdir, random.Random(seed)
        self.procs: list[subprocess.Popen] = []

    def start(self) -> Servers:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o755)
        self._accounts()
        self._site()
        self._nginx(SERVER)
        self._nginx(BY_NAME["web2"])
        self._spawn(SERVER, "/usr/sbin/vsftpd", str(self._vsftpd()))
        self._spawn(SERVER, "/usr/sbin/sshd", "-D", "-e", "-f", str(self._sshd()))
        self._spawn(SERVER, "dnsmasq", "-k", "-C", str(self._dnsmasq()))
        self._spawn(SERVER, "dovecot", "-F", "-c", str(self._dovecot()))
        self._spawn(SERVER, "inetutils-inetd", "-d", str(self._inetd()))
        self._spawn(SERVER, "chronyd", "-d", "-x", "-f", str(self._chrony()))
        self.wait_ports()
        return self

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()
        for proc in self.procs:
            proc.wait(timeout=10)

    def wait_ports(self, timeout: float = 20) -> None:
        """Wait until every TCP server listens on srv."""
        wanted = {PORTS[name] for name in ("http", "https", "ftp", "ssh", "telnet", "pop3", "imap")}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = run(*self.lab.cmd(SERVER, "ss", "-Htln")).stdout
            listening = {
                int(line.split()[3].rsplit(":", 1)[1]) for line in out.splitlines() if line.strip()
            }
            if wanted <= listening:
                return
            dead = [p.args for p in self.procs if p.poll() is not None]
            if dead:
                raise RuntimeError(f"lab server exited at start: {dead}; see {self.dir}/*.log")
            time.sleep(0.2)
        raise RuntimeError(
            f"lab servers not listening on {sorted(wanted - listening)} after {timeout} s"
        )

    def _spawn(self, host, *argv: str) -> None:
        log = (self.dir / f"{Path(argv[0]).name}-{host.name}.log").open("w")
        self.procs.append(
            subprocess.Popen(self.lab.cmd(host, *argv), stdout=log, stderr=subprocess.STDOUT)
        )

    def _write(self, name: str, text: str) -> Path:
        path = self.dir / name
        path.write_text(text)
        return path

    def _accounts(self) -> None:
        """The lab user in srv's own passwd/shadow, a PAM set-up that works without systemd."""
        etc = self.lab.etc(SERVER)
        home = self.dir / "home" / USER
        (home / "files").mkdir(parents=True, exist_ok=True)
        for size in (900, 14_000, 260_000):
            (home / "files" / f"report-{size}.txt").write_bytes(self._text(size))
        (home / "Maildir" / "cur").mkdir(parents=True, exist_ok=True)
        for sub in ("new", "tmp"):
            (home / "Maildir" / sub).mkdir(exist_ok=True)
        for i in range(3):
            (home / "Maildir" / "cur" / f"{i}.lab:2,S").write_bytes(
                b"From: bob@lab.test\r\nSubject: weekly "
                + str(i).encode()
                + b"\r\n\r\n"
                + self._text(1500 + i * 4000)
            )
        subprocess.run(["chown", "-R", "2001:2001", str(home.parent)], check=True)
        crypted = run("openssl", "passwd", "-6", PASSWORD).stdout.strip()
        passwd = Path("/etc/passwd").read_text() + f"{USER}:x:2001:2001:Lab User:{home}:/bin/bash\n"
        shadow = Path("/etc/shadow").read_text() + f"{USER}:{crypted}:19000:0:99999:7:::\n"
        group = Path("/etc/group").read_text() + f"{USER}:x:2001:\n"
        for name, text in (("passwd", passwd), ("shadow", shadow), ("group", group)):
            (etc / name).write_text(text)
        (etc / "shadow").chmod(0o640)
        pam = etc / "pam.d"
        shutil.copytree("/etc/pam.d", pam, dirs_exist_ok=True)
        for name in ("login", "sshd"):
            path = pam / name
            path.write_text(
                path.read_text()
                .replace("required     pam_loginuid.so", "optional     pam_loginuid.so")
                .replace("required pam_loginuid.so", "optional pam_loginuid.so")
            )

    def _text(self, size: int) -> bytes:
        words = [
            b"alpha",
            b"report",
            b"network",
            b"quarterly",
            b"server",
            b"update",
            b"meeting",
            b"data",
        ]
        out = bytearray()
        while len(out) < size:
            out += self.rng.choice(words) + (b"\n" if self.rng.random() < 0.1 else b" ")
        return bytes(out[:size])

    def _site(self) -> None:
        site = self.dir / "www"
        (site / "admin").mkdir(parents=True, exist_ok=True)
        for size in PAGE_SIZES:
            (site / f"page-{size}.html").write_bytes(
                b"<html><body>" + self._text(size) + b"</body></html>"
            )
        for name, size in ASSETS.items():
            (site / name).write_bytes(self._text(size))
        links = "".join(f'<a href="page-{size}.html">page {size}</a> ' for size in PAGE_SIZES[:4])
        (site / "index.html").write_text(
            '<html><head><link rel="stylesheet" href="style.css"><script src="app.js"></script>'
            f'<link rel="icon" href="favicon.ico"></head><body><img src="logo.png">{links}</body></html>'
        )
        (site / "api").mkdir(exist_ok=True)
        for size in API_SIZES:
            body = self._text(size - 12).decode().replace("\n", " ")
            (site / "api" / f"items-{size}.json").write_text(f'{{"items": "{body}"}}')
        (site / "admin" / "index.html").write_bytes(b"<html>admin</html>")
        crypted = run("openssl", "passwd", "-apr1", PASSWORD).stdout.strip()
        self._write("htpasswd", f"{USER}:{crypted}\n")
        key, cert = str(self.dir / "tls.key"), str(self.dir / "tls.crt")
        request = "openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=srv.lab.test"
        run(*request.split(), "-keyout", key, "-out", cert)

    def _nginx(self, host) -> None:
        prefix = self.dir / f"nginx-{host.name}"
        prefix.mkdir(exist_ok=True)
        conf = self._write(
            f"nginx-{host.name}.conf",
            f"""
user nobody nogroup;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    keepalive_timeout 5;
    server {{
        listen 80; listen [::]:80;
        listen 443 ssl; listen [::]:443 ssl;
        ssl_certificate {self.dir}/tls.crt; ssl_certificate_key {self.dir}/tls.key;
        root {self.dir}/www;
        location /admin/ {{ auth_basic "lab"; auth_basic_user_file {self.dir}/htpasswd; }}
        location = /health {{ default_type text/plain; return 200 "ok"; }}
        location /old/ {{ return 301 /index.html; }}
    }}
}}
""",
        )
        self._spawn(host, "nginx", "-c", str(conf), "-p", str(prefix), "-g", "daemon off;")

    def _vsftpd(self) -> Path:
        Path("/var/run/vsftpd/empty").mkdir(parents=True, exist_ok=True)
        return self._write(
            "vsftpd.conf",
            """listen=NO
listen_ipv6=YES
background=NO
anonymous_enable=NO
local_enable=YES
write_enable=YES
pam_service_name=vsftpd
seccomp_sandbox=NO
secure_chroot_dir=/var/run/vsftpd/empty
pasv_enable=YES
pasv_min_port=40000
pasv_max_port=40100
""",
        )

    def _sshd(self) -> Path:
        key = self.dir / "ssh_host_ed25519_key"
        if not key.exists():
            run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
        Path("/run/sshd").mkdir(exist_ok=True)
        return self._write(
            "sshd_config",
            f"""Port 22
HostKey {key}
PidFile {self.dir}/sshd.pid
UsePAM yes
PasswordAuthentication yes
KbdInteractiveAuthentication no
PermitRootLogin no
MaxStartups 100:30:200
""",
        )

    def _dnsmasq(self) -> Path:
        hosts = self._write(
            "dns-hosts",
            "".join(
                f"{h.ip} {h.name}.lab.test\n" + (f"{h.ip6} {h.name}.lab.test\n" if h.ip6 else "")
                for h in BY_NAME.values()
            ),
        )
        names = "".join(
            f"address=/{name}.lab.test/{SERVER.ip}\n" for name in ("www", "mail", "ftp", "intranet")
        )
        return self._write(
            "dnsmasq.conf",
            f"""port=53
user=root
bind-interfaces
interface=eth0
no-resolv
no-hosts
addn-hosts={hosts}
pid-file={self.dir}/dnsmasq.pid
mx-host=lab.test,mail.lab.test,10
{names}""",
        )

    def _dovecot(self) -> Path:
        crypted = run("openssl", "passwd", "-6", PASSWORD).stdout.strip()
        users = self._write(
            "dovecot-users", f"{USER}:{{SHA512-CRYPT}}{crypted}:2001:2001::{self.dir}/home/{USER}\n"
        )
        (self.dir / "dovecot-run").mkdir(exist_ok=True)
        return self._write(
            "dovecot.conf",
            f"""protocols = pop3 imap
listen = *, ::
base_dir = {self.dir}/dovecot-run
ssl = no
auth_mechanisms = plain login
disable_plaintext_auth = no
mail_location = maildir:~/Maildir
first_valid_uid = 1000
log_path = {self.dir}/dovecot-mail.log
passdb {{
  driver = passwd-file
  args = scheme=SHA512-CRYPT {users}
}}
userdb {{
  driver = passwd-file
  args = {users}
}}
""",
        )

    def _inetd(self) -> Path:
        return self._write(
            "inetd.conf", "telnet stream tcp nowait root /usr/sbin/telnetd telnetd\n"
        )

    def _chrony(self) -> Path:
        return self._write(
            "chrony.conf",
            f"""allow all
local stratum 8
pidfile {self.dir}/chronyd.pid
cmdport 0
""",
        )
