"""The `switchboard` command line, run in-process with typer's runner."""

import json

import pytest
from typer.testing import CliRunner

from gateway.cli import app
from tests.conftest import write_registry

runner = CliRunner()


@pytest.fixture
def env(tmp_path, tiny_model_dir):
    return {
        "SWITCHBOARD_HOME": str(tmp_path),
        "SWITCHBOARD_BASE_MODEL": str(tiny_model_dir),
        "SWITCHBOARD_MAX_NEW_TOKENS": "6",
    }


def test_route_prints_json():
    result = runner.invoke(app, ["route", "/finance when is Form 16 out?"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"department": "finance", "confidence": 1.0, "reason": "command"}


def test_route_jsonl_keeps_order_and_names_a_bad_line(tmp_path):
    messages = tmp_path / "messages.jsonl"
    messages.write_text('{"text": "/hr leave?"}\n\n{"text": "hello"}\n{"text": "/sales price"}\n')
    result = runner.invoke(app, ["route", "--jsonl", str(messages)])
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["department"] for line in result.stdout.splitlines()] == ["hr", "base", "sales"]
    messages.write_text('{"text": "/hr leave?"}\n{"message": "wrong key"}\n')
    result = runner.invoke(app, ["route", "--jsonl", str(messages)])
    assert result.exit_code == 2
    assert f"{messages}:2: expected" in result.stderr


def test_route_needs_exactly_one_input():
    assert runner.invoke(app, ["route"]).exit_code == 2


def test_ask_prints_department_confidence_reply_and_latency(env):
    result = runner.invoke(app, ["ask", "/hr how many casual leaves?"], env=env)
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["department"] == "hr" and answer["confidence"] == 1.0
    assert answer["reply"] and answer["latency_ms"] > 0


def test_models_table_shows_a_broken_adapter_falling_back(env, tmp_path):
    write_registry(tmp_path / "models", {"healthcare": {"kind": "adapter", "path": "healthcare/missing"}})
    result = runner.invoke(app, ["models"], env={**env, "COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    row = next(line for line in result.stdout.splitlines() if "healthcare" in line)
    assert "base" in row and "does not exist" in row


def test_a_bad_setting_is_a_clear_error(env, tmp_path):
    config = tmp_path / "switchboard.yaml"
    config.write_text("memory_window: many\n")
    result = runner.invoke(app, ["--config", str(config), "ask", "hi"], env=env)
    assert result.exit_code == 2
    assert f"{config}:1: field 'memory_window'" in result.stderr


def test_a_missing_base_model_is_a_clear_error(tmp_path):
    result = runner.invoke(app, ["ask", "hi"], env={"SWITCHBOARD_BASE_MODEL": str(tmp_path / "nope")})
    assert result.exit_code == 1
    assert "does not exist" in result.stderr
