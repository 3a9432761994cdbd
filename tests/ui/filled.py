"""The store the inspector's tests fill: two users, segments, traits and knowledge, hostile text."""

from __future__ import annotations

from typing import Any

from memoryos_core import MemoryOS
from memoryos_core.app.mcp_access import TokenTable, parse_tokens
from tests.conftest import topic_pages

ALICE_TOKEN = "a" * 40
BOB_TOKEN = "b" * 40
ADMIN_TOKEN = "z" * 40
HOSTILE = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'
PARROT = "My sister Ophelia adopted a grey parrot named Kiwi who whistles opera."


def tokens() -> TokenTable:
    return parse_tokens(
        [("t", f"{ALICE_TOKEN} user:alice"), ("t", f"{BOB_TOKEN} user:bob"), ("t", f"{ADMIN_TOKEN} admin")]
    )


def fill(memory: MemoryOS) -> dict[str, Any]:
    """Alice: a parrot page, a hostile page and three topics, consolidated into segments but the
    newest (short-term), traits and knowledge citing pages; bob: two pages. Returns the ids."""
    parrot = memory.add_memory(PARROT, "Kiwi sounds like a star.", user_id="alice").page_id
    hostile = memory.add_memory(HOSTILE, "Stored as text.", user_id="alice").page_id
    pages = topic_pages("hiking", 10) + topic_pages("cooking", 10) + topic_pages("coding", 10)
    ids = [added.page_id for added in memory.add_memories(pages, user_id="alice")]
    memory.add_memories(topic_pages("cooking", 2), user_id="bob")
    memory.flush("alice")
    memory.import_memory(
        {
            "profile": [
                {"name": "Hobby", "value": "hiking in the alpine mountains", "page_ids": [ids[0]]},
                {"name": "Pet", "value": HOSTILE, "page_ids": [parrot]},
            ],
            "user_knowledge": [
                {"id": "kn_pasta", "text": "Cooks pasta with basil.", "page_ids": [ids[10]]},
                {"id": "kn_parrot", "text": "Their sister keeps a bird.", "page_ids": [parrot]},
            ],
        },
        user_id="alice",
    )
    return {"pages": ids, "parrot": parrot, "hostile": hostile}
