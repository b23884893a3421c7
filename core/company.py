"""The company Switchboard serves: its departments, read from `departments.yaml` in a company folder.

A company folder holds `departments.yaml`, one folder per department (handbook
and questions) and `router/` (the router's extra data). Every layer asks the
Company which departments exist; `base`, the general assistant, is always there.

    company: Sahyadri Home Appliances
    departments:
      - id: hr                          # a lowercase slug; /hr is its command
        name: HR                        # as people say it ("the HR handbook does not cover that")
        description: leave, holidays, attendance and other HR policies
        helpdesk: the HR helpdesk on extension 4420   # named by the "not covered" reply
        recipe: recipes/hr.yaml         # optional: its training recipe, relative to this file
        system_prompt: ...              # optional: built from name, description and company
        fact_prefix: HR                 # optional: handbook fact ids are HR-01, HR-02, ...
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import yaml

from core.files import file_signature

BASE: Final = "base"
COMPANY_FILE: Final = "departments.yaml"
# The example company shipped with the project: the default data_dir.
BUNDLED_COMPANY: Final = Path(__file__).resolve().parents[1] / "examples" / "sahyadri"
# What `switchboard init` copies: departments.yaml with comments and one example department.
TEMPLATE: Final = BUNDLED_COMPANY.parent / "template"
# Ids that name something else: the fallback, commands, CLI targets, the router's own folder.
RESERVED_IDS: Final = frozenset({BASE, "auto", "help", "start", "reset", "all", "router", "recipes"})
_ID = re.compile(r"[a-z][a-z0-9_]{0,31}")
_PREFIX = re.compile(r"[A-Z]{1,8}")
_DEPARTMENT_KEYS: Final = ("id", "name", "description", "helpdesk", "recipe", "system_prompt", "fact_prefix")
_COMPANY_KEYS: Final = ("company", "assistant_prompt", "departments")


class CompanyError(ValueError):
    """departments.yaml cannot be used; the message names the file, line and field."""

    def __init__(self, detail: str, path: Path | None = None, line: int | None = None) -> None:
        self.detail, self.path, self.line = detail, path, line
        where = f"{path}:{line}: " if path and line else f"{path}: " if path else ""
        super().__init__(where + detail)


@dataclass(frozen=True)
class Department:
    id: str
    name: str
    description: str
    system_prompt: str
    helpdesk: str = ""
    recipe: Path | None = None  # absolute; None: the default recipe
    fact_prefix: str = ""


@dataclass(frozen=True)
class Company:
    name: str
    root: Path
    departments: tuple[Department, ...]
    assistant_prompt: str  # the base model's system prompt

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(d.id for d in self.departments)

    @property
    def targets(self) -> tuple[str, ...]:
        """Everything a route may resolve to: each department, then `base`."""
        return (*self.ids, BASE)

    def department(self, department_id: str) -> Department:
        for department in self.departments:
            if department.id == department_id:
                return department
        raise CompanyError(f"unknown department {department_id!r}; {self.root / COMPANY_FILE} lists "
                           f"{', '.join(self.ids)}")

    def system_prompts(self, overrides: dict[str, str] | None = None) -> dict[str, str]:
        """Each target's system prompt, with configured overrides applied."""
        prompts = {d.id: d.system_prompt for d in self.departments} | {BASE: self.assistant_prompt}
        return prompts | dict(overrides or {})


def load_company(folder: Path | str | None = None) -> Company:
    """The company described by `folder`/departments.yaml (default: the bundled example).

    Every layer asks for it, often per department: the file is parsed again only when it changes.
    """
    root = Path(folder or BUNDLED_COMPANY).expanduser()
    path = root / COMPANY_FILE
    if not path.is_file():
        hint = "run `switchboard init DIR` to start one" if not root.is_dir() or not any(root.iterdir()) else (
            f"add {COMPANY_FILE} (see `switchboard init`)")
        raise CompanyError(f"not a company folder, it has no {COMPANY_FILE}; {hint}", root)
    return _read(path, file_signature(path))


@functools.lru_cache(maxsize=32)
def _read(path: Path, signature: tuple[int, int] | None) -> Company:
    """`path` parsed; `signature` only keys the cache, so an edited file is read afresh."""
    try:
        text = path.read_text(encoding="utf-8")
        node = yaml.compose(text)
        values = yaml.safe_load(text)
    except UnicodeDecodeError as error:
        line = path.read_bytes()[: error.start].count(b"\n") + 1
        raise CompanyError("not UTF-8 text; save it as UTF-8", path, line) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        raise CompanyError(f"invalid YAML ({getattr(error, 'problem', error)})", path,
                           mark.line + 1 if mark else 1) from None
    return _parse(path, values, node)


def _parse(path: Path, values: object, node: yaml.Node | None) -> Company:
    def fail(where: yaml.Node | None, message: str) -> CompanyError:
        return CompanyError(message, path, where.start_mark.line + 1 if where is not None else 1)

    if not isinstance(values, dict) or not isinstance(node, yaml.MappingNode):
        raise fail(node, "expected a mapping with `company:` and `departments:`")
    keys = {key.value: (key, value) for key, value in node.value}
    for key in values:
        if key not in _COMPANY_KEYS:
            raise fail(keys[key][0], f"field '{key}': unknown key; known: {', '.join(_COMPANY_KEYS)}")
    company = values.get("company")
    if not isinstance(company, str) or not company.strip():
        raise fail(keys.get("company", (None,))[0], "field 'company': the company's name is required, e.g. company: Acme Ltd")
    company = company.strip()
    items = values.get("departments")
    items_node = keys.get("departments", (None, None))[1]
    if not isinstance(items, list) or not items or not isinstance(items_node, yaml.SequenceNode):
        raise fail(keys.get("departments", (None,))[0],
                   "field 'departments': a list of departments is required, each with id, name and description")
    departments: list[Department] = []
    for item, item_node in zip(items, items_node.value, strict=True):
        department = _department(item, item_node, company, path.parent, fail)
        if department.id in {d.id for d in departments}:
            raise fail(item_node, f"field 'id': {department.id!r} is listed twice")
        departments.append(department)
    prefixes = [d.fact_prefix for d in departments]
    for department, item_node in zip(departments, items_node.value, strict=True):
        if prefixes.count(department.fact_prefix) > 1:
            raise fail(item_node, f"field 'fact_prefix': {department.fact_prefix!r} is used by two departments; "
                                  "give each its own")
    assistant = values.get("assistant_prompt") or (
        f"You are a helpful assistant for employees of {company}. Answer clearly and concisely.")
    if not isinstance(assistant, str):
        raise fail(keys["assistant_prompt"][1], "field 'assistant_prompt': expected text")
    return Company(company, path.parent, tuple(departments), assistant.strip())


def _department(item: object, node: yaml.Node, company: str, root: Path, fail) -> Department:
    if not isinstance(item, dict) or not isinstance(node, yaml.MappingNode):
        raise fail(node, "each department is a mapping with id, name and description")
    lines = {key.value: value for key, value in node.value}
    for key, value in item.items():
        if key not in _DEPARTMENT_KEYS:
            raise fail(lines.get(key, node), f"field '{key}': unknown key; known: {', '.join(_DEPARTMENT_KEYS)}")
        if value is not None and not isinstance(value, str):
            raise fail(lines[key], f"field '{key}': expected text, got {type(value).__name__}")
    for required in ("id", "name", "description"):
        if not (item.get(required) or "").strip():
            raise fail(lines.get(required, node), f"field '{required}': required")
    department_id = item["id"].strip()
    if not _ID.fullmatch(department_id):
        raise fail(lines["id"], f"field 'id': {department_id!r} must be a lowercase slug (a-z, 0-9, _; "
                                "starting with a letter, at most 32), e.g. it or customer_care")
    if department_id in RESERVED_IDS:
        raise fail(lines["id"], f"field 'id': {department_id!r} is reserved ({', '.join(sorted(RESERVED_IDS))}); "
                                "choose another")
    name, description = item["name"].strip(), item["description"].strip()
    prefix = (item.get("fact_prefix") or re.sub(r"[^A-Z]", "", department_id.upper())[:8]).strip()
    if not _PREFIX.fullmatch(prefix):
        raise fail(lines.get("fact_prefix", lines["id"]), f"field 'fact_prefix': {prefix!r} must be 1-8 capital letters")
    recipe = None
    if item.get("recipe"):
        recipe = (root / item["recipe"].strip()).resolve()
        if not recipe.is_file():
            raise fail(lines["recipe"], f"field 'recipe': {recipe} does not exist")
    prompt = (item.get("system_prompt") or "").strip() or (
        f"You are the {name} assistant of {company}. You help employees with {description}. "
        "Answer clearly and concisely.")
    return Department(department_id, name, description, prompt, (item.get("helpdesk") or "").strip().rstrip("."),
                      recipe, prefix)
