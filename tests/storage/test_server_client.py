"""The HTTP client to a `chroma run` server: certificates are loaded (and verified) only over HTTPS."""

from __future__ import annotations

import ssl
from typing import Any

import pytest

from memoryos_core.storage._connection import chroma_client


class _CertificatesLoaded(Exception):
    pass


@pytest.fixture
def no_certificates(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading a certificate bundle raises: what httpx does for a verifying client."""

    def refuse(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        raise _CertificatesLoaded

    monkeypatch.setattr(ssl, "create_default_context", refuse)


@pytest.mark.usefixtures("no_certificates")
def test_a_plain_http_server_is_reached_without_loading_certificates(chroma_server_url: str) -> None:
    client = chroma_client(url=chroma_server_url, timeout_s=10)
    assert client.heartbeat() > 0
    assert client.list_collections() is not None


@pytest.mark.usefixtures("no_certificates")
def test_an_https_server_is_verified(chroma_server_url: str) -> None:
    https = chroma_server_url.replace("http://", "https://", 1)
    with pytest.raises(_CertificatesLoaded):
        chroma_client(url=https, timeout_s=10)
