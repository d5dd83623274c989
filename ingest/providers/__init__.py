"""The provider registry: one module per ESP, each behind :class:`~ingest.providers.base.Provider`.

Adding a provider means one new module, one line here, and its tests.
"""

from __future__ import annotations

from ingest.providers.base import InboundRequest, NormalizeContext, Provider
from ingest.providers.generic import GenericProvider

PROVIDERS: dict[str, type[Provider]] = {provider.name: provider for provider in (GenericProvider,)}

__all__ = ["PROVIDERS", "InboundRequest", "NormalizeContext", "Provider"]
