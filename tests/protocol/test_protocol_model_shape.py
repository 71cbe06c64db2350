"""An auditor rebuilds the task's model from the spec alone: its input shape and classes come from the spec
(recorded for every new task, so own data works) or, for older specs, from the bundled data set's registry."""

from __future__ import annotations

import pytest

from fedledger.core.errors import DataError
from fedledger.protocol.rules import model_shape


def test_shape_from_the_spec_then_the_registry() -> None:
    assert model_shape({"dataset": "patients", "input_shape": [33], "num_classes": 2}) == ((33,), 2)
    assert model_shape({"dataset": "digits"}) == ((64,), 10)
    with pytest.raises(DataError, match="not bundled, and records no input shape"):
        model_shape({"dataset": "patients"})
