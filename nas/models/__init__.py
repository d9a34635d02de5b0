"""Segmentation networks: the baselines and (in `genotype_net`) the searched network.

Everything is built by name through one registry::

    from nas.models import build_model, list_models
    net = build_model("attunet", out_channels=2, width=32)

Importing this package imports every baseline module so that it registers itself; the genotype
network registers itself when `nas.models.genotype_net` is imported (the registry imports it
lazily on the first look-up that needs it).
"""

from nas.models.registry import build_model, list_models, model_info, register_model

# Imported for their registration side effect.
from nas.models import (  # noqa: E402,F401  isort: skip
    aernet,
    attunet,
    elunet,
    improved_unet,
    mobilenetv2_unet,
    r2attunet,
    r2unet,
    unet,
    unet3plus,
)

__all__ = ["build_model", "list_models", "model_info", "register_model"]
