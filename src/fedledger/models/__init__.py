"""Layer 1: the model zoo and flat parameter vectors."""

from fedledger.models.flat import get_flat, layout_of, num_params, set_flat
from fedledger.models.zoo import FACTORY_SIGNATURE, MODELS, build_model

__all__ = ["FACTORY_SIGNATURE", "MODELS", "build_model", "get_flat", "layout_of", "num_params", "set_flat"]
