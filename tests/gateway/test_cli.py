"""The `switchboard` command line, run in-process with typer's runner."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.cli import app
from tests.conftest import install_router, write_registry

runner = CliRunner()


@pytest.fixture
def env(tmp_path, tiny_model_dir):
    return {
        "SWITCHBOARD_HOME": str(tmp_path),
        "SWITCHBOARD_BASE_MODEL": str(tiny_model_dir),
        "SWITCHBOARD_MAX_NEW_TOKENS": "6",
        "SWITCHBOARD_ROUTER": "commands",
    }


def test_route_prints_json(env):
    result = runner.invoke(app, ["route", "/finance when is Form 16 out?"], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"department": "finance", "confidence": 1.0, "reason": "command"}


def test_without_a_router_routing_is_by_command_and_says_to_prepare(env, caplog):
    result = runner.invoke(app, ["route", "mera casual leave balance kitna hai?"],
                           env={**env, "SWITCHBOARD_ROUTER": "learned"})
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["reason"] == "fallback"
    assert "switchboard prepare" in caplog.text


def test_prepare_keeps_a_router_for_these_departments_then_it_routes_and_is_evaluated(env, tmp_path, bundled_router):
    install_router(bundled_router, tmp_path / "models")
    env = {**env, "SWITCHBOARD_ROUTER": "learned"}
    result = runner.invoke(app, ["prepare"], env=env)
    assert result.exit_code == 0, result.output
    assert "router ready" in result.output and "Training the router" not in result.output
    result = runner.invoke(app, ["route", "mera casual leave balance kitna hai?"], env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["department"] == "hr"
    result = runner.invoke(app, ["eval", "router"], env={**env, "COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "confusion matrix" in result.stdout and "out-of-scope to base" in result.stderr


def test_a_corrupt_router_falls_back_to_commands_with_a_clear_error(env, tmp_path, caplog):
    router_dir = tmp_path / "models" / "router"
    router_dir.mkdir(parents=True)
    (router_dir / "router.json").write_text("{broken")
    result = runner.invoke(app, ["route", "mera casual leave balance kitna hai?"],
                           env={**env, "SWITCHBOARD_ROUTER": "learned"})
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["reason"] == "fallback"
    assert "switchboard train router" in caplog.text


def test_route_jsonl_keeps_order_and_names_a_bad_line(tmp_path, env):
    messages = tmp_path / "messages.jsonl"
    messages.write_text('{"text": "/hr leave?"}\n\n{"text": "hello"}\n{"text": "/sales price"}\n')
    result = runner.invoke(app, ["route", "--jsonl", str(messages)], env=env)
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["department"] for line in result.stdout.splitlines()] == ["hr", "base", "sales"]
    messages.write_text('{"text": "/hr leave?"}\n{"message": "wrong key"}\n')
    result = runner.invoke(app, ["route", "--jsonl", str(messages)], env=env)
    assert result.exit_code == 2
    assert f"{messages}:2: expected" in result.stderr


def test_route_needs_exactly_one_input(env):
    assert runner.invoke(app, ["route"], env=env).exit_code == 2


def test_ask_prints_department_confidence_reply_and_latency(env):
    result = runner.invoke(app, ["ask", "/hr how many casual leaves?"], env=env)
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["department"] == "hr" and answer["confidence"] == 1.0
    assert answer["reply"] and answer["latency_ms"] > 0
    assert answer["sources"][0]["id"] == "HR-03" and "8 days" in answer["sources"][0]["text"]


@pytest.mark.slow
def test_ask_as_a_process_in_a_fresh_home_exits_0(env, tmp_path):
    # The engine thread must be gone before the interpreter exits, or torch can abort it (exit 134).
    home = tmp_path / "fresh"
    command = [str(Path(sys.executable).with_name("switchboard")), "ask", "hello there"]
    done = subprocess.run(command, env={**os.environ, **env, "SWITCHBOARD_HOME": str(home)},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["department"] == "base"


def test_models_table_shows_a_broken_adapter_falling_back(env, tmp_path):
    write_registry(tmp_path / "models", {"healthcare": {"kind": "adapter", "path": "healthcare/missing"}})
    result = runner.invoke(app, ["models"], env={**env, "COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if "healthcare" in line)
    assert "base" in row and "does not exist" in row and "MiB (shared)" in row
    assert "memory" in result.stdout.splitlines()[1]


def test_a_bad_setting_is_a_clear_error(env, tmp_path):
    config = tmp_path / "switchboard.yaml"
    config.write_text("memory_window: many\n")
    result = runner.invoke(app, ["--config", str(config), "ask", "hi"], env=env)
    assert result.exit_code == 2
    assert f"{config}:1: field 'memory_window'" in result.stderr


def test_a_missing_base_model_is_a_clear_error(tmp_path):
    result = runner.invoke(app, ["ask", "hi"], env={"SWITCHBOARD_BASE_MODEL": str(tmp_path / "nope"),
                                                   "SWITCHBOARD_HOME": str(tmp_path), "SWITCHBOARD_ROUTER": "commands"})
    assert result.exit_code == 1
    assert "does not exist" in result.stderr


def test_chat_shows_the_route_of_each_reply_and_resets(env):
    result = runner.invoke(app, ["chat"], input="/hr\nhow many casual leaves?\n/reset\n", env=env)
    assert result.exit_code == 0, result.output
    assert result.stderr.count("(hr, confidence 1.00, command)") == 2
    assert "[HR-03] Casual leave (CL) is 8 days" in result.stderr  # the entry the reply used
    assert "Done: I have forgotten this conversation." in result.stdout + result.stderr


@pytest.mark.slow
def test_eval_scores_a_question_bank_with_and_without_grounding(env, tmp_path):
    bank = tmp_path / "bank.csv"
    bank.write_text("question,must_say\nHow many casual leaves do I get?,8 days\nSick leave per year?,10 days\n")
    result = runner.invoke(app, ["eval", "hr", "--file", str(bank), "--map", "instruction=question,expected=must_say"],
                           env={**env, "COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    header = next(line for line in result.stdout.splitlines() if "department" in line)
    for column in ("base", "base + grounding", "live", "live + grounding", "recall@3", "not covered"):
        assert column in header
    report = json.loads(next((tmp_path / "reports").glob("hr-*.json")).read_text())
    titles = [(e["label"], e["grounded"], e["questions"]) for e in report["evaluations"]]
    assert titles == [("base", False, "facts"), ("base", True, "facts"), ("base", True, "not_covered")]
    grounded = report["evaluations"][1]["answers"]
    assert [a["question"] for a in grounded] == ["How many casual leaves do I get?", "Sick leave per year?"]
    assert grounded[0]["entries"][0] == "HR-03" and report["questions"] == str(bank)
    bad = runner.invoke(app, ["eval", "hr", "--file", str(bank)], env=env)  # no mapping: no 'instruction' column
    assert bad.exit_code == 2 and "field 'instruction' is missing" in bad.stderr


@pytest.mark.parametrize("port", ["99999", "-5", "0"])
def test_serve_refuses_a_port_out_of_range(env, port):
    result = runner.invoke(app, ["serve", "--port", port], env={**env, "COLUMNS": "200"})
    assert result.exit_code == 2
    assert "Invalid value for '--port'" in result.output


def test_set_webhook_with_the_bot_api_unreachable_is_a_clear_error(env):
    env = {**env, "SWITCHBOARD_TELEGRAM_BOT_TOKEN": "7000000001:FAKE-test-token-not-real", "COLUMNS": "300",
           "SWITCHBOARD_TELEGRAM_WEBHOOK_SECRET": "s3cret-s3cret", "SWITCHBOARD_TELEGRAM_API_URL": "http://127.0.0.1:1/bot"}
    result = runner.invoke(app, ["telegram", "set-webhook", "--url", "https://bot.example.com/webhooks/telegram"], env=env)
    assert result.exit_code == 1, result.output
    assert "the Telegram Bot API (http://127.0.0.1:1/bot) did not do it" in result.output
    assert "Traceback" not in result.output and "FAKE-test-token" not in result.output
