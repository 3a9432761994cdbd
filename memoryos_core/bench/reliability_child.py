"""The writer process of ``memoryos bench reliability``'s crash half: what it does (``ChildSpec``,
``child_main``, run as ``python -m memoryos_core.bench.reliability_child child SPEC``), and one round of
starting it and SIGKILLing it (``kill_round``). ``child_env`` is the environment of any child process of
the benches and tests.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from memoryos_core._config import MemoryConfig, MidTermConfig, ShortTermConfig
from memoryos_core._types import ChatMessage
from memoryos_core.embeddings.fake import HashingEmbedder
from memoryos_core.engine.memory import MemoryOS
from memoryos_core.llm.fake import FunctionLLM
from memoryos_core.llm.rules import RuleBasedLLM
from memoryos_core.storage.chroma import ChromaStore

CRASH_USERS = ("crash_a", "crash_b")
CRASH_CONFIG = MemoryConfig(
    short_term=ShortTermConfig(capacity=3, batch_pages=4, max_wait_s=0.3),
    mid_term=MidTermConfig(capacity=12, heat_threshold=4.0),
)
"""Small tiers, so a few seconds of writing consolidate, promote and archive many times."""
TOPICS = (
    "I love hiking mountain trails with my dog on weekends",
    "I work as a nurse on night shifts at the city hospital",
    "I like cooking pasta with fresh basil and garden tomatoes",
    "I am learning guitar chords and jazz songs every evening",
    "I prefer trains to planes when I travel across Europe",
)


SERVER_SETTLE_S = 1.0
"""Wait after killing a writer of a ``chroma run`` server: the server completes the requests it had
received (a page written then would be one more short-term page than the checks' flush saw)."""


@dataclass(frozen=True)
class StoreSpec:
    """Where a store lives: a folder (embedded Chroma) or a ``chroma run`` URL, and a prefix."""

    path: str | None = None
    url: str | None = None
    prefix: str = "memoryos_"

    def make(self) -> ChromaStore:
        return ChromaStore(path=self.path, url=self.url, prefix=self.prefix)


@dataclass(frozen=True)
class ChildSpec:
    """What one writer process does until it is killed."""

    store: StoreSpec
    round: int
    users: tuple[str, ...] = CRASH_USERS
    llm_delay_s: float = 0.05
    pause_s: float = 0.05
    """Between adds: slow enough for consolidation to keep up, so kills also land in promotion."""
    lease_ttl_s: float = 2.0


@dataclass
class RoundResult:
    """What a killed writer reported: accepted pages (id -> (user, marker)) and its events."""

    accepted: dict[str, tuple[str, str]]
    events: Counter[str]
    delay_s: float
    exit_code: int


def slow_rules_llm(delay_s: float) -> FunctionLLM:
    """RuleBasedLLM behind a delay, so consolidation and promotion are in flight for a while."""
    rules = RuleBasedLLM()

    def answer(messages: Sequence[ChatMessage], json_mode: bool) -> str:
        time.sleep(delay_s)
        return rules.complete(messages, json_mode=json_mode)

    return FunctionLLM(answer, name="slow-rules")


def page_text(rng: random.Random, marker: str) -> str:
    return f"{rng.choice(TOPICS)}, note {marker}."


# --- the writer process --------------------------------------------------------------------------
def child_main(raw_spec: str) -> None:
    """Write pages forever, printing ``page <id> <user> <marker>`` after each add returned."""
    spec = json.loads(raw_spec)
    from memoryos_core.engine import lease as _lease

    # One writer runs at a time and the last one was SIGKILLed holding its lease: a short TTL
    # lets this one take over within seconds instead of LEASE_TTL_S (see the bench's notes).
    _lease.LEASE_TTL_S = float(spec["lease_ttl_s"])
    out = threading.Lock()

    def say(*parts: object) -> None:
        with out:
            sys.stdout.write(" ".join(str(p) for p in parts) + "\n")
            sys.stdout.flush()

    users = list(spec["users"])
    memory = MemoryOS(
        user_id=users[0],
        store=StoreSpec(**spec["store"]).make(),
        embedder=HashingEmbedder(64),
        llm=slow_rules_llm(float(spec["llm_delay_s"])),
        config=CRASH_CONFIG,
        background=True,
        on_event=lambda name, details: say("event", name),
    )
    memory.get_memory_stats()  # opens the store: the last writer's pending work is scheduled
    say("ready")
    rng = random.Random(spec["round"])
    for i in range(1_000_000):
        user = users[i % len(users)]
        markers = [f"r{spec['round']}p{i}x{j}" for j in range(1 if i % 7 else 3)]
        items = [
            {
                "user_input": page_text(rng, m),
                "agent_response": "I will remember that.",
                "meta_data": {"message_id": m},
            }
            for m in markers
        ]
        for result, marker in zip(memory.add_memories(items, user_id=user), markers):
            say("page", result.page_id, user, marker)
        if i % 5 == 4:
            memory.retrieve_memory(rng.choice(TOPICS), user_id=user)
        time.sleep(float(spec["pause_s"]))


def _child_command(spec: ChildSpec) -> list[str]:
    return [sys.executable, "-m", "memoryos_core.bench.reliability_child", "child", json.dumps(asdict(spec))]


def child_env() -> dict[str, str]:
    """The environment of a child process: this checkout first on the import path."""
    root = str(Path(__file__).resolve().parents[2])
    return os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}


def kill_round(spec: ChildSpec, delay_s: float, *, startup_timeout_s: float = 120.0) -> RoundResult:
    """Start a writer, SIGKILL it ``delay_s`` after it is ready, and collect what it reported."""
    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(
            _child_command(spec), stdout=subprocess.PIPE, stderr=stderr, text=True, env=child_env()
        )
        lines: list[str] = []
        ready = threading.Event()

        def read() -> None:
            for line in proc.stdout:  # type: ignore[union-attr]
                lines.append(line.rstrip("\n"))
                if line.startswith("ready"):
                    ready.set()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        deadline = time.monotonic() + startup_timeout_s
        while not ready.wait(0.05):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                stderr.seek(0)
                tail = stderr.read().decode(errors="replace")[-2000:]
                raise RuntimeError(f"writer did not start (exit {proc.returncode}):\n{tail}")
        time.sleep(delay_s)
        os.kill(proc.pid, signal.SIGKILL)
        code = proc.wait()
        reader.join(10)
        if spec.store.url:  # a request the server had received still completes: let it, before any check
            time.sleep(SERVER_SETTLE_S)
    accepted = {}
    events: Counter[str] = Counter()
    for line in lines:
        parts = line.split()
        if parts[:1] == ["page"] and len(parts) == 4:
            accepted[parts[1]] = (parts[2], parts[3])
        elif parts[:1] == ["event"] and len(parts) == 2:
            events[parts[1]] += 1
    return RoundResult(accepted, events, delay_s, code)


if __name__ == "__main__" and sys.argv[1:2] == ["child"]:
    child_main(sys.argv[2])
