"""The inspector's JSON API through Starlette's TestClient: tokens, users kept apart, Host checks,
corrections through the public calls, bad input refused with nothing changed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from memoryos_core import ConfigError, HashingEmbedder, MemoryOS
from memoryos_core.app.ui import create_app, page_address, prepare_tokens
from tests.conftest import Clock
from tests.ui.filled import ADMIN_TOKEN, ALICE_TOKEN, BOB_TOKEN, HOSTILE, fill, tokens

BASE = "http://127.0.0.1:8765"


def _memory(folder: Path) -> MemoryOS:
    return MemoryOS(data_storage_path=folder, embedder=HashingEmbedder(64), background=False, clock=Clock())


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MemoryOS, dict[str, Any]]]:
    """One filled store for the tests that change nothing (each checks that it did not)."""
    memo = _memory(tmp_path_factory.mktemp("ui-api") / "data")
    ids = fill(memo)
    yield memo, ids
    memo.close()


@pytest.fixture
def memory(filled: tuple[MemoryOS, dict[str, Any]]) -> MemoryOS:
    return filled[0]


@pytest.fixture
def ids(filled: tuple[MemoryOS, dict[str, Any]]) -> dict[str, Any]:
    return filled[1]


@pytest.fixture
def client(memory: MemoryOS) -> Iterator[TestClient]:
    with TestClient(create_app(memory, tokens=tokens()), base_url=BASE) as test_client:
        yield test_client


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


ROUTES = [
    ("GET", "/api/session"),
    ("GET", "/api/users"),
    ("GET", "/api/users/alice/overview"),
    ("GET", "/api/users/alice/segments"),
    ("GET", "/api/users/alice/profile"),
    ("GET", "/api/users/alice/pages?ids=x"),
    ("POST", "/api/users/alice/search"),
    ("PATCH", "/api/users/alice/pages/x"),
    ("DELETE", "/api/users/alice/pages/x"),
    ("DELETE", "/api/users/alice/knowledge/kn_pasta"),
    ("DELETE", "/api/users/alice/traits/Hobby"),
]


@pytest.mark.parametrize(
    "headers",
    [{}, auth("w" * 40), {"Authorization": f"Basic {ALICE_TOKEN}"}, {"Authorization": "Bearer "}],
    ids=["none", "wrong", "basic", "empty"],
)
def test_every_api_route_answers_401_without_a_valid_token(
    client: TestClient, memory: MemoryOS, headers: dict[str, str]
) -> None:
    for method, path in ROUTES:
        response = client.request(method, path, headers=headers, json={"query": "x", "user_input": "y"})
        assert response.status_code == 401, (method, path)
        assert response.headers["www-authenticate"] == "Bearer"
        assert "Bearer" in response.json()["error"]
    assert len(memory.get_user_profile("alice").user_knowledge) == 2  # nothing was deleted
    assert len(memory.get_user_profile("alice").traits) == 2


def test_the_page_itself_needs_no_token_and_forbids_inline_script(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and "memory inspector" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert client.get("/static/ui.js").headers["content-type"].startswith("text/javascript")
    assert "innerHTML" not in client.get("/static/ui.js").text  # stored text is never parsed as markup


def test_a_user_token_sees_its_user_only_and_learns_nothing_of_others(
    client: TestClient, memory: MemoryOS
) -> None:
    bob_page = memory.recent_pages(user_id="bob")[0].id
    assert client.get("/api/users", headers=auth(ALICE_TOKEN)).json()["users"] == [
        {"user_id": "alice", "pages": 32}
    ]
    answers = []
    for other in ("bob", "nobody"):  # an existing user and a missing one get the same answer
        for method, path in ROUTES[2:]:
            path = (
                path.replace("/alice/", f"/{other}/")
                .replace("/x", f"/{bob_page}")
                .replace("=x", "=" + bob_page)
            )
            response = client.request(method, path, headers=auth(ALICE_TOKEN), json={"query": "cooking"})
            assert response.status_code == 403, (method, path)
            answers.append(response.json())
    assert all(answer == answers[0] for answer in answers)
    assert [page.id for page in memory.get_pages([bob_page], user_id="bob")] == [bob_page]
    assert client.get("/api/users/alice/overview", headers=auth(BOB_TOKEN)).status_code == 403


def test_the_admin_token_lists_every_user_with_page_counts(client: TestClient) -> None:
    assert client.get("/api/session", headers=auth(ADMIN_TOKEN)).json()["admin"] is True
    users = client.get("/api/users", headers=auth(ADMIN_TOKEN)).json()["users"]
    assert users == [{"user_id": "alice", "pages": 32}, {"user_id": "bob", "pages": 2}]
    assert (
        client.get("/api/users/bob/overview", headers=auth(ADMIN_TOKEN)).json()["stats"]["user_id"] == "bob"
    )


def test_other_hosts_and_origins_are_refused(memory: MemoryOS, ids: dict[str, Any]) -> None:
    app = create_app(memory, tokens=tokens())
    with TestClient(app, base_url="http://evil.example:8765") as rebound:
        assert rebound.get("/api/session", headers=auth(ADMIN_TOKEN)).status_code == 421
        assert rebound.get("/").status_code == 421
    with TestClient(app, base_url=BASE) as local:
        cross = local.delete(
            f"/api/users/alice/pages/{ids['parrot']}",
            headers=auth(ADMIN_TOKEN) | {"Origin": "http://evil.example"},
        )
        assert cross.status_code == 403
        form = local.post(
            "/api/users/alice/search",
            headers=auth(ADMIN_TOKEN) | {"Content-Type": "text/plain"},
            content=b'{"query": "parrot"}',
        )
        assert form.status_code == 400  # a body that is not declared JSON (a cross-site form) is refused
    assert memory.get_pages([ids["parrot"]], user_id="alice")
    with TestClient(
        create_app(memory, tokens=tokens(), host="10.0.0.5", allowed_hosts=["memory.example.com"]),
        base_url="http://memory.example.com",
    ) as named:
        assert named.get("/api/session", headers=auth(ADMIN_TOKEN)).status_code == 200


def test_search_breaks_down_each_score_and_changes_no_heat(
    client: TestClient, memory: MemoryOS, ids: dict[str, Any]
) -> None:
    before = {s.id: s.n_visit for s in memory.get_segments(user_id="alice")}
    found = client.post(
        "/api/users/alice/search",
        headers=auth(ALICE_TOKEN),
        json={"query": "the parrot named Kiwi", "top_k": 5},
    ).json()
    assert found["units"][0]["id"] == ids["parrot"]
    for unit in found["units"]:
        assert sum(unit["score_parts"].values()) == pytest.approx(unit["score"], abs=1e-4)
    assert found["units"][0]["score_parts"]["lexical"] > 0
    client.post("/api/users/alice/search", headers=auth(ALICE_TOKEN), json={"query": "hiking boots"})
    assert {s.id: s.n_visit for s in memory.get_segments(user_id="alice")} == before


def test_segments_profile_and_pages_views(client: TestClient, ids: dict[str, Any]) -> None:
    segments = client.get("/api/users/alice/segments", headers=auth(ALICE_TOKEN)).json()
    assert segments["segments"] and segments["heat_threshold"] > 0
    heats = [s["heat"] for s in segments["segments"]]
    assert heats == sorted(heats, reverse=True)
    profile = client.get("/api/users/alice/profile", headers=auth(ALICE_TOKEN)).json()
    assert {t["name"]: t["value"] for t in profile["traits"]}[
        "Pet"
    ] == HOSTILE  # as stored: escaped by the page
    pages = client.get(
        f"/api/users/alice/pages?ids={ids['parrot']},{ids['pages'][0]}", headers=auth(ALICE_TOKEN)
    )
    assert [p["id"] for p in pages.json()["pages"]] == [ids["parrot"], ids["pages"][0]]
    overview = client.get("/api/users/alice/overview", headers=auth(ALICE_TOKEN)).json()
    assert overview["stats"]["profile_traits"] == 2 and overview["recent_pages"]


def test_corrections_go_through_the_public_calls(tmp_path: Path) -> None:
    memory = _memory(tmp_path / "data")  # a store of its own: this test changes it
    ids = fill(memory)
    with TestClient(create_app(memory, tokens=tokens()), base_url=BASE) as client:
        _correct(client, memory, ids)
    memory.close()


def _correct(client: TestClient, memory: MemoryOS, ids: dict[str, Any]) -> None:
    parrot, headers = ids["parrot"], auth(ALICE_TOKEN)
    edited = client.patch(
        f"/api/users/alice/pages/{parrot}", headers=headers, json={"agent_response": "Kiwi!"}
    )
    assert edited.status_code == 200 and edited.json()["pages"][0]["agent_response"] == "Kiwi!"
    assert client.delete("/api/users/alice/traits/hobby", headers=headers).status_code == 200
    memory.import_memory({"profile": [{"name": "Food/drink", "value": "tea"}]}, user_id="alice")
    assert client.delete("/api/users/alice/traits/food%2Fdrink", headers=headers).json() == {
        "deleted": "food/drink"
    }
    assert client.delete("/api/users/alice/knowledge/kn_pasta", headers=headers).status_code == 200
    deleted = client.delete(f"/api/users/alice/pages/{parrot}", headers=headers)
    assert deleted.json() == {"deleted_pages": 1}
    profile = memory.get_user_profile("alice")
    assert profile.traits == () and profile.user_knowledge == ()  # the rest cited the parrot page
    assert memory.get_pages([parrot], user_id="alice") == []
    assert client.delete(f"/api/users/alice/pages/{parrot}", headers=headers).status_code == 404


@pytest.mark.parametrize(
    ("method", "path", "body", "message"),
    [
        ("PATCH", "/pages/{parrot}", {"user_input": 5}, "user_input must be a string"),
        ("PATCH", "/pages/{parrot}", {"tier": "archive"}, "only user_input and agent_response"),
        ("PATCH", "/pages/{parrot}", {}, "give user_input or agent_response"),
        ("PATCH", "/pages/{parrot}", {"user_input": "", "agent_response": ""}, "non-empty"),
        ("PATCH", "/pages/{parrot}", [1, 2], "must be a JSON object"),
        ("PATCH", "/pages/pg_missing", {"user_input": "x"}, "no page"),
        ("DELETE", "/pages/bad id!", None, "page_id"),
        ("DELETE", "/knowledge/kn_missing", None, "no knowledge item"),
        ("DELETE", "/traits/Nope", None, "no profile trait"),
        ("POST", "/search", {"query": "  "}, "query must be a non-empty string"),
        ("POST", "/search", {"query": "x", "top_k": 0}, "top_k must be an integer from 1 to 100"),
        ("POST", "/search", {"query": "x", "top_k": True}, "top_k"),
        ("GET", "/pages?ids=", None, "ids must name"),
        ("GET", "/pages?ids=bad id", None, "id"),
    ],
)
def test_bad_input_is_a_4xx_with_a_clear_message_and_changes_nothing(
    client: TestClient, memory: MemoryOS, ids: dict[str, Any], method: str, path: str, body: Any, message: str
) -> None:
    before = memory.export_memory("alice")
    url = "/api/users/alice" + path.format(parrot=ids["parrot"])
    response = client.request(method, url, headers=auth(ALICE_TOKEN), json=body)
    assert 400 <= response.status_code < 500
    assert message in response.json()["error"]
    assert memory.export_memory("alice") == before


def test_a_bad_user_id_and_a_body_that_is_not_json(client: TestClient) -> None:
    assert client.get("/api/users/bad%20id/overview", headers=auth(ADMIN_TOKEN)).status_code == 400
    response = client.post(
        "/api/users/alice/search",
        headers=auth(ALICE_TOKEN) | {"Content-Type": "application/json"},
        content=b"{not json",
    )
    assert response.status_code == 400 and "not JSON" in response.json()["error"]


def test_tokens_are_required_off_loopback_and_made_for_a_run_on_it() -> None:
    with pytest.raises(ConfigError, match="needs tokens"):
        prepare_tokens(None, "10.0.0.5")
    served, made = prepare_tokens(None, "127.0.0.1")
    assert made is not None and len(made) >= 32
    grant = served.grant_for(made)
    assert grant is not None and grant.is_admin
    table = tokens()
    assert prepare_tokens(table, "10.0.0.5") == (table, None)  # configured tokens: none is made
    assert page_address("127.0.0.1", 8765, made) == f"http://127.0.0.1:8765/#token={made}"
    assert page_address("::1", 80, None) == "http://[::1]:80/"
