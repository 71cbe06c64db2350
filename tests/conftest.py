"""Suite-wide settings: tests run in parallel workers (pytest-xdist), so each uses one torch thread."""

import pytest
import torch

from fedledger.protocol.roles import Validator

torch.set_num_threads(1)


@pytest.fixture
def reasons(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Why validators rejected (the real check runs; its verdicts are recorded)."""
    seen: list[str] = []
    check = Validator.check

    def recording(self: Validator, view: object) -> bool:
        ok = check(self, view)
        if not ok:
            seen.append(self.last_reason)
        return ok

    monkeypatch.setattr(Validator, "check", recording)
    return seen
