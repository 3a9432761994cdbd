"""Test helpers shipped with MemoryOS: a network guard and a fake OpenAI-compatible server."""

from memoryos_core.testing.fake_openai import FakeOpenAIServer, Fault, RecordedRequest
from memoryos_core.testing.network import (
    NetworkBlockedError,
    allow_network,
    block_network,
    check_network_allowed,
    is_loopback_host,
    is_network_blocked,
)

__all__ = [
    "FakeOpenAIServer",
    "Fault",
    "NetworkBlockedError",
    "RecordedRequest",
    "allow_network",
    "block_network",
    "check_network_allowed",
    "is_loopback_host",
    "is_network_blocked",
]
