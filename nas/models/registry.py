"""One name -> constructor registry for every network skipnas can train.

Baselines (`nas/models/<name>.py`) and the network built from a searched genotype
(`nas/models/genotype_net.py`, registered as ``genotype``) share this registry, so the retrain
loop, the CLI's ``--list-models`` and checkpoint re-loading only ever need a name and kwargs.

Usage::

    @register_model("unet")
    class UNet(nn.Module):
        '''U-Net (Ronneberger et al., MICCAI 2015): ...'''

    net = build_model("unet", width=32)

Names are lower-case identifiers; look-ups ignore case and accept ``-`` for ``_``. Errors the
user can fix (an unknown model, an argument the model does not take) raise
`nas.errors.UserError` with a one-line message that lists the valid choices.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
from typing import Any, Callable, TypeVar

from torch import nn

from nas.errors import UserError

F = TypeVar("F", bound=Callable[..., nn.Module])

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")

# Modules that register models but are not imported by `nas.models` itself: imported lazily on
# the first look-up that needs them, so an import cycle (genotype_net -> supernet -> models) or a
# bug in one of them can never break building a baseline.
_LAZY_PROVIDERS = ("nas.models.genotype_net",)
_providers_loaded = False


def register_model(name: str) -> Callable[[F], F]:
    """Class/function decorator: make ``build_model(name, ...)`` call the decorated constructor.

    The constructor's keyword arguments are the model's options; its docstring's first line is
    the citation shown by `model_info`. Registering a different object under a taken name is a
    programming error (``ValueError``); re-registering the same qualified name (a module reload)
    replaces the entry.
    """
    if not _NAME_RE.match(name):
        raise ValueError(f"model name {name!r} must be a lower-case identifier")

    def decorator(factory: F) -> F:
        old = _REGISTRY.get(name)
        if old is not None and _qualname(old) != _qualname(factory):
            raise ValueError(f"model name {name!r} is already registered by {_qualname(old)}")
        _REGISTRY[name] = factory
        if inspect.isclass(factory):
            factory.registry_name = name  # used by argument checks in error messages
        return factory

    return decorator


def list_models() -> list[str]:
    """Sorted names of every registered model (baselines and, when available, ``genotype``)."""
    _load_providers()
    return sorted(_REGISTRY)


def model_info(name: str) -> str:
    """The paper citation of a model: the first line of its constructor's docstring."""
    doc = inspect.getdoc(_lookup(name)) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the model registered as `name` with keyword options `kwargs`.

    Raises:
        UserError: unknown model name (message lists the registered ones), an argument the
            model does not take (message names it and lists the valid ones), or a missing
            required argument. Invalid argument *values* are reported by the model itself.
    """
    factory = _lookup(name)
    key = _normalise(name)
    signature = inspect.signature(factory)
    params = signature.parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    valid = [p for p, v in params.items()
             if v.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)]
    if not takes_any:
        for arg in kwargs:
            if arg not in valid:
                raise UserError(f"model '{key}' has no argument '{arg}'; "
                                f"its arguments are: {', '.join(valid) or '(none)'}")
    missing = [p for p in valid if params[p].default is inspect.Parameter.empty and p not in kwargs]
    if missing:
        raise UserError(f"model '{key}' needs argument(s): {', '.join(missing)}")
    return factory(**kwargs)


def _normalise(name: str) -> str:
    return str(name).strip().lower().replace("-", "_")


def _lookup(name: str) -> Callable[..., nn.Module]:
    key = _normalise(name)
    if key not in _REGISTRY:
        _load_providers()
    if key not in _REGISTRY:
        raise UserError(f"unknown model '{name}'; known models: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[key]


def _load_providers() -> None:
    global _providers_loaded
    if _providers_loaded:
        return
    importlib.import_module("nas.models")  # the baselines register on import
    for module in _LAZY_PROVIDERS:
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module)  # a broken provider raises here, on every look-up
    _providers_loaded = True


def _qualname(obj: object) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"
