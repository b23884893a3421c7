"""The web console's page and admin data over HTTP; tests/gateway/test_console_browser.py drives it in Chromium."""

from __future__ import annotations

import httpx
import pytest

from gateway.app import create_app
from tests.conftest import LiveServer, make_settings, run
from tests.gateway.console_home import DEPARTMENTS, console_server


@pytest.fixture(scope="module")
def console(tiny_model_dir, tmp_path_factory):
    with console_server(tmp_path_factory.mktemp("console-home"), tiny_model_dir, max_new_tokens=4) as served:
        yield served


def test_the_page_and_its_files_are_served_without_a_build_step(console) -> None:
    live, _ = console
    page = httpx.get(live.url + "/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert '<script src="/console/static/console.js"' in page.text and "http" not in page.text.split("<body>")[1]
    assert httpx.get(live.url + "/console/static/console.js").status_code == 200


def test_models_view_has_every_department_with_its_versions_and_latest_scores(console) -> None:
    live, _ = console
    departments = {d["id"]: d for d in httpx.get(live.url + "/console/api/models").json()["departments"]}
    assert list(departments) == list(DEPARTMENTS)
    hr = departments["hr"]
    assert hr["serving"] == "full" and hr["live"]["method"] == "full" and hr["memory_bytes"] > 0
    assert [v["accuracy"] for v in hr["previous"]] == [0.5]
    assert hr["report"] == "hr-20261201-100500.json" and hr["accuracy"] == {"base": 0.25, "live": 0.5}
    assert departments["sales"]["serving"] == "base" and departments["sales"]["report"] is None


def test_eval_view_has_every_answer_and_says_how_to_get_a_report(console) -> None:
    live, _ = console
    view = httpx.get(live.url + "/console/api/evals/hr").json()
    trained = view["evaluations"][1]
    assert trained["title"] == "full full-20261201 + grounding"
    assert [a["correct"] for a in trained["answers"]] == [True, False, True, False]
    missing = httpx.get(live.url + "/console/api/evals/sales")
    assert missing.status_code == 404 and "switchboard eval sales" in missing.json()["error"]["message"]
    assert httpx.get(live.url + "/console/api/evals/legal").status_code == 404


def test_status_shows_health_channels_and_what_was_answered(console) -> None:
    live, _ = console
    body = {"model": "hr", "messages": [{"role": "user", "content": "leave?"}]}
    assert httpx.post(live.url + "/v1/chat/completions", json=body, timeout=60).status_code == 200
    status = httpx.get(live.url + "/console/api/status").json()
    assert status["ready"] is True and status["channels"] == {} and status["queue"] is None
    assert status["backend"] == "torch"  # a tiny Llama has no GGUF of its own to serve
    assert status["departments"]["hr"]["requests"]["ok"] >= 1 and status["departments"]["hr"]["tokens"] > 0


def test_a_console_conversation_is_remembered_under_its_own_key(console) -> None:
    live, components = console
    body = {"model": "auto", "conversation_id": "tab-1", "messages": [{"role": "user", "content": "/hr leave?"}]}
    first = httpx.post(live.url + "/v1/chat/completions", json=body, timeout=60).json()
    assert first["model"] == "hr"
    body["messages"] = [{"role": "user", "content": "and sick leave?"}]
    second = httpx.post(live.url + "/v1/chat/completions", json=body, timeout=60).json()
    assert second["switchboard"]["reason"] == "command"  # the /hr pin, remembered
    remembered = run(components.pipeline.memory.window("web:tab-1"))
    assert [t.content for t in remembered if t.role == "user"] == ["leave?", "and sick leave?"]
    body["conversation_id"] = "telegram:42/../x"
    assert httpx.post(live.url + "/v1/chat/completions", json=body, timeout=60).status_code == 400


def test_with_an_api_key_the_data_needs_it_and_admin_views_can_be_turned_off(tiny_model_dir, tmp_path) -> None:
    settings = make_settings(tmp_path, tiny_model_dir, router="commands", api_key="s3cret", reload_interval_seconds=0)
    app = create_app(settings)
    with LiveServer(app) as live:
        assert httpx.get(live.url + "/").status_code == 200  # the page asks for the key itself
        assert httpx.get(live.url + "/console/api/models").status_code == 401
        keyed = httpx.get(live.url + "/console/api/models", headers={"authorization": "Bearer s3cret"})
        assert keyed.status_code == 200
    off = make_settings(tmp_path, tiny_model_dir, router="commands", console_admin=False, reload_interval_seconds=0)
    with LiveServer(create_app(off)) as live:
        assert httpx.get(live.url + "/console/api/status").status_code == 404
        assert httpx.get(live.url + "/").status_code == 200
    no_console = make_settings(tmp_path, tiny_model_dir, router="commands", console=False, reload_interval_seconds=0)
    with LiveServer(create_app(no_console)) as live:
        assert httpx.get(live.url + "/").status_code == 404
