"""Layer-wise allocations, each registered by name (``secateurs.registry.get("allocation", name)``)."""
from . import erdos_renyi, global_, owl, uniform  # noqa: F401  (registration)
from .base import Allocation, LayerInfo, allocate

__all__ = ["Allocation", "LayerInfo", "allocate"]
