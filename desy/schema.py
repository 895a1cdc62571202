"""The NSL-KDD feature schema: the single source of truth for every part of DeSy.

The 41 feature names in dataset order, their kinds, the categorical vocabularies read off
KDDTrain+ (which also covers every value in KDDTest+ and KDDTest-21), the known labels and the
label -> attack category map. Pipelines, serving and the capture agent all import this module;
nothing else spells the list out. It has no third-party imports so the agent can use it.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

PROTOCOLS: Final[tuple[str, ...]] = ("icmp", "tcp", "udp")

#: The 70 service names of NSL-KDD (KDDTrain+), sorted.
SERVICES: Final[tuple[str, ...]] = (
    "IRC",
    "X11",
    "Z39_50",
    "aol",
    "auth",
    "bgp",
    "courier",
    "csnet_ns",
    "ctf",
    "daytime",
    "discard",
    "domain",
    "domain_u",
    "echo",
    "eco_i",
    "ecr_i",
    "efs",
    "exec",
    "finger",
    "ftp",
    "ftp_data",
    "gopher",
    "harvest",
    "hostnames",
    "http",
    "http_2784",
    "http_443",
    "http_8001",
    "imap4",
    "iso_tsap",
    "klogin",
    "kshell",
    "ldap",
    "link",
    "login",
    "mtp",
    "name",
    "netbios_dgm",
    "netbios_ns",
    "netbios_ssn",
    "netstat",
    "nnsp",
    "nntp",
    "ntp_u",
    "other",
    "pm_dump",
    "pop_2",
    "pop_3",
    "printer",
    "private",
    "red_i",
    "remote_job",
    "rje",
    "shell",
    "smtp",
    "sql_net",
    "ssh",
    "sunrpc",
    "supdup",
    "systat",
    "telnet",
    "tftp_u",
    "tim_i",
    "time",
    "urh_i",
    "urp_i",
    "uucp",
    "uucp_path",
    "vmnet",
    "whois",
)

#: Bro/Zeek connection states used as the `flag` feature.
FLAGS: Final[tuple[str, ...]] = (
    "OTH",
    "REJ",
    "RSTO",
    "RSTOS0",
    "RSTR",
    "RSTRH",
    "S0",
    "S1",
    "S2",
    "S3",
    "SF",
    "SH",
    "SHR",
)

CATEGORICAL: Final[dict[str, tuple[str, ...]]] = {
    "protocol_type": PROTOCOLS,
    "service": SERVICES,
    "flag": FLAGS,
}
#: The longest value of each categorical feature, in characters: what the server accepts (a value
#: outside the vocabulary too) and the alert store's columns hold.
CATEGORICAL_WIDTHS: Final[dict[str, int]] = {"protocol_type": 8, "service": 64, "flag": 8}

#: Feature kinds: "cat" categorical, "int" non-negative count, "bool" 0/1, "rate" in [0, 1].
FEATURES: Final[tuple[tuple[str, str], ...]] = (
    ("duration", "int"),
    ("protocol_type", "cat"),
    ("service", "cat"),
    ("flag", "cat"),
    ("src_bytes", "int"),
    ("dst_bytes", "int"),
    ("land", "bool"),
    ("wrong_fragment", "int"),
    ("urgent", "int"),
    ("hot", "int"),
    ("num_failed_logins", "int"),
    ("logged_in", "bool"),
    ("num_compromised", "int"),
    ("root_shell", "bool"),
    ("su_attempted", "int"),
    ("num_root", "int"),
    ("num_file_creations", "int"),
    ("num_shells", "int"),
    ("num_access_files", "int"),
    ("num_outbound_cmds", "int"),
    ("is_host_login", "bool"),
    ("is_guest_login", "bool"),
    ("count", "int"),
    ("srv_count", "int"),
    ("serror_rate", "rate"),
    ("srv_serror_rate", "rate"),
    ("rerror_rate", "rate"),
    ("srv_rerror_rate", "rate"),
    ("same_srv_rate", "rate"),
    ("diff_srv_rate", "rate"),
    ("srv_diff_host_rate", "rate"),
    ("dst_host_count", "int"),
    ("dst_host_srv_count", "int"),
    ("dst_host_same_srv_rate", "rate"),
    ("dst_host_diff_srv_rate", "rate"),
    ("dst_host_same_src_port_rate", "rate"),
    ("dst_host_srv_diff_host_rate", "rate"),
    ("dst_host_serror_rate", "rate"),
    ("dst_host_srv_serror_rate", "rate"),
    ("dst_host_rerror_rate", "rate"),
    ("dst_host_srv_rerror_rate", "rate"),
)

FEATURE_NAMES: Final[tuple[str, ...]] = tuple(name for name, _ in FEATURES)
FEATURE_KINDS: Final[dict[str, str]] = dict(FEATURES)
CATEGORICAL_FEATURES: Final[tuple[str, ...]] = tuple(n for n, k in FEATURES if k == "cat")
NUMERIC_FEATURES: Final[tuple[str, ...]] = tuple(n for n, k in FEATURES if k != "cat")
RATE_FEATURES: Final[tuple[str, ...]] = tuple(n for n, k in FEATURES if k == "rate")
COUNT_FEATURES: Final[tuple[str, ...]] = tuple(n for n, k in FEATURES if k in ("int", "bool"))

#: Caps observed in the data: the 2-second window counts and the host-window counts.
WINDOW_COUNT_CAP: Final[int] = 511
HOST_COUNT_CAP: Final[int] = 255
WINDOW_COUNT_FEATURES: Final[tuple[str, ...]] = ("count", "srv_count")
HOST_COUNT_FEATURES: Final[tuple[str, ...]] = ("dst_host_count", "dst_host_srv_count")

#: Raw file columns: the 41 features, the label, the difficulty level (1-21).
LABEL: Final[str] = "label"
DIFFICULTY: Final[str] = "difficulty"
RAW_COLUMNS: Final[tuple[str, ...]] = FEATURE_NAMES + (LABEL, DIFFICULTY)

Category = Literal["normal", "dos", "probe", "r2l", "u2r"]
CATEGORIES: Final[tuple[str, ...]] = get_args(Category)

#: Every label of KDDTrain+, KDDTest+ and KDDTest-21 and its attack category (DARPA 1998/99).
LABEL_CATEGORY: Final[dict[str, str]] = {
    "normal": "normal",
    # denial of service
    "apache2": "dos",
    "back": "dos",
    "land": "dos",
    "mailbomb": "dos",
    "neptune": "dos",
    "pod": "dos",
    "processtable": "dos",
    "smurf": "dos",
    "teardrop": "dos",
    "udpstorm": "dos",
    "worm": "dos",
    # probing
    "ipsweep": "probe",
    "mscan": "probe",
    "nmap": "probe",
    "portsweep": "probe",
    "saint": "probe",
    "satan": "probe",
    # remote to local
    "ftp_write": "r2l",
    "guess_passwd": "r2l",
    "httptunnel": "r2l",
    "imap": "r2l",
    "multihop": "r2l",
    "named": "r2l",
    "phf": "r2l",
    "sendmail": "r2l",
    "snmpgetattack": "r2l",
    "snmpguess": "r2l",
    "spy": "r2l",
    "warezclient": "r2l",
    "warezmaster": "r2l",
    "xlock": "r2l",
    "xsnoop": "r2l",
    # user to root
    "buffer_overflow": "u2r",
    "loadmodule": "u2r",
    "perl": "u2r",
    "ps": "u2r",
    "rootkit": "u2r",
    "sqlattack": "u2r",
    "xterm": "u2r",
}
LABELS: Final[tuple[str, ...]] = tuple(sorted(LABEL_CATEGORY))


def category_of(label: str) -> str:
    """Attack category of a dataset label; raises KeyError naming an unknown label."""
    try:
        return LABEL_CATEGORY[label]
    except KeyError:
        raise KeyError(f"unknown NSL-KDD label {label!r}") from None
