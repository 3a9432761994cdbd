"""What a benchmark run against a shared Chroma server leaves there is dropped at its end."""

from __future__ import annotations

from memoryos_core.storage._lifecycle import close_server_client
from memoryos_core.storage.chroma import chroma_client


def drop_server_collections(url: str, prefix: str) -> None:
    """Remove every collection whose name starts with ``prefix`` from the Chroma server at ``url``."""
    client = chroma_client(url=url)
    try:
        for collection in client.list_collections():
            name = str(getattr(collection, "name", collection))
            if name.startswith(prefix):
                client.delete_collection(name)
    finally:
        close_server_client(client)
