"""Any company, any departments: a company folder with a sixth department, served and trained with no code change."""

import json
import shutil
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from core.company import BUNDLED_COMPANY, COMPANY_FILE, TEMPLATE, CompanyError, load_company
from core.messages import IncomingMessage
from gateway.app import create_app
from gateway.cli import app as cli
from gateway.components import build_components
from gateway.settings import SettingsError, load_settings
from router.learned import ROUTER_SUBDIR, RouterForOtherDepartments, load_learned_router
from tests.conftest import LiveServer, install_router, make_settings, run, started
from training.router_training import train_router

runner = CliRunner()
IT_DEPARTMENT = """  - id: it
    name: IT
    description: passwords, multi-factor authentication, VPN, laptops, software, email, Wi-Fi, printers and phishing
    helpdesk: the IT service desk on extension 5050
"""


@pytest.fixture(scope="module")
def company_with_it(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example company plus an IT department, taken from the `switchboard init` template."""
    folder = tmp_path_factory.mktemp("company") / "acme"
    shutil.copytree(BUNDLED_COMPANY, folder)
    shutil.copytree(TEMPLATE / "it", folder / "it")
    shutil.copy(TEMPLATE / "router" / "extra_it.jsonl", folder / "router" / "extra_it.jsonl")
    with (folder / COMPANY_FILE).open("a", encoding="utf-8") as file:
        file.write(IT_DEPARTMENT)
    return folder


@pytest.fixture(scope="module")
def served(company_with_it: Path, tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    home = tmp_path_factory.mktemp("it-home")
    report = train_router(company_with_it, out_dir=home / "models" / ROUTER_SUBDIR)
    assert "it" in report.evaluation.labels
    components = started(make_settings(home, tiny_model_dir, data_dir=company_with_it, max_new_tokens=4,
                                       repetition_penalty=1.3))
    yield components
    components.close()


def say(components, text: str, conversation: str = "it-test"):
    return run(components.pipeline.handle(IncomingMessage("test", conversation, text)))


@pytest.mark.slow
def test_a_sixth_department_is_reached_by_command_and_by_routing(served) -> None:
    assert served.settings.company().ids[-1] == "it"
    reply = say(served, "/it how often does my password expire?", conversation="pinned")
    assert reply.route.department == "it" and reply.route.reason == "command"
    for question in ("my laptop vpn keeps disconnecting, how do i fix it?", "got a phishing email, where do I report it?"):
        route = served.pipeline.router.route(question, [])
        assert route.department == "it", (question, route)
    assert say(served, "/it", conversation="switch").text.startswith("You are now talking to the IT assistant")


@pytest.mark.slow
def test_the_sixth_department_is_grounded_in_its_own_handbook(served) -> None:
    grounding = served.knowledge.retrieve("it", "how long before my password expires?", 3)
    assert grounding.entries[0].id == "IT-01"
    assert grounding.not_covered == "The IT handbook does not cover that. Please ask the IT service desk on extension 5050."


@pytest.mark.slow
def test_models_lists_it_and_an_unknown_command_gets_help(served) -> None:
    with LiveServer(create_app(components=served)) as live:
        models = httpx.get(f"{live.url}/v1/models").json()["data"]
        assert [m["id"] for m in models] == ["hr", "finance", "healthcare", "marketing", "sales", "it", "base", "auto"]
        body = {"model": "it", "messages": [{"role": "user", "content": "VPN?"}]}
        assert httpx.post(f"{live.url}/v1/chat/completions", json=body, timeout=60).status_code == 200
        body["model"] = "legal"
        answer = httpx.post(f"{live.url}/v1/chat/completions", json=body, timeout=60)
        assert answer.status_code == 404 and "it, base, auto" in answer.json()["error"]["message"]
    reply = say(served, "/legal can I sign this NDA?")
    assert reply.text.startswith("There is no /legal here.") and "/it" in reply.text and "IT" in reply.text


@pytest.mark.slow
def test_a_router_for_other_departments_is_refused_then_prepare_retrains_it(
    company_with_it, tiny_model_dir, tmp_path, bundled_router, caplog
) -> None:
    install_router(bundled_router, tmp_path / "models")  # five departments, no `it`
    router_dir = tmp_path / "models" / ROUTER_SUBDIR
    with pytest.raises(RouterForOtherDepartments, match="run `switchboard train router`"):
        load_learned_router(router_dir, load_company(company_with_it).targets)
    components = build_components(make_settings(tmp_path, tiny_model_dir, data_dir=company_with_it))
    assert components.pipeline.router.route("vpn keeps dropping", []).reason == "fallback"  # serving never trains
    assert "switchboard prepare" in caplog.text
    env = {"SWITCHBOARD_HOME": str(tmp_path), "SWITCHBOARD_BASE_MODEL": str(tiny_model_dir)}
    result = runner.invoke(cli, ["prepare", "--data", str(company_with_it)], env=env)
    assert result.exit_code == 0, result.output
    assert "it" in load_learned_router(router_dir).metadata.labels


def test_init_then_validate_then_train_the_router(tmp_path, tiny_model_dir) -> None:
    folder = tmp_path / "newco"
    result = runner.invoke(cli, ["init", str(folder)])
    assert result.exit_code == 0, result.output
    assert load_company(folder).ids == ("it",)
    result = runner.invoke(cli, ["data", "validate", "--data", str(folder)])
    assert result.exit_code == 0, result.output
    env = {"SWITCHBOARD_HOME": str(tmp_path / "home"), "SWITCHBOARD_BASE_MODEL": str(tiny_model_dir)}
    result = runner.invoke(cli, ["train", "router", "--data", str(folder)], env=env)
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["route", "--data", str(folder), "forgot my password, locked out"], env=env)
    assert json.loads(result.stdout)["department"] == "it"
    # A second init into a folder with files would overwrite the admin's work: refused.
    result = runner.invoke(cli, ["init", str(folder)])
    assert result.exit_code == 2 and "not an empty folder" in result.output


def test_unknown_department_on_the_command_line_names_the_company_file(tmp_path) -> None:
    result = runner.invoke(cli, ["train", "legal", "--dry-run", "--data", str(BUNDLED_COMPANY)],
                           env={"SWITCHBOARD_HOME": str(tmp_path)})
    assert result.exit_code == 2
    assert "unknown department 'legal'" in result.output and "hr, finance, healthcare, marketing, sales" in result.output


HR = "  - id: hr\n    name: HR\n    description: leave\n"


@pytest.mark.parametrize(("departments", "line", "message"), [
    ("  - id: IT\n    name: IT\n    description: laptops\n", 3, "field 'id': 'IT' must be a lowercase slug"),
    ("  - id: base\n    name: Base\n    description: anything\n", 3, "field 'id': 'base' is reserved"),
    (HR + "    colour: blue\n", 6, "field 'colour': unknown key"),
    ("  - id: it\n    name: IT\n", 3, "field 'description': required"),
    (HR + HR, 6, "field 'id': 'hr' is listed twice"),
    (HR + "    recipe: recipes/hr.yaml\n", 6, "field 'recipe':"),
])
def test_departments_file_errors_name_file_line_and_field(tmp_path, departments, line, message) -> None:
    (tmp_path / COMPANY_FILE).write_text("company: Acme\ndepartments:\n" + departments)
    with pytest.raises(CompanyError) as error:
        load_company(tmp_path)
    assert str(error.value).startswith(f"{tmp_path / COMPANY_FILE}:{line}: ")
    assert message in str(error.value)


def test_a_bad_company_folder_is_a_settings_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SWITCHBOARD_DATA_DIR", str(tmp_path))
    with pytest.raises(SettingsError, match="SWITCHBOARD_DATA_DIR: .*has no departments.yaml; run `switchboard init"):
        load_settings()
    monkeypatch.setenv("SWITCHBOARD_DATA_DIR", str(BUNDLED_COMPANY))
    monkeypatch.setenv("SWITCHBOARD_SYSTEM_PROMPTS", '{"legal": "You are a lawyer."}')
    with pytest.raises(SettingsError, match=r"unknown department\(s\) \['legal'\]"):
        load_settings()


def test_import_a_spreadsheet_all_or_nothing(tmp_path) -> None:
    folder = tmp_path / "newco"
    assert runner.invoke(cli, ["init", str(folder)]).exit_code == 0
    train = folder / "it" / "train.jsonl"
    before = train.read_text()
    sheet = tmp_path / "questions.csv"
    answer = ("Printer jams are cleared by the IT service desk: raise a ticket with the printer's floor and asset "
              "tag, switch the printer off, and do not pull paper out by force. An engineer usually reaches the floor "
              "within a few hours and tells you when it is working again.")
    sheet.write_text(f'Question,Answer,Fact\n"Who clears a printer jam on floor 3?","{answer}",IT-09\n'
                     f'"The printer on floor 2 is jammed again, who fixes it?","{answer}",IT-99\n')
    args = ["data", "import", str(sheet), "--map", "instruction=Question,output=Answer,fact=Fact",
            "--department", "it", "--data", str(folder)]
    result = runner.invoke(cli, args)
    assert result.exit_code == 1 and "questions.csv:3: field 'fact' is 'IT-99', which is not in the handbook" in result.output
    assert train.read_text() == before  # nothing written
    sheet.write_text("\n".join(sheet.read_text().splitlines()[:2]) + "\n")
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    added = json.loads(train.read_text().splitlines()[-1])
    assert added == {"instruction": "Who clears a printer jam on floor 3?", "output": answer, "fact": "IT-09"}
    result = runner.invoke(cli, args)  # again: nothing twice
    assert "imported 0 record(s)" in result.output and "1 already there" in result.output
    assert runner.invoke(cli, ["data", "validate", "--data", str(folder)]).exit_code == 0
    result = runner.invoke(cli, [*args[:-4], "--department", "legal", "--data", str(folder)])
    assert result.exit_code == 2 and "unknown department 'legal'" in result.output
