"""Settings: `SWITCHBOARD_*` environment variables over an optional YAML file.

Validated once at start; a bad key or value is an error that names where it
came from (the variable, or the file and line) and what was expected.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings import SettingsError as SourceError

from core.company import Company, load_company
from core.redaction import hide_password
from core.yaml_file import YamlFileError, read_yaml_mapping
from inference.base import GenerationParams
from inference.base_model import BUNDLED_BASE

if TYPE_CHECKING:
    from inference.llamacpp import GgufServing

ENV_PREFIX = "SWITCHBOARD_"
# Read by the CLI, not a setting: where `--config` can also come from.
CONFIG_ENV = ENV_PREFIX + "CONFIG"
_ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")
_WHATSAPP_SENDER = re.compile(r"(?:whatsapp:)?(\+[1-9][0-9]{6,14})")  # E.164: up to 15 digits


class SettingsError(ValueError):
    """Configuration that cannot be used; the message says where and why."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid")

    home: Path = Field(
        default=Path("~/.cache/switchboard"),
        description="Data directory: converted base model, trained models, reports.",
    )
    base_model: str = Field(
        default=BUNDLED_BASE,
        description=f"'{BUNDLED_BASE}' (bundled), a local model directory, or a hub id.",
    )
    models_dir: Path | None = Field(
        default=None, description="Trained models and registry.json (default: <home>/models)."
    )
    data_dir: Path | None = Field(
        default=None,
        validate_default=True,
        description="The company folder: departments.yaml and a folder per department with its handbook and "
        "questions (default: the bundled example, examples/sahyadri).",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="Where models run.")
    backend: Literal["auto", "llamacpp", "local", "openai"] = Field(
        default="auto",
        description="Who generates: 'llamacpp' (GGUF models on CPU through llama-cpp-python), 'local' (torch in "
        "this process: GPU, or CPU with batching), 'openai' (an OpenAI-compatible server such as vLLM). 'auto': "
        "llamacpp on a CPU machine with llama-cpp-python installed and a base GGUF, else local.",
    )
    llamacpp_quant: Literal["f16", "q8_0", "q4_1", "f32"] = Field(
        default="f16",
        description="How llama.cpp stores the models it serves (converted at promotion): f16 keeps fact accuracy; "
        "q8_0 decodes ~30% faster and may lose a question or two (the promotion gate checks); q4_1 loses many; "
        "f32 is exact and slowest.",
    )
    llamacpp_threads: int | None = Field(
        default=None, ge=1, description="CPU threads for llama.cpp (default: every core this process may use)."
    )
    base_gguf: Path | None = Field(
        default=None,
        description="The base model as GGUF, for llama.cpp (default: the bundled one; needed when base_model is "
        "another model).",
    )
    openai_base_url: str | None = Field(
        default=None,
        validate_default=True,
        description="With backend=openai: the server's API base URL, e.g. http://vllm:8000/v1.",
    )
    openai_api_key: SecretStr | None = Field(
        default=None, description="With backend=openai: the server's key (vLLM --api-key); none needed by default."
    )
    openai_base_model_name: str = Field(
        default="base",
        min_length=1,
        description="The name the server gives the base model (vLLM: --served-model-name).",
    )
    openai_department_urls: dict[str, str] = Field(
        default_factory=dict,
        description='Per-department server of a full fine-tuned model, e.g. {"hr": "http://vllm-hr:8000/v1"}.',
    )
    max_new_tokens: int = Field(default=256, ge=1, le=4096, description="Longest reply, in tokens.")
    temperature: float = Field(default=0.0, ge=0.0, le=2.0, description="0 means greedy decoding.")
    top_p: float = Field(default=1.0, gt=0.0, le=1.0, description="Nucleus sampling (temperature > 0).")
    repetition_penalty: float = Field(
        default=1.1, ge=1.0, le=2.0, description="Discourages the small model's loops."
    )
    max_batch_size: int = Field(
        default=16, ge=1, le=256, description="Requests decoded together in one batch by torch (1: one at a time)."
    )
    batch_window_ms: float = Field(
        default=5.0, ge=0, le=1000, description="How long torch waits for company before starting a batch."
    )
    grounding: bool = Field(
        default=True,
        description="Answer from the department's handbook: its best-matching entries go into the prompt "
        "(off: the plain fine-tuned prompt).",
    )
    grounding_k: int = Field(default=3, ge=1, le=10, description="Handbook entries put in each prompt.")
    show_sources: bool = Field(
        default=True, description="Telegram and WhatsApp replies end with a line naming the handbook entries used."
    )
    router: Literal["learned", "commands"] = Field(
        default="learned", description="Automatic routing: the learned classifier, or commands only."
    )
    redis_url: str | None = Field(
        default=None,
        description="redis://host:6379/0 puts memory, dedupe and the message queue in Redis (default: in process).",
    )
    worker_in_process: bool = Field(
        default=True, description="With Redis, `serve` also answers queued messages (off: only `switchboard worker`s do)."
    )
    worker_concurrency: int = Field(default=4, ge=1, le=256, description="Messages one worker answers at once.")
    queue_lock_seconds: float = Field(
        default=30, gt=0, description="Per-conversation lock expiry; renewed while a worker is alive."
    )
    queue_claim_idle_seconds: float = Field(
        default=60, gt=0, description="Entries a worker has held this long unacknowledged are reclaimed by others."
    )
    queue_max_attempts: int = Field(default=5, ge=1, description="Failures before an entry goes to the dead-letter stream.")
    memory_window: int = Field(default=8, ge=1, le=200, description="Turns (messages) kept per conversation.")
    memory_ttl_seconds: int = Field(default=86_400, ge=1, description="Idle conversations are forgotten after this.")
    max_input_chars: int = Field(default=4000, ge=1, description="Longest accepted user message.")
    shutdown_timeout_seconds: float = Field(
        default=30, ge=0, le=3600,
        description="On shutdown, how long accepted messages and open requests may take to finish before the process stops.",
    )
    reload_interval_seconds: float = Field(
        default=2.0, ge=0, description="How often `serve` checks the registry for promoted models (0: never)."
    )
    api_key: SecretStr | None = Field(
        default=None,
        description="When set, /v1/* and the console's data require `Authorization: Bearer <key>` "
        "(webhooks verify their own way).",
    )
    console: bool = Field(default=True, description="The web console at / (chat in the browser).")
    console_admin: bool = Field(
        default=True, description="The console's read-only admin views: models, eval answers, queue and health."
    )
    host: str = Field(default="127.0.0.1", description="`switchboard serve` address.")
    port: int = Field(default=8000, ge=1, le=65535, description="`switchboard serve` port.")
    public_url: str | None = Field(
        default=None, description="Public https base URL of this server, for webhooks (e.g. https://bot.example.com)."
    )
    telegram_bot_token: SecretStr | None = Field(default=None, description="Enables Telegram (from @BotFather).")
    telegram_webhook_secret: SecretStr | None = Field(
        default=None, description="Secret Telegram sends in X-Telegram-Bot-Api-Secret-Token."
    )
    telegram_api_url: str = Field(
        default="https://api.telegram.org/bot", description="Bot API base URL (a local Bot API server, tests)."
    )
    twilio_account_sid: str | None = Field(default=None, description="Enables WhatsApp through Twilio.")
    twilio_auth_token: SecretStr | None = Field(default=None, description="Twilio auth token (signs webhooks).")
    twilio_whatsapp_from: str | None = Field(
        default=None, description="Your WhatsApp sender, e.g. whatsapp:+14155238886."
    )
    twilio_api_url: str | None = Field(default=None, description="Twilio REST base URL override (tests).")
    dedupe_ttl_seconds: int = Field(
        default=86_400, ge=60, description="How long a platform's message id is remembered against retries."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(default="info", description="Log level.")
    system_prompts: dict[str, str] = Field(
        default_factory=dict, description="Per-department system prompt overrides (YAML)."
    )

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, **_):
        # The environment beats the file: values from --config arrive as init kwargs.
        return (env_settings, init_settings)

    @field_validator("home", "models_dir", "data_dir")
    @classmethod
    def _expand(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None

    @field_validator("data_dir")
    @classmethod
    def _company_folder(cls, value: Path | None) -> Path | None:
        load_company(value)  # a CompanyError names the file, line and field in departments.yaml
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        value = value or None  # empty, as an env file leaves it: not set
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://, e.g. redis://localhost:6379/0")
        return value

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str | None) -> str | None:
        value = value or None
        if value is not None and not (value.startswith(("http://", "https://")) and urlsplit(value).hostname):
            raise ValueError("must be the server's public base URL, e.g. https://bot.example.com")
        return value

    @field_validator("twilio_account_sid")
    @classmethod
    def _account_sid(cls, value: str | None) -> str | None:
        value = value or None
        if value is not None and not _ACCOUNT_SID.fullmatch(value):
            raise ValueError("must be AC followed by 32 hex digits (Twilio console, Account Info)")
        return value

    @field_validator("twilio_whatsapp_from")
    @classmethod
    def _whatsapp_sender(cls, value: str | None) -> str | None:
        if not value:
            return None
        number = _WHATSAPP_SENDER.fullmatch(value.strip())
        if number is None:
            raise ValueError("must be a number in E.164 form, e.g. whatsapp:+14155238886")
        return "whatsapp:" + number.group(1)

    @field_validator("system_prompts")
    @classmethod
    def _known_departments(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        return _departments_only(value, info)

    @field_validator("openai_base_url")
    @classmethod
    def _remote_needs_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        value = value or None  # empty, as an env file leaves it: not set
        if value is None and info.data.get("backend") == "openai":
            raise ValueError(
                f"backend 'openai' needs openai_base_url ({ENV_PREFIX}OPENAI_BASE_URL), "
                "the server's API base URL such as http://vllm:8000/v1"
            )
        return value if value is None else _http_url(value)

    @field_validator("openai_department_urls")
    @classmethod
    def _department_urls(cls, value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        return {department: _http_url(url) for department, url in _departments_only(value, info).items()}

    @model_validator(mode="after")
    def _channels_complete(self) -> Settings:
        twilio = [self.twilio_account_sid, self.twilio_auth_token, self.twilio_whatsapp_from]
        if any(twilio) and not all(twilio):
            raise ValueError(
                "WhatsApp needs twilio_account_sid, twilio_auth_token and twilio_whatsapp_from together"
            )
        if (self.telegram_bot_token and not self.telegram_webhook_secret) and self.public_url:
            raise ValueError("a Telegram webhook needs telegram_webhook_secret (any long random string)")
        if all(twilio) and not self.public_url:
            raise ValueError("WhatsApp webhooks need public_url: Twilio signs the public URL it calls")
        return self

    def gguf_serving(self) -> GgufServing | None:
        """How llama.cpp serves, when it does (see `backend`); None: torch or a remote server.

        Raises ValueError when backend is 'llamacpp' and it cannot run."""
        if self.backend in ("local", "openai"):
            return None
        from inference import llamacpp
        from inference.base_model import BaseModelError, bundled_gguf

        explicit = self.backend == "llamacpp"
        if not llamacpp.available():
            if explicit:
                raise ValueError("backend 'llamacpp' needs llama-cpp-python: pip install -e '.[llamacpp]' "
                                 "(make install does)")
            return None
        if not explicit and _cuda_wanted(self.device):
            return None  # a GPU serves best through torch
        base_gguf = self.base_gguf
        if base_gguf is None and self.base_model == BUNDLED_BASE:
            try:
                base_gguf = bundled_gguf()
            except BaseModelError as error:
                if explicit:
                    raise ValueError(str(error)) from None
                return None
        if base_gguf is None:
            if explicit:
                raise ValueError(f"backend 'llamacpp' with base_model {self.base_model!r} needs base_gguf "
                                 f"({ENV_PREFIX}BASE_GGUF), that model as a GGUF file")
            return None
        if not base_gguf.is_file():
            raise ValueError(f"base_gguf {base_gguf} is not a file")
        # The bundled base has a safetensors cache to convert from; a given base_gguf serves as it is.
        return llamacpp.GgufServing(base_gguf, self.llamacpp_quant, self.llamacpp_threads,
                                    convert_base=self.base_gguf is None)

    @model_validator(mode="after")
    def _llamacpp_runs(self) -> Settings:
        if self.backend == "llamacpp":
            self.gguf_serving()  # raises with what is missing, at load rather than at the first request
        return self

    @property
    def models_path(self) -> Path:
        return self.models_dir or self.home / "models"

    @property
    def data_path(self) -> Path:
        return self.company().root

    def company(self) -> Company:
        """The company folder's departments (departments.yaml is parsed again only once it changes)."""
        return load_company(self.data_dir)

    def secrets(self) -> list[str]:
        """Values that must never reach a log or an error: tokens, keys, and URLs (by their password)."""
        values = [v.get_secret_value() for v in self.__dict__.values() if isinstance(v, SecretStr)]
        urls = [self.redis_url, self.openai_base_url, *self.openai_department_urls.values()]
        return [value for value in [*values, *urls, self.twilio_account_sid] if value]

    def generation_defaults(self) -> GenerationParams:
        return GenerationParams(
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            repetition_penalty=self.repetition_penalty,
        )


def _departments_only(value: dict[str, str], info: ValidationInfo) -> dict[str, str]:
    if "data_dir" not in info.data:  # the company folder is wrong, and that error is reported
        return value
    targets = load_company(info.data["data_dir"]).targets
    unknown = sorted(set(value) - set(targets))
    if unknown:
        raise ValueError(f"unknown department(s) {unknown}; the company folder lists {list(targets)}")
    return value


def _cuda_wanted(device: str) -> bool:
    if device != "auto":
        return device == "cuda"
    import torch

    return torch.cuda.is_available()


def _http_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"{value!r} is not an http:// or https:// URL")
    return value


def load_settings(config_file: Path | None = None) -> Settings:
    """Settings from the environment and `config_file` (or $SWITCHBOARD_CONFIG)."""
    if config_file is None and os.environ.get(CONFIG_ENV):
        config_file = Path(os.environ[CONFIG_ENV])
    try:
        file_values, lines = read_yaml_mapping(config_file) if config_file else ({}, {})
    except YamlFileError as error:
        raise SettingsError(str(error)) from None
    _reject_unknown_env()
    try:
        return Settings(**file_values)
    except ValidationError as error:
        raise SettingsError(_describe(error, config_file, lines)) from None
    except SourceError as error:  # an environment value that is not the JSON its field needs
        field = re.search(r'field "(\w+)"', str(error))
        variable = ENV_PREFIX + field.group(1).upper() if field else "a SWITCHBOARD_* variable"
        raise SettingsError(
            f'environment variable {variable}: not valid JSON; write a JSON object, e.g. {{"hr": "You are ..."}}'
        ) from None


def _reject_unknown_env() -> None:
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields} | {CONFIG_ENV}
    for variable in sorted(os.environ):
        if variable.startswith(ENV_PREFIX) and variable not in known:
            raise SettingsError(f"environment variable {variable}: unknown setting{_suggest(variable, known)}")


def _describe(error: ValidationError, config_file: Path | None, lines: dict[str, int]) -> str:
    problems = []
    for item in error.errors():
        if not item["loc"]:  # a rule across fields: their values (tokens among them) stay out
            problems.append(item["msg"].removeprefix("Value error, "))
            continue
        field = str(item["loc"][0])
        variable = ENV_PREFIX + field.upper()
        if variable in os.environ:
            where = f"environment variable {variable}"
        elif config_file is not None:
            where = f"{config_file}:{lines.get(field, 1)}: field '{field}'"
        else:
            where = f"field '{field}'"
        if item["type"] == "extra_forbidden":
            names = set(Settings.model_fields)
            problems.append(f"{where}: unknown setting{_suggest(field, names)}")
        else:
            problems.append(f"{where}: {item['msg'].removeprefix('Value error, ')} (got {_shown(field, item.get('input'))})")
    return "invalid configuration:\n  " + "\n  ".join(problems)


def _shown(field: str, value: object) -> str:
    """A rejected value as an error may show it: secrets hidden, URL passwords masked."""
    annotation = str(Settings.model_fields[field].annotation) if field in Settings.model_fields else ""
    if "SecretStr" in annotation:
        return "a value, hidden"
    return repr(hide_password(value)) if isinstance(value, str) else repr(value)


def _suggest(name: str, known: set[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1)
    return f"; did you mean {close[0]}?" if close else f"; known settings: {', '.join(sorted(known))}"
