"""Layer 1: the model zoo and flat parameter vectors."""

from fedledger.models.flat import get_flat, layout_of, num_params, set_flat
from fedledger.models.zoo import MODELS, build_model

__all__ = ["MODELS", "build_model", "get_flat", "layout_of", "num_params", "set_flat"]
