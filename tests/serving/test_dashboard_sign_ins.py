"""Sign-ins to a real dashboard from several source addresses (127.0.0.x): guessing locks the
account and the address for a growing time, never the browser an analyst signed in with
before; a flood from one address leaves the other analysts' sign-ins their places."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from alerts import accounts
from dashboard.sign_ins import Failures, source_of
from tests.serving.test_dashboard_accounts import PASSWORD, running_dashboard, store_with_alice


def client(url: str, source: str = "127.0.0.1") -> httpx.Client:
    """A client whose connections come from source."""
    transport = httpx.HTTPTransport(local_address=source)
    return httpx.Client(base_url=url, transport=transport, timeout=60)


def sign_in(web: httpx.Client, password: str, name: str = "alice") -> httpx.Response:
    return web.post("/login", data={"name": name, "password": password})


def test_guessing_locks_account_and_address_not_the_analysts_browser(tmp_path):
    store, _ = store_with_alice(tmp_path)
    log = tmp_path / "dashboard.log"
    with (
        running_dashboard(store, log) as url,
        client(url) as browser,
        client(url) as attacker,
        client(url, "127.0.0.3") as elsewhere,
        client(url, "127.0.0.4") as sprayer,
    ):
        assert sign_in(browser, PASSWORD).status_code == 303  # alice, yesterday
        assert "desy_device" in browser.cookies
        assert [sign_in(attacker, f"guess {n}").status_code for n in range(5)] == [401] * 5
        locked = sign_in(attacker, "guess 5")
        assert locked.status_code == 429 and locked.headers["retry-after"] == "1"
        assert "try again in 1 s" in locked.text
        assert sign_in(attacker, PASSWORD).status_code == 429  # not even checked
        assert sign_in(elsewhere, PASSWORD).status_code == 429  # the account is locked
        assert sign_in(browser, PASSWORD).status_code == 303  # alice's browser is not
        time.sleep(1.5)
        assert sign_in(attacker, "guess 6").status_code == 401
        locked = sign_in(attacker, "guess 7")
        assert locked.status_code == 429 and locked.headers["retry-after"] == "2"  # growing
        time.sleep(2.5)
        assert sign_in(elsewhere, PASSWORD).status_code == 303

        names = [f"user{n}" for n in range(5)]  # one address trying many accounts
        assert [sign_in(sprayer, "guess", name).status_code for name in names] == [401] * 5
        assert sign_in(sprayer, "guess", "bob").status_code == 429
        assert sign_in(elsewhere, "guess", "bob").status_code == 401
    text = log.read_text()
    assert "failed sign-in as 'alice' from 127.0.0.1 (5 failures in a row for the account" in text
    assert "sign-in as 'alice' from 127.0.0.3 refused for" in text


def test_a_flood_from_one_address_leaves_other_analysts_their_places(tmp_path):
    store, engine = store_with_alice(tmp_path)
    analysts = [f"analyst{n}" for n in range(6)]
    for name in analysts:
        accounts.add_user(engine, name, PASSWORD)
    stop = threading.Event()

    def flood(n: int) -> list[int]:
        answers = []
        with client(url) as web:
            while not stop.is_set():
                answers.append(sign_in(web, f"guess {n}", "mallory").status_code)
        return answers

    def analyst(n: int) -> int:
        with client(url, f"127.0.0.{n + 2}") as web:
            return sign_in(web, PASSWORD, analysts[n]).status_code

    with (
        running_dashboard(store, tmp_path / "dashboard.log") as url,
        ThreadPoolExecutor(16) as flooding,
        ThreadPoolExecutor(6) as signing_in,
    ):
        floods = [flooding.submit(flood, n) for n in range(16)]
        time.sleep(1)
        signed_in = list(signing_in.map(analyst, range(6)))
        stop.set()
        flooded = [code for f in floods for code in f.result(timeout=120)]
    assert signed_in == [303] * 6
    assert {401, 429} <= set(flooded)


def test_locks_grow_to_a_bound():
    locks = [Failures(count, 0.0).locked_for(0.0) for count in (4, 5, 6, 7, 13, 14, 1000)]
    assert locks == [0, 1, 2, 4, 256, 300, 300]
    assert Failures(5, 0.0).locked_for(0.5) == 0.5


def test_sign_ins_are_counted_by_address_and_ipv6_by_64():
    assert source_of("10.0.0.1") == "10.0.0.1"
    assert source_of("::ffff:10.0.0.1") == "10.0.0.1"
    assert source_of("2001:db8::1") == source_of("2001:db8::ffff:1") == "2001:db8::/64"
    assert source_of("testclient") == "testclient"
