"""Content features (NSL-KDD 10–22) from the cleartext payload of a TCP connection.

The engine keeps the first CONTENT_CAP bytes each way of connections to FTP, telnet, rlogin/rsh,
SMTP, POP3, IMAP and HTTP (capture_agent.extractor.CONTENT_PORTS) and asks `content_values` for
the features when such a connection ends (rules in docs/features.md):
hot, num_failed_logins, logged_in, num_compromised, root_shell, su_attempted, num_root,
num_file_creations, num_shells, num_access_files, num_outbound_cmds (always 0, as in NSL-KDD),
is_host_login, is_guest_login. Connections to other services get NO_CONTENT, or LOGGED_IN_ONLY
when the TCP connection was established and both sides sent payload.
"""

from __future__ import annotations

import re
from operator import itemgetter

CONTENT_FEATURES = (
    "hot",
    "num_failed_logins",
    "logged_in",
    "num_compromised",
    "root_shell",
    "su_attempted",
    "num_root",
    "num_file_creations",
    "num_shells",
    "num_access_files",
    "num_outbound_cmds",
    "is_host_login",
    "is_guest_login",
)
_GUEST_USERS = {"anonymous", "ftp", "guest"}
FTP_HOT_CAP = 30

_FAILED = {
    "ftp": re.compile(rb"^530[ -]", re.MULTILINE),
    "telnet": re.compile(
        rb"login incorrect|authentication failure|incorrect password", re.IGNORECASE
    ),
    "rlogin": re.compile(rb"login incorrect|permission denied", re.IGNORECASE),
    "rsh": re.compile(rb"permission denied", re.IGNORECASE),
    "pop": re.compile(rb"^-ERR", re.MULTILINE),
    "imap": re.compile(rb"^\S+ NO ", re.MULTILINE),
    "smtp": re.compile(rb"^535[ -]", re.MULTILINE),
    "http": re.compile(rb"^HTTP/1\.[01] 401", re.MULTILINE),
}
_LOGGED_IN = {
    "ftp": re.compile(rb"^230[ -]", re.MULTILINE),
    "telnet": re.compile(rb"last login|[$#%>] ?$", re.IGNORECASE | re.MULTILINE),
    "rlogin": re.compile(rb"last login|[$#%>] ?$", re.IGNORECASE | re.MULTILINE),
    "pop": re.compile(
        rb"^\+OK.*(logged in|authenticated|maildrop|mailbox)", re.IGNORECASE | re.MULTILINE
    ),
    "imap": re.compile(rb"^\S+ OK .*(login|authenticat)", re.IGNORECASE | re.MULTILINE),
    "smtp": re.compile(rb"^250[ -]", re.MULTILINE),
    "http": re.compile(rb"^HTTP/1\.[01] [23]\d\d", re.MULTILINE),
}
_USER = {
    "ftp": re.compile(rb"^USER\s+(\S+)", re.IGNORECASE | re.MULTILINE),
    "pop": re.compile(rb"^USER\s+(\S+)", re.IGNORECASE | re.MULTILINE),
    "imap": re.compile(rb"^\S+\s+LOGIN\s+\"?([^\s\"]+)", re.IGNORECASE | re.MULTILINE),
    "telnet": re.compile(rb"login:\s*(\S+)", re.IGNORECASE),
}
# Every alternative starts with a literal, so the regex engine skips ahead to candidate bytes
# (a leading \b or ^ makes it try every offset: 30x slower). The word or line boundary is checked
# by a lookbehind after the literal: "cc (?<!\wcc )" is "\bcc ", "RETR (?<![^\n]RETR )" is "^RETR ".
_HOT = re.compile(
    rb"/etc/passwd|/etc/shadow|\.rhosts|/bin/sh|/bin/bash|/bin/csh|cgi-bin|\.\./|/dev/|chmod |chown |gcc |"
    rb"cc (?<!\wcc )|make\b(?<!\wmake)|wget |nc (?<!\wnc )|exec (?<!\wexec )|eval\b(?<!\weval)|"
    rb"perl (?<!\wperl )|python (?<!\wpython )|su\b(?<!\wsu)|RETR (?<![^\n]RETR )|STOR (?<![^\n]STOR )|"
    rb"SITE (?<![^\n]SITE )"
)
_COMPROMISED = re.compile(
    rb"permission denied|operation not permitted|not owner|segmentation fault|core dumped",
    re.IGNORECASE,
)
_ROOT_PROMPT = re.compile(rb"(?:^|\n)[^\n]{0,40}# ?$|uid=0\(root\)", re.MULTILINE)
# Blanks here are whitespace other than newline, so no blank run is scanned from two starts.
_SU = re.compile(rb"(?:^|[\n;|&])[^\S\n]*su(?:\s+-)?(?:\s+root)?[^\S\n]*(?:\n|$)", re.MULTILINE)
_FILE_CREATIONS = re.compile(
    rb"touch (?<!\wtouch )|mkdir (?<!\wmkdir )|cp (?<!\wcp )|mv (?<!\wmv )|vi (?<!\wvi )|cat >(?<!\wcat >)|"
    rb"echo (?<!\wecho )[^\n>]{0,128}>|STOR (?<![^\n]STOR )|MKD (?<![^\n]MKD )|STOU (?<![^\n]STOU )"
)
_SHELLS = re.compile(
    rb"/bin/sh|/bin/bash|/bin/csh|/bin/ksh|sh -i\b(?<!\wsh -i)|exec sh\b(?<!\wexec sh)"
)
_ACCESS_FILES = re.compile(
    rb"/etc/passwd|/etc/shadow|/etc/hosts\.equiv|\.rhosts|\.netrc|authorized_keys"
)


def content_features(dialect: str, orig: bytes, resp: bytes, established: bool) -> dict[str, int]:
    """The 13 content features of one TCP connection from its captured payload, by name."""
    out = dict.fromkeys(CONTENT_FEATURES, 0)
    text = orig + b"\n" + resp
    failed = _FAILED.get(dialect)
    out["num_failed_logins"] = min(len(failed.findall(resp)), 5) if failed else 0
    login = _LOGGED_IN.get(dialect)
    if dialect in ("telnet", "rlogin"):
        out["logged_in"] = int(
            bool(login.search(resp))
            and not (out["num_failed_logins"] and not _after_failure(login, failed, resp))
        )
    elif dialect == "rsh":
        out["logged_in"] = int(established and bool(resp) and not out["num_failed_logins"])
    elif login:
        out["logged_in"] = int(bool(login.search(resp)))
    out["hot"] = len(_HOT.findall(text))
    if (
        dialect == "ftp"
    ):  # normal FTP sessions in NSL-KDD stop at 30 (256 of 918 records sit exactly there)
        out["hot"] = min(out["hot"], FTP_HOT_CAP)
    out["num_compromised"] = len(_COMPROMISED.findall(resp))
    root = _ROOT_PROMPT.search(resp) if dialect in ("telnet", "rlogin", "rsh") else None
    out["root_shell"] = int(root is not None)
    out["su_attempted"] = (
        int(bool(_SU.search(orig))) if dialect in ("telnet", "rlogin", "rsh") else 0
    )
    if root is not None:
        out["num_root"] = _command_lines(orig)
    out["num_file_creations"] = len(_FILE_CREATIONS.findall(orig))
    out["num_shells"] = len(_SHELLS.findall(orig))
    out["num_access_files"] = len(_ACCESS_FILES.findall(orig))
    user = _USER.get(dialect)
    if user:
        names = {
            m.group(1).lower().strip(b"\r")
            for m in user.finditer(orig if dialect != "telnet" else text)
        }
        out["is_guest_login"] = int(
            any(n.decode("latin-1") in _GUEST_USERS for n in names) and bool(out["logged_in"])
        )
    if dialect == "rlogin":
        out["is_host_login"] = int(out["logged_in"] and b"root" in orig[:256])
    return out


def _after_failure(login: re.Pattern, failed: re.Pattern, resp: bytes) -> bool:
    """Whether a successful login sign comes after the last failure message."""
    last_failure = max(m.end() for m in failed.finditer(resp))
    return login.search(resp, last_failure) is not None


def _command_lines(data: bytes) -> int:
    """Lines ending in a newline whose text (before an optional CR) ends in a character other
    than CR: what the regex [^\\r\\n]+\\r?\\n counts, in linear time."""
    count = 0
    for line in data.split(b"\n")[:-1]:
        text = line[:-1] if line.endswith(b"\r") else line
        count += bool(text) and not text.endswith(b"\r")
    return count


NO_CONTENT = (0,) * len(CONTENT_FEATURES)
LOGGED_IN_ONLY = tuple(int(name == "logged_in") for name in CONTENT_FEATURES)
_IN_ORDER = itemgetter(*CONTENT_FEATURES)


def content_values(dialect: str, orig: bytes, resp: bytes, established: bool) -> tuple:
    """The 13 content features of one inspected connection, in CONTENT_FEATURES order (the
    native engine calls this for each connection to an inspected port)."""
    return _IN_ORDER(content_features(dialect, orig, resp, established))
