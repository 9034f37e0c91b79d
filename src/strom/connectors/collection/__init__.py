"""Collection source: emit the elements of a Python collection (``from_collection``)."""

from strom.connectors.collection.source import CollectionSource

__all__ = ["CollectionSource"]
