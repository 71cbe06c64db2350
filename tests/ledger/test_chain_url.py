"""A run against a node the user started (`fedledger chain up` prints its URL), then its audit."""

from __future__ import annotations

import pytest
from ledger_fed import needs_anvil

from fedledger.cli.main import main
from fedledger.ledger.anvil import AnvilNode

pytestmark = [pytest.mark.anvil, pytest.mark.slow, needs_anvil]


def test_a_run_on_an_anvil_url_uses_its_dev_accounts_and_audits_against_that_node(tmp_path, capsys) -> None:
    node = AnvilNode(None).start()
    try:
        out = tmp_path / "run"
        assert main(["run", "--dataset", "digits", "--clients", "3", "--rounds", "1", "--model", "logreg",
                     "--dp", "none", "--proofs", "none", "--quiet", "--chain", node.url, "--out", str(out)]) == 0
        capsys.readouterr()
        # the chain is the node's, not the directory's: the default (auto) has nothing to start, and says so
        assert main(["audit", str(out)]) == 3
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--chain URL" in err[0]
        assert not (out / "chain" / "anvil-state.json").exists()  # nothing started on the directory's behalf
        assert main(["audit", "--chain", node.url, str(out)]) == 0
        assert "ok" in capsys.readouterr().out
    finally:
        node.stop()
