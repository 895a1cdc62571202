"""The lab: labelling from host roles, the split by whole runs, and a small run of real tools."""

from __future__ import annotations

import csv
import random
import sys

import pandas as pd
import pytest

from desy import schema
from desy.records import LABELLED_FIELDS
from lab.network import ATTACKER, CLIENTS, SERVER
from lab.scenarios import SCENARIOS
from lab.table import cap_attacks, is_attack, label_rows
from pipelines.prepare import FlowTableError, flows, split_runs
from tests.agent.test_engine_identical import assert_extract_is_the_oracles
from tests.conftest import LAB_TABLE, run


def test_labels_come_from_host_roles():
    client = CLIENTS[0]
    assert is_attack(ATTACKER.ip, SERVER.ip) and is_attack(SERVER.ip, ATTACKER.ip)
    assert is_attack("198.51.100.7", SERVER.ip)  # a spoofed source
    assert not is_attack(client.ip, SERVER.ip)
    assert not is_attack(client.ip6, SERVER.ip6)
    assert not is_attack("fe80::1", "ff02::2")  # neighbour discovery: the attacker has no IPv6
    rows = [
        {"src_ip": ATTACKER.ip, "dst_ip": SERVER.ip},
        {"src_ip": client.ip, "dst_ip": SERVER.ip},
    ]
    attack, normal = label_rows(rows, "dos-syn", "dos", "neptune", "dos-syn/0")
    assert (attack["label"], attack["category"], attack["run"]) == ("neptune", "dos", "dos-syn/0")
    assert (normal["label"], normal["category"], normal["scenario"]) == (
        "normal",
        "normal",
        "dos-syn",
    )


def test_cap_keeps_every_normal_row_in_order():
    rows = [
        {"category": "dos", "i": i} if i % 4 else {"category": "normal", "i": i} for i in range(400)
    ]
    kept = cap_attacks(rows, 50, random.Random(1))
    assert sum(r["category"] == "dos" for r in kept) == 50
    assert sum(r["category"] == "normal" for r in kept) == 100
    assert [r["i"] for r in kept] == sorted(r["i"] for r in kept)


def test_every_scenario_label_has_its_category():
    for scenario in SCENARIOS.values():
        category = schema.category_of(scenario.label)
        assert (
            category == "normal"
            if scenario.family == "normal"
            else category in ("probe", "dos", "r2l")
        )
        if scenario.family in ("probe", "dos", "r2l"):
            assert category == scenario.family


def _runs(scenarios: dict[str, int]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"scenario": s, "run": f"{s}/{i}", "row": j}
            for s, n in scenarios.items()
            for i in range(n)
            for j in range(3)
        ]
    )


def test_split_keeps_whole_runs_apart():
    frame = _runs({"normal": 10, "dos-syn": 5, "probe-syn": 3, "r2l-ftp": 2, "rare": 1})
    splits = split_runs(frame, 0.2, 0.2, 42)
    runs = {name: set(table["run"]) for name, table in splits.items()}
    assert sum(len(r) for r in runs.values()) == frame["run"].nunique()
    assert (
        not runs["lab_train"] & runs["lab_validation"] and not runs["lab_train"] & runs["lab_test"]
    )
    assert not runs["lab_validation"] & runs["lab_test"]
    for name, table in splits.items():  # every row of a run goes with its run
        assert (table.groupby("run").size() == 3).all(), name
    for scenario in ("normal", "dos-syn", "probe-syn"):
        assert {split for split, r in runs.items() for run in r if run.startswith(scenario)} == set(
            splits
        )
    assert {r.split("/")[0] for r in runs["lab_test"]} >= {"r2l-ftp"} and "rare/0" in runs[
        "lab_train"
    ]
    assert sum(r.startswith("normal/") for r in runs["lab_test"]) == 2  # 20 % of 10 runs
    again = split_runs(frame, 0.2, 0.2, 42)
    assert all(set(again[name]["run"]) == runs[name] for name in splits)


def test_committed_lab_table():
    frame = flows([LAB_TABLE])
    with LAB_TABLE.open() as fh:
        assert next(csv.reader(fh)) == list(LABELLED_FIELDS)
    assert set(frame["family"]) == {"normal", "probe", "dos", "r2l", "mixed"}
    for scenario, rows in frame.groupby("scenario"):
        labels = set(rows["label"])
        quiet = SCENARIOS[scenario].family == "normal"
        assert labels <= {"normal", SCENARIOS[scenario].label}, scenario
        assert SCENARIOS[scenario].label in labels or quiet, scenario
        assert not quiet or labels == {"normal"}, scenario
    mixed = frame[frame["family"] == "mixed"]
    assert (mixed["category"] == "normal").sum() > 500  # normal users during attacks
    assert LAB_TABLE.stat().st_size < 8 * 2**20
    splits = split_runs(frame, 0.2, 0.2, 42)
    assert min(len(splits["lab_test"]), len(splits["lab_validation"])) > 1000


def test_a_bad_site_table_is_named_with_its_fault(tmp_path):
    good = pd.read_csv(LAB_TABLE, nrows=5)
    missing = tmp_path / "missing.csv"
    good.drop(columns=["src_bytes"]).to_csv(missing, index=False)
    with pytest.raises(FlowTableError, match=r"missing.csv: missing columns \['src_bytes'\]"):
        flows([missing])
    unknown = tmp_path / "unknown.csv"
    good.assign(label="not-a-label").to_csv(unknown, index=False)
    with pytest.raises(FlowTableError, match="unknown.csv: .*unknown NSL-KDD label 'not-a-label'"):
        flows([unknown])
    wrong = tmp_path / "wrong.csv"
    good.assign(src_bytes="many").to_csv(wrong, index=False)
    with pytest.raises(FlowTableError, match="wrong.csv"):
        flows([wrong])
    site_only = good.drop(columns=["scenario", "family", "run"])  # optional columns
    site_only.to_csv(tmp_path / "site.csv", index=False)
    frame = flows([tmp_path / "site.csv"])
    assert set(frame["run"]) == {"site.csv"} and set(frame["scenario"]) == {"site"}


@pytest.mark.netns
def test_small_lab_run_with_real_tools(tmp_path):
    """normal users and an nmap SYN scan against the same server, captured and labelled."""
    out = tmp_path / "flows.csv"
    argv = [
        sys.executable,
        "-m",
        "lab",
        "run",
        "-s",
        "mixed-probe-syn",
        "--runs",
        1,
        "--seed",
        3,
        "--out",
        out,
    ]
    done = run([*argv, "--workdir", tmp_path / "work"], 600)
    assert done.returncode == 0, done.stderr[-3000:]
    frame = flows([out])
    attacker = (frame["src_ip"] == ATTACKER.ip) | (frame["dst_ip"] == ATTACKER.ip)
    assert attacker.sum() >= 10 and (frame.loc[attacker, "label"] == "nmap").all()
    assert frame.loc[attacker, "dst_port"].nunique() >= 10  # a port scan: one connection per port
    normal = frame[~attacker]
    assert (normal["label"] == "normal").all() and len(normal) > 10
    assert {"http", "domain_u"} & set(normal["service"])
    assert (frame["run"] == "mixed-probe-syn/0").all()
    pcap = tmp_path / "work" / "mixed-probe-syn-0.pcap"
    assert pcap.stat().st_size > 10_000
    assert_extract_is_the_oracles(pcap, tmp_path / "native.csv")  # real tools' traffic too
