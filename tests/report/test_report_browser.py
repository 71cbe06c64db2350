"""The report as a user sees it: a real run on anvil (the whole system, with an aggregator that tampers with its
result), `fedledger report`, the page rendered by headless Chromium. Asserts on the rendered DOM's text and on
the screenshot's pixels."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from fedledger.cli.main import main as fedledger_main
from fedledger.ledger.anvil import find_anvil

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.slow, pytest.mark.anvil,
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make setup installs Debian's chromium)"),
    pytest.mark.skipif(find_anvil() is None, reason="anvil is not installed (make node)"),
]


def chromium(tmp: Path, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp / 'profile'}",
         *extra, url],
        capture_output=True, text=True, timeout=120, check=True)


class _Cards(HTMLParser):
    """The at-a-glance cards of the rendered DOM: {label: (value, detail)}."""

    def __init__(self) -> None:
        super().__init__()
        self.cards: dict[str, list[str]] = {}
        self.field: str | None = None
        self.current: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        cls = (dict(attrs).get("class") or "").split()
        if tag == "div" and {"label", "value", "detail"} & set(cls):
            self.field = next(c for c in cls if c in ("label", "value", "detail"))
            if self.field == "label":
                self.current = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "div" and self.field is not None:
            self.field = None
            if len(self.current) == 3:
                self.cards[self.current[0]] = self.current[1:]

    def handle_data(self, data: str) -> None:
        if self.field is not None:
            if len(self.current) < {"label": 1, "value": 2, "detail": 3}[self.field]:
                self.current.append("")
            self.current[-1] += data


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("browser_run")
    assert fedledger_main(["run", "--dataset", "digits", "--clients", "4", "--rounds", "2", "--model", "logreg",
                           "--max-samples", "600", "--baseline", "--attack", "malicious_aggregator", "--quiet",
                           "--out", str(out)]) == 0
    assert fedledger_main(["report", str(out)]) == 0
    return out


def test_the_page_explains_the_run_at_a_glance(run: Path, tmp_path: Path) -> None:
    res = json.loads((run / "results.json").read_text())
    dom = chromium(tmp_path, (run / "report.html").as_uri(), "--dump-dom").stdout
    parser = _Cards()
    parser.feed(dom)
    cards = {k.strip().lower(): [v.strip() for v in vs] for k, vs in parser.cards.items()}
    assert cards["status"][0] == "complete" and cards["status"][1] == "2 of 2 rounds, 2 finalized on chain"
    assert cards["trained"][1] == "logreg on digits, 4 members (dirichlet:0.5), fedavg, 2 rounds"
    assert cards["accuracy"][0] == f"{res['final_accuracy']:.4f}"
    assert f"centralized baseline {res['centralized_accuracy']:.4f}" in cards["accuracy"][1]
    p = res["privacy"]
    assert cards["privacy"][0] == f"ε {p['epsilon_spent']:.3f} of {p['epsilon_budget']:.3f}"
    assert cards["audit"][0] == "passed" and "2 finalized rounds re-verified" in cards["audit"][1]
    # the tampering aggregator was rejected and slashed in both rounds: the card names it, the round and why
    slashed = res["ledger"]["slashed"]
    assert slashed and cards["slashed"][0] == str(len(slashed))
    for s in slashed:
        assert f"in round {s['round']} (rejected result)" in cards["slashed"][1]
    trainers = [b for k, b in res["ledger"]["balances"].items() if k.startswith("trainer")]
    assert cards["paid"][0] == f"{sum(b['reward'] for b in trainers):.4g} tokens"
    assert cards["proofs"][0] == "development keys"
    # every section a reader navigates to is on the page, with its charts as inline PNGs
    for section in ("summary", "accuracy", "privacy", "proofs", "time", "participation", "ledger", "config"):
        assert f'id="{section}"' in dom
    assert len(re.findall(r'<img [^>]*src="data:image/png;base64,', dom)) >= 6


def test_the_screenshot_shows_the_cards_and_charts(run: Path, tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    shot = tmp_path / "report.png"
    chromium(tmp_path, (run / "report.html").as_uri(), f"--screenshot={shot}", "--window-size=1200,1800")
    image = Image.open(shot).convert("RGB")
    assert image.size == (1200, 1800)
    # the cards' coloured left borders: green (status, audit), red (slashed), amber (development keys)
    colours = {tuple(int(c) for c in p) for p in np.unique(np.asarray(image).reshape(-1, 3), axis=0)}
    for rgb in ((0x1B, 0x7F, 0x3B), (0xB0, 0x00, 0x20), (0xC0, 0x7A, 0x00)):
        assert rgb in colours, f"no pixel of colour {rgb}: the cards did not render"
    # the accuracy chart's line (matplotlib's tab:blue) is drawn inside the first screen
    assert (0x1F, 0x77, 0xB4) in colours
