"""The `switchboard` command line."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from core.redaction import hide_password, hide_secrets, scrub
from gateway.settings import Settings, SettingsError, load_settings

app = typer.Typer(
    help="Switchboard: department models for your people on Telegram, WhatsApp and HTTP.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
# Soft wrap: error lines name files and must stay whole for copy-paste and grep.
console = Console(stderr=True, soft_wrap=True)
log = logging.getLogger("gateway.cli")


class _State:
    config: Path | None = None


def _fail(message: str, code: int = 1) -> NoReturn:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


DataOption = Annotated[
    Path | None,
    typer.Option("--data", help="Company folder (default: the data_dir setting, else the bundled example)."),
]


def _settings(data: Path | None = None) -> Settings:
    try:
        settings = load_settings(_State.config)
    except SettingsError as error:
        _fail(str(error), 2)
    if data is not None:
        from core.company import CompanyError, load_company

        try:
            load_company(data)
        except CompanyError as error:
            _fail(f"--data: {error}", 2)
        settings = settings.model_copy(update={"data_dir": data.expanduser()})
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    hide_secrets(settings.secrets())  # and quiets the libraries that log URLs and payloads
    return settings


def _started(settings: Settings):
    from gateway.components import build_components
    from inference.base_model import BaseModelError

    components = build_components(settings)
    try:
        with console.status("Loading models..."):
            components.start(show_progress=True)
    except BaseModelError as error:
        _fail(str(error))
    return components


@app.callback()
def main(
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="YAML settings file (environment variables win)."),
    ] = None,
) -> None:
    _State.config = config


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (default from settings).")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="Port (default from settings).")] = None,
    telegram_polling: Annotated[
        bool, typer.Option("--telegram-polling", help="Fetch Telegram updates by long polling (no public URL needed).")
    ] = False,
) -> None:
    """Run the HTTP server: OpenAI-compatible API, health, readiness and metrics."""
    import uvicorn

    from gateway.app import create_app

    settings = _settings()
    host, port = host or settings.host, port or settings.port
    console.print(
        f"Switchboard on http://{host}:{port}  (chat: `switchboard chat`, "
        f"API: POST /v1/chat/completions, ready when /readyz says so)",
        highlight=False,
    )
    if host not in ("127.0.0.1", "localhost", "::1") and settings.api_key is None:
        log.warning("serving on %s without an API key: anyone who can reach it can use /v1; "
                    "set SWITCHBOARD_API_KEY", host)
    if telegram_polling and settings.telegram_bot_token is None:
        _fail("--telegram-polling needs SWITCHBOARD_TELEGRAM_BOT_TOKEN", 2)
    app_ = create_app(settings, telegram_polling=telegram_polling)
    uvicorn.run(
        app_, host=host, port=port, log_level=settings.log_level,
        timeout_graceful_shutdown=settings.shutdown_timeout_seconds,  # open requests; then queued messages get as long
    )


@app.command()
def worker() -> None:
    """Answer messages queued in Redis (run as many as you like, on any machines)."""
    from gateway.worker_process import run_worker

    settings = _settings()
    if settings.redis_url is None:
        _fail("a worker takes messages from Redis: set SWITCHBOARD_REDIS_URL (e.g. redis://localhost:6379/0)", 2)
    components = _started(settings)
    console.print(
        f"worker: answering messages queued in {hide_password(settings.redis_url)}; Ctrl-C stops after in-flight ones"
    )
    try:
        asyncio.run(run_worker(components))
    finally:
        components.close()


queue_app = typer.Typer(help="The Redis message queue.")
app.add_typer(queue_app, name="queue")


@queue_app.command("status")
def queue_status(
    recent: Annotated[int, typer.Option(help="How many dead letters to show.")] = 5,
) -> None:
    """Entries waiting, in flight per worker, and dead letters with their errors."""
    from redis.exceptions import RedisError

    from gateway.components import build_queue, redis_client

    settings = _settings()
    if settings.redis_url is None:
        _fail("no queue to show: messages are queued in process unless SWITCHBOARD_REDIS_URL is set", 2)

    async def read():
        client = redis_client(settings)
        try:
            return await build_queue(settings, client).status(recent)
        finally:
            await client.aclose()

    try:
        status = asyncio.run(read())
    except (RedisError, OSError) as error:
        _fail(f"cannot reach Redis at {hide_password(settings.redis_url)}: {scrub(str(error))}")
    out = Console()
    out.print(f"waiting: {status.waiting}   in flight: {status.pending}   dead letters: {status.dead_letters}")
    if status.consumers:
        table = Table("worker", "in flight", "idle (s)")
        for name, pending, idle_ms in status.consumers:
            table.add_row(name, str(pending), f"{idle_ms / 1000:.1f}")
        out.print(table)
    if status.recent_dead:
        table = Table("dead letter", "conversation", "attempts", "error", title="most recent dead letters")
        for dead in status.recent_dead:
            table.add_row(dead.id, dead.conversation, str(dead.attempts), dead.error)
        out.print(table)


@app.command()
def prepare() -> None:
    """Convert the bundled base model once (about 30 s, and 10 s more to GGUF when llama.cpp serves)
    so later starts take a second."""
    from inference.base_model import BaseModelError, resolve_base_model

    settings = _settings()
    try:
        path = resolve_base_model(settings.base_model, settings.home, show_progress=True)
    except BaseModelError as error:
        _fail(str(error))
    console.print(f"base model ready: {path}")
    gguf = settings.gguf_serving()
    if gguf is not None:
        with console.status(f"Converting the base model to {gguf.quant} GGUF for llama.cpp (about 10 s)..."):
            served = gguf.served_base(path)
        console.print(f"llama.cpp serves it from {served}")


@app.command()
def chat() -> None:
    """Talk to Switchboard in the terminal, through the same pipeline as every channel."""
    from core.messages import IncomingMessage

    components = _started(_settings())
    pipeline = components.pipeline
    console.print("Type a message; /help lists commands, /reset forgets, Ctrl-D quits.")
    loop = asyncio.new_event_loop()
    try:
        while True:
            try:
                text = console.input("[bold]you>[/bold] ")
            except (EOFError, KeyboardInterrupt):
                break
            if not text.strip():
                continue
            message = IncomingMessage("console", "console:local", text, user_id="local")
            reply = loop.run_until_complete(pipeline.handle(message))
            route = reply.route
            # style=, not markup: "[hr ...]" would be read as a rich tag and vanish.
            console.print(f"({route.department}, confidence {route.confidence:.2f}, {route.reason})", style="dim")
            console.print(reply.text, highlight=False, markup=False)
            for entry in reply.sources:
                console.print(f"  [{entry.id}] {entry.text}", style="dim", highlight=False, markup=False)
    finally:
        loop.close()
        components.close()


@app.command()
def ask(text: Annotated[str, typer.Argument(help="The message to answer.")]) -> None:
    """Answer one message and print JSON: department, confidence, reply, latency_ms."""
    from core.messages import IncomingMessage

    components = _started(_settings())
    try:
        reply = asyncio.run(components.pipeline.handle(IncomingMessage("cli", "cli:ask", text)))
    finally:
        components.close()
    print(json.dumps({
        "department": reply.route.department,
        "confidence": reply.route.confidence,
        "reason": reply.route.reason,
        "reply": reply.text,
        "sources": [{"id": e.id, "text": e.text, "score": e.score} for e in reply.sources],
        "latency_ms": reply.latency_ms,
    }, ensure_ascii=False))


models_app = typer.Typer(help="What serves each department; roll back a promotion.")
app.add_typer(models_app, name="models")


@models_app.callback(invoke_without_command=True)
def models(ctx: typer.Context) -> None:
    """Show what serves each department and where it came from."""
    if ctx.invoked_subcommand:
        return
    components = _started(_settings())
    table = Table("department", "serving", "memory", "source", "note")
    for entry in components.backend.models():
        note = f"[yellow]{entry.note}[/yellow]" if entry.note else ""
        table.add_row(entry.department, entry.serving, _memory(entry), entry.source, note)
    components.close()
    Console().print(table)


def _memory(entry) -> str:
    if not entry.memory_bytes:
        return "-"
    size = f"{entry.memory_bytes / 2**20:,.1f} MiB"
    return {"adapter": f"+{size}", "base": f"{size} (shared)"}.get(entry.serving, size)


@models_app.command("rollback")
def models_rollback(department: Annotated[str, typer.Argument(help="Department to roll back.")]) -> None:
    """Make the previous version live again (the current one is kept as a candidate)."""
    from training.promotion import RegistryError, rollback

    settings = _settings()
    _check_department(department, settings)
    try:
        restored = rollback(settings.models_path, department)
    except RegistryError as error:
        _fail(str(error))
    live = f"{restored.method} {restored.path}" if restored else "the base model"
    console.print(f"{department}: now serving {live}; a running server picks it up within seconds")


@app.command()
def route(
    text: Annotated[str | None, typer.Argument(help="The message to route.")] = None,
    jsonl: Annotated[
        Path | None,
        typer.Option("--jsonl", help='File of lines {"text": ...}; one JSON result per line.'),
    ] = None,
    data: DataOption = None,
) -> None:
    """Show where a message would go: department, confidence, reason."""
    from gateway.components import build_router

    if (text is None) == (jsonl is None):
        _fail("give either TEXT or --jsonl FILE", 2)
    router = build_router(_settings(data))
    if text is not None:
        print(json.dumps(_route_json(router.route(text, []))))
        return
    try:
        lines = jsonl.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        _fail(f"{jsonl}: {error.strerror}", 2)
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            message = item["text"]
            if not isinstance(message, str):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            _fail(f'{jsonl}:{number}: expected a JSON object like {{"text": "..."}}', 2)
        print(json.dumps(_route_json(router.route(message, []))))


telegram_app = typer.Typer(help="Register the Telegram webhook.", no_args_is_help=True)
app.add_typer(telegram_app, name="telegram")


@telegram_app.command("set-webhook")
def telegram_set_webhook(
    url: Annotated[str | None, typer.Option(help="Public https URL (default: <public_url>/webhooks/telegram).")] = None,
) -> None:
    """Point Telegram at this server's webhook, with the secret and the update types we handle."""
    from bots.telegram import ALLOWED_UPDATES, new_secret, set_webhook

    settings = _settings()
    token, secret = settings.telegram_bot_token, settings.telegram_webhook_secret
    if token is None:
        _fail("set SWITCHBOARD_TELEGRAM_BOT_TOKEN (from @BotFather) first", 2)
    if secret is None:
        _fail(f"set SWITCHBOARD_TELEGRAM_WEBHOOK_SECRET first, for example to {new_secret()}", 2)
    if url is None and settings.public_url is None:
        _fail("give --url https://.../webhooks/telegram or set SWITCHBOARD_PUBLIC_URL", 2)
    url = url or settings.public_url.rstrip("/") + "/webhooks/telegram"
    if not url.startswith("https://"):
        _fail(f"Telegram only calls https URLs; got {url}", 2)
    _telegram(settings, lambda bot: set_webhook(bot, url, secret.get_secret_value()))
    console.print(f"Telegram now sends {', '.join(ALLOWED_UPDATES)} updates to {url}")


@telegram_app.command("delete-webhook")
def telegram_delete_webhook() -> None:
    """Stop Telegram from calling the webhook (use before switching to --telegram-polling)."""
    from bots.telegram import delete_webhook

    settings = _settings()
    if settings.telegram_bot_token is None:
        _fail("set SWITCHBOARD_TELEGRAM_BOT_TOKEN first", 2)
    _telegram(settings, delete_webhook)
    console.print("Telegram webhook deleted")


def _telegram(settings: Settings, action) -> None:
    """Run `action(bot)` against the Bot API; a refusal or an unreachable API is a one-line error."""
    from telegram.error import TelegramError

    from gateway.components import telegram_sender

    async def run() -> None:
        sender = telegram_sender(settings)
        await sender.start()
        try:
            await action(sender.bot)
        finally:
            await sender.close()

    try:
        asyncio.run(run())
    except TelegramError as error:
        _fail(
            f"the Telegram Bot API ({settings.telegram_api_url}) did not do it: {scrub(str(error))}. "
            "Check SWITCHBOARD_TELEGRAM_BOT_TOKEN and that this machine can reach the API."
        )


data_app = typer.Typer(help="Check and summarise the training data.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("validate")
def data_validate(
    paths: Annotated[list[Path] | None, typer.Argument(help="Files to check (default: the whole company folder).")] = None,
    kind: Annotated[
        str | None, typer.Option(help="sft, eval, preference, out_of_scope or handbook (default: from the name).")
    ] = None,
    mapping: Annotated[
        list[str] | None, typer.Option("--map", help="Column mapping, e.g. instruction=question,output=answer.")
    ] = None,
    handbook: Annotated[Path | None, typer.Option(help="Handbook whose fact ids the files must use.")] = None,
    data: DataOption = None,
) -> None:
    """Validate data files; exits 1 if anything is wrong, listing file:line: field problems."""
    from training.datasets import parse_mapping
    from training.validation import validate_bundle, validate_file

    try:
        columns = parse_mapping(mapping)
    except ValueError as error:
        _fail(f"--map: {error}", 2)
    if paths:
        problems = [p for path in paths for p in validate_file(path, kind, columns, handbook)]
    else:
        folder = _data_folder(data)
        problems = validate_bundle(folder)
    for problem in problems:
        print(problem)
    if problems:
        _fail(f"{len(problems)} problem(s) found")
    console.print(f"[green]ok[/green]: {', '.join(map(str, paths)) if paths else folder} is valid")


def _data_folder(data: Path | None) -> Path:
    return _settings(data).data_path


@data_app.command("import")
def data_import(
    file: Annotated[Path, typer.Argument(help="CSV, JSON or JSONL export of a spreadsheet.")],
    department: Annotated[str, typer.Option(help="The department the records belong to.")],
    mapping: Annotated[
        list[str] | None, typer.Option("--map", help="Our field=their column, e.g. instruction=question,output=answer.")
    ] = None,
    kind: Annotated[str, typer.Option(help="sft (train.jsonl), eval, preference, not_covered or phrasings.")] = "sft",
    data: DataOption = None,
) -> None:
    """Append a spreadsheet's records to a department's data, after validating every one (all or nothing)."""
    from core.company import CompanyError
    from training.data_import import import_records
    from training.datasets import DatasetError, parse_mapping

    folder = _data_folder(data)
    try:
        result = import_records(file, department, folder, kind=kind, mapping=parse_mapping(mapping))
    except DatasetError as error:
        for problem in error.problems:
            print(problem)
        _fail(f"{len(error.problems)} problem(s) in {file}; nothing was imported")
    except (CompanyError, ValueError) as error:
        _fail(str(error), 2)
    skipped = f" ({result.skipped} already there, skipped)" if result.skipped else ""
    console.print(f"[green]imported[/green] {result.added} record(s) into {result.target}{skipped}; "
                  f"next: switchboard data validate --data {folder}")


@app.command()
def init(directory: Annotated[Path, typer.Argument(help="Where to create the company folder (new or empty).")]) -> None:
    """Start a company folder: departments.yaml with comments and an example `it` department."""
    import shutil

    from core.company import TEMPLATE

    directory = directory.expanduser()
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        _fail(f"{directory} already exists and is not an empty folder; choose a new one", 2)
    shutil.copytree(TEMPLATE, directory, dirs_exist_ok=True)
    console.print(
        f"[green]created[/green] {directory}: edit departments.yaml and the it/ folder (README.md says what each "
        f"file is for), then\n  switchboard data validate --data {directory}\n  switchboard train all --data "
        f"{directory}\n  SWITCHBOARD_DATA_DIR={directory} switchboard serve"
    )


@data_app.command("stats")
def data_stats(data: DataOption = None) -> None:
    """Per department: facts, records, coverage, mean answer tokens, preference pairs."""
    from training.datasets import DatasetError
    from training.validation import department_stats

    settings = _settings(data)
    tokenizer = _base_tokenizer(settings)

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    table = Table("department", "facts", "train", "eval", "facts covered 4+", "mean answer tokens",
                  "preference pairs")
    for department in settings.company().ids:
        try:
            stats = department_stats(department, count, settings.data_path)
        except DatasetError as error:
            _fail(f"{department}: {error} (run `switchboard data validate`)")
        table.add_row(department, str(stats.facts), str(stats.train_records), str(stats.eval_records),
                      f"{stats.facts_covered_4plus}/{stats.facts}", f"{stats.mean_answer_tokens:.0f}",
                      str(stats.preference_pairs))
    Console().print(table)


def _base_tokenizer(settings: Settings):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(_resolved_base(settings))


@app.command()
def train(
    target: Annotated[str, typer.Argument(help="A department, 'all', or 'router'.")],
    method: Annotated[str | None, typer.Option(help="full, lora, qlora or dpo (default: the recipe's).")] = None,
    base: Annotated[str | None, typer.Option(help="Base model to train on (default: base_model setting).")] = None,
    epochs: Annotated[float | None, typer.Option(help="Epochs (default: the recipe's).")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="Recipe YAML (default: the department's recipe "
                                                "in departments.yaml, else LoRA).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print parameters, steps and estimated time; do not train.")] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the last unfinished run from its checkpoint.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Promote even if accuracy is below the live model's.")] = False,
    data: DataOption = None,
) -> None:
    """Train department models (evaluated, then promoted if they are at least as good)."""
    from training.recipe import RecipeError, default_recipe, load_recipe

    settings = _settings(data)
    if target == "router":
        _train_router(settings)
        return
    departments = _targets(target, settings)
    base_model = _resolved_base(settings)
    if target == "all":
        _train_router(settings)
    for department in departments:
        try:
            recipe = load_recipe(config) if config else default_recipe(settings.company().department(department))
            recipe = recipe.with_overrides(method=method, base=base and _resolved_base(settings, base), epochs=epochs)
        except RecipeError as error:
            _fail(str(error), 2)
        _train_one(settings, department, recipe, base_model, dry_run=dry_run, resume=resume, force=force)
        _release_models()


def _release_models() -> None:
    """Free the last department's models before the next one trains. The Trainer and its model
    refer to each other, so they outlive the department until a full cyclic collection (the likely
    reason `train all` grew to about 10 GB)."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _train_one(settings: Settings, department: str, recipe, base_model: str, *,
               dry_run: bool, resume: bool, force: bool) -> None:
    from training.department import make_job, plan, train_department

    prompts = settings.company().system_prompts(settings.system_prompts)
    job = make_job(department, recipe, base_model, settings.models_path, prompts, resume=resume,
                   data_dir=settings.data_path)
    if dry_run:
        estimate = plan(job)
        print(json.dumps({
            "department": department, "method": recipe.method, "trainable_params": estimate.trainable_params,
            "total_params": estimate.total_params,
            "trainable_percent": round(100 * estimate.trainable_params / estimate.total_params, 3),
            "examples": estimate.examples, "steps": estimate.steps,
            "estimated_minutes": round(estimate.estimated_seconds / 60, 1),
        }))
        return
    console.print(f"[bold]{department}[/bold]: {recipe.method} on {job.base_model} -> {job.run_dir}")
    with _eval_progress() as on_progress:
        outcome = train_department(job, settings.models_path, settings.home / "reports", force=force,
                                   device=settings.device, on_progress=on_progress, gguf=settings.gguf_serving())
    seconds = sum(stage.seconds for stage in outcome.result.stages)
    verdict = "[green]promoted[/green]" if outcome.decision.promoted else "[yellow]not promoted[/yellow]"
    served = ""
    if outcome.unconverted is not None:
        served = f" as served by llama.cpp ({outcome.version.gguf}; {outcome.unconverted.accuracy:.1%} before conversion)"
    console.print(
        f"{department}: trained in {seconds / 60:.1f} min; fact accuracy base {outcome.base.accuracy:.1%} -> "
        f"trained {outcome.trained.accuracy:.1%}{served}; {verdict} ({outcome.decision.reason}); "
        f"report {outcome.report}"
    )


@app.command("eval")
def evaluate(
    target: Annotated[str, typer.Argument(help="A department, 'all', or 'router'.")],
    file: Annotated[Path | None, typer.Option("--file", help="Score these questions (JSON, JSONL or CSV with "
                                              "instruction and expected) instead of eval.jsonl.")] = None,
    mapping: Annotated[
        list[str] | None, typer.Option("--map", help="Column mapping for --file, e.g. instruction=question.")
    ] = None,
    data: DataOption = None,
) -> None:
    """Fact accuracy of the base and the live model, each with and without grounding, and retrieval recall."""
    from knowledge.library import load_department
    from training.datasets import DatasetError, load_questions
    from training.department import EvalSuite, evaluate_gguf, evaluate_models, live_artifact
    from training.evaluation import eval_questions, write_report

    settings = _settings(data)
    if target == "router":
        _eval_router(settings)
        return
    departments = _targets(target, settings)
    if file is not None and len(departments) != 1:
        _fail("--file scores one department's questions: name the department, not 'all'", 2)
    questions = None
    if file is not None:
        try:
            questions = eval_questions(load_questions(file, mapping))
        except (DatasetError, ValueError) as error:
            _fail(f"{file}: {error}", 2)
    base_model = _resolved_base(settings)
    prompts = settings.company().system_prompts(settings.system_prompts)
    k = settings.grounding_k
    gguf = settings.gguf_serving()
    served = [f"served: llama.cpp {gguf.quant} + grounding"] if gguf else []
    table = Table("department", "base", "base + grounding", "handbook quote", "live", "live + grounding", *served,
                  f"recall@{k}", "not covered", "live model")
    for department in departments:
        artifact = live_artifact(settings.models_path, department)
        try:
            knowledge = load_department(settings.data_path, department)
            suite = EvalSuite.load(department, knowledge, k=k, data_dir=settings.data_path, questions=questions)
        except (DatasetError, OSError, ValueError) as error:
            _fail(f"{department}: {error}")
        with _eval_progress() as on_progress:
            evaluations = evaluate_models(suite, base_model, artifact, prompts[department],
                                          device=settings.device, on_progress=on_progress)
            converted = [] if gguf is None else evaluate_gguf(suite, base_model, artifact, prompts[department], gguf,
                                                              on_progress=on_progress)
        retrieval = suite.retrieval_summary()
        report = write_report(settings.home / "reports", department, evaluations + converted,
                              {"base_model": base_model, "questions": str(file or "eval.jsonl"), **retrieval})
        console.print(f"{department}: report {report}")
        scores = {(e.label == "base", e.grounded, e.questions): f"{e.accuracy:.1%}" for e in evaluations}
        recall, quote = retrieval.get("retrieval", {}).get("recall"), retrieval.get("handbook_quote_accuracy")
        table.add_row(
            department, scores.get((True, False, "facts"), "-"), scores.get((True, True, "facts"), "-"),
            "-" if quote is None else f"{quote:.1%}",
            scores.get((False, False, "facts"), "-"), scores.get((False, True, "facts"), "-"),
            # What answers in chat: the live GGUF (or the base's, with no live model).
            *([_served_score(converted)] if gguf else []),
            "-" if recall is None else f"{recall:.1%}",
            # How often the grounded model (the live one, else base) says a question outside the handbook is so.
            scores.get((artifact is None, True, "not_covered"), "-"),
            str(artifact.path.relative_to(settings.models_path)) if artifact else "(none: base)",
        )
    Console().print(table)


def _served_score(converted: list) -> str:
    """Fact accuracy of the model llama.cpp serves: the live GGUF's, else the base's (evaluate_gguf's last)."""
    return f"{[e for e in converted if e.questions == 'facts'][-1].accuracy:.1%}"


def _train_router(settings: Settings) -> None:
    from router.learned import ROUTER_SUBDIR
    from training.router_training import train_router

    with console.status("Training the router..."):
        report = train_router(settings.data_path, out_dir=settings.models_path / ROUTER_SUBDIR)
    evaluation = report.evaluation
    console.print(
        f"router ({report.method}) trained in {report.train_seconds:.1f} s on {report.n_train} messages: "
        f"held-out departments {evaluation.department_accuracy:.1%}, out-of-scope to base "
        f"{evaluation.out_of_scope_to_base:.1%}{_field_summary(evaluation)}; threshold {report.threshold:.2f} "
        f"-> {report.directory}"
    )


def _field_summary(evaluation) -> str:
    if evaluation.field_department_accuracy is None:
        return ""
    outside = evaluation.field_out_of_scope_to_base
    return (f"; field split ({evaluation.n_field}): departments {evaluation.field_department_accuracy:.1%}"
            + ("" if outside is None else f", out-of-scope to base {outside:.1%}")
            + f"; both held-out sets: departments {evaluation.all_department_accuracy:.1%}, out-of-scope to base "
              f"{evaluation.all_out_of_scope_to_base:.1%}")


def _eval_router(settings: Settings) -> None:
    from router.learned import ROUTER_SUBDIR, RouterArtifactError
    from training.router_training import evaluate_router

    try:
        evaluation = evaluate_router(settings.models_path / ROUTER_SUBDIR, settings.data_path)
    except (RouterArtifactError, ValueError) as error:
        _fail(f"{error} (run `switchboard train router`)")
    console.print(
        f"router ({evaluation.method}), {evaluation.n_test} held-out messages: departments "
        f"{evaluation.department_accuracy:.1%} right, out-of-scope to base {evaluation.out_of_scope_to_base:.1%}"
        f"{_field_summary(evaluation)}"
    )
    table = Table("true \\ routed", *evaluation.labels, title="confusion matrix")
    for label, row in zip(evaluation.labels, evaluation.confusion, strict=True):
        table.add_row(label, *map(str, row))
    Console().print(table)


@contextlib.contextmanager
def _eval_progress() -> Iterator[Callable[[str, int, int], None]]:
    """A progress bar per evaluated model, fed by evaluation's per-batch callback."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("evaluating {task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=console) as progress:
        tasks: dict[str, int] = {}

        def update(label: str, done: int, total: int) -> None:
            if label not in tasks:
                tasks[label] = progress.add_task(label, total=total)
            progress.update(tasks[label], completed=done)

        yield update


def _targets(target: str, settings: Settings) -> list[str]:
    if target == "all":
        return list(settings.company().ids)
    _check_department(target, settings)
    return [target]


def _check_department(name: str, settings: Settings) -> None:
    ids = settings.company().ids
    if name not in ids:
        _fail(f"unknown department {name!r}; {settings.data_path / 'departments.yaml'} lists {', '.join(ids)} "
              "(or use 'all')", 2)


def _resolved_base(settings: Settings, spec: str | None = None) -> str:
    """`spec` (default: the base_model setting) as something from_pretrained loads; a clear error if not."""
    from inference.base_model import BaseModelError, resolve_base_model

    try:
        return resolve_base_model(spec or settings.base_model, settings.home)
    except BaseModelError as error:
        _fail(str(error))


def _route_json(route) -> dict:
    return {"department": route.department, "confidence": route.confidence, "reason": route.reason}


if __name__ == "__main__":
    app()
