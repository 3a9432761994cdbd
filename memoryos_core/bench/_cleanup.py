"""What a benchmark run against a shared Chroma server leaves there is dropped at its end."""

from __future__ import annotations

from urllib.parse import urlparse


def drop_server_collections(url: str, prefix: str) -> None:
    """Remove every collection whose name starts with ``prefix`` from the Chroma server at ``url``."""
    import chromadb
    from chromadb.config import Settings

    parsed = urlparse(url)
    client = chromadb.HttpClient(
        host=parsed.hostname or "127.0.0.1",
        port=parsed.port or 8000,
        ssl=parsed.scheme == "https",
        settings=Settings(anonymized_telemetry=False),
    )
    for collection in client.list_collections():
        name = str(getattr(collection, "name", collection))
        if name.startswith(prefix):
            client.delete_collection(name)
