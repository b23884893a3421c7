import pytest

from gateway.settings import SettingsError, load_settings


def test_defaults(monkeypatch):
    settings = load_settings()
    assert settings.max_new_tokens == 256 and settings.memory_window == 8
    assert settings.models_path == settings.home / "models"
    assert settings.generation_defaults().temperature == 0.0


def test_yaml_file_and_environment_with_environment_winning(tmp_path, monkeypatch):
    config = tmp_path / "switchboard.yaml"
    config.write_text("max_new_tokens: 64\nport: 9000\nsystem_prompts:\n  hr: Be brief.\n")
    monkeypatch.setenv("SWITCHBOARD_PORT", "9100")
    settings = load_settings(config)
    assert (settings.max_new_tokens, settings.port) == (64, 9100)
    assert settings.system_prompts == {"hr": "Be brief."}


def test_unknown_yaml_key_names_file_line_and_suggests(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("port: 8000\nmax_new_token: 64\n")
    with pytest.raises(SettingsError) as error:
        load_settings(config)
    assert f"{config}:2: field 'max_new_token': unknown setting; did you mean max_new_tokens?" in str(error.value)


def test_ill_typed_yaml_value_names_file_line_and_value(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("# comment\n\nmemory_window: lots\n")
    with pytest.raises(SettingsError) as error:
        load_settings(config)
    assert f"{config}:3: field 'memory_window'" in str(error.value)
    assert "'lots'" in str(error.value)


def test_unknown_and_ill_typed_environment_variables(monkeypatch):
    monkeypatch.setenv("SWITCHBOARD_TEMPRATURE", "0.5")
    with pytest.raises(SettingsError, match="SWITCHBOARD_TEMPRATURE: unknown setting; did you mean SWITCHBOARD_TEMPERATURE"):
        load_settings()
    monkeypatch.delenv("SWITCHBOARD_TEMPRATURE")
    monkeypatch.setenv("SWITCHBOARD_TEMPERATURE", "hot")
    with pytest.raises(SettingsError, match="environment variable SWITCHBOARD_TEMPERATURE"):
        load_settings()


def test_invalid_yaml_and_unknown_department_prompt(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("port: 8000\nhost: [unclosed\n")
    with pytest.raises(SettingsError, match=r"broken.yaml:\d+: invalid YAML"):
        load_settings(broken)
    prompts = tmp_path / "prompts.yaml"
    prompts.write_text("system_prompts:\n  legal: Be careful.\n")
    with pytest.raises(SettingsError, match="unknown department"):
        load_settings(prompts)


def test_config_file_from_environment_and_missing_file(tmp_path, monkeypatch):
    missing = tmp_path / "nope.yaml"
    monkeypatch.setenv("SWITCHBOARD_CONFIG", str(missing))
    with pytest.raises(SettingsError, match="cannot read the file"):
        load_settings()


def test_a_redis_url_without_a_redis_scheme_is_refused(monkeypatch):
    monkeypatch.setenv("SWITCHBOARD_REDIS_URL", "localhost:6379")
    with pytest.raises(SettingsError, match="SWITCHBOARD_REDIS_URL.*redis://"):
        load_settings(None)


@pytest.mark.parametrize(("variable", "value", "expected"), [
    ("PUBLIC_URL", "notaurl", "public base URL"),
    ("PUBLIC_URL", "https://", "public base URL"),
    ("TWILIO_ACCOUNT_SID", "xyz", "AC followed by 32 hex digits"),
    ("TWILIO_WHATSAPP_FROM", "+1", "E.164"),
    ("TWILIO_WHATSAPP_FROM", "whatsapp:hello", "E.164"),
])
def test_values_that_cannot_work_are_refused_at_start(monkeypatch, variable, value, expected):
    monkeypatch.setenv(f"SWITCHBOARD_{variable}", value)
    with pytest.raises(SettingsError) as error:
        load_settings()
    assert f"environment variable SWITCHBOARD_{variable}" in str(error.value) and expected in str(error.value)


def test_a_whatsapp_sender_is_kept_in_twilio_spelling(monkeypatch):
    for variable, value in [("TWILIO_WHATSAPP_FROM", "+14155238886"), ("PUBLIC_URL", "https://bot.example.com"),
                            ("TWILIO_ACCOUNT_SID", "AC" + "0" * 32), ("TWILIO_AUTH_TOKEN", "token")]:
        monkeypatch.setenv(f"SWITCHBOARD_{variable}", value)
    assert load_settings().twilio_whatsapp_from == "whatsapp:+14155238886"


def test_a_json_setting_that_is_not_json_names_its_variable(monkeypatch):
    monkeypatch.setenv("SWITCHBOARD_SYSTEM_PROMPTS", "notjson")
    with pytest.raises(SettingsError, match="SWITCHBOARD_SYSTEM_PROMPTS: not valid JSON"):
        load_settings()


def test_a_config_file_that_is_not_utf8_names_its_line(tmp_path):
    config = tmp_path / "latin1.yaml"
    config.write_bytes("port: 8000\nsystem_prompts:\n  hr: Caf\u00e9\n".encode("latin-1"))
    with pytest.raises(SettingsError, match=r"latin1.yaml:3: not UTF-8 text \(byte 0xe9\)"):
        load_settings(config)
