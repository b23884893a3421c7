"""The learned router, trained once per test run on the bundled data (tests/conftest.py, a few seconds)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from core.messages import Turn
from router.commands import CommandRouter
from router.learned import METADATA_FILE, MODEL_FILE, LearnedRouter, RouterArtifactError, load_learned_router
from tests.company_folder import write_company_file
from training.datasets import DATA_DIR
from training.router_training import (
    Example,
    RouterTrainingReport,
    evaluate_router,
    fit_threshold,
    load_examples,
    load_extra_examples,
    split_examples,
)

# Measured with the default method (README, The router knows each department's field): departments
# 95.2% / out-of-scope 87.1% on the TEST split, 92.0% / 98.1% on the field split, 94.2% / 91.9% on both.
# Learning the fields cost the split 3 of its 70 out-of-scope messages (91.4% before) and took the
# field split from 58.7% to 92.0%. The floors leave a message or two of slack.
DEPT_FLOOR, OOS_FLOOR = 0.95, 0.85
FIELD_DEPT_FLOOR, FIELD_OOS_FLOOR = 0.90, 0.95
ALL_DEPT_FLOOR, ALL_OOS_FLOOR = 0.93, 0.90
HR_ANSWER = [Turn("user", "How many EL days do I get?"),
             Turn("assistant", "18 days a year.", department="hr")]


@pytest.fixture(scope="module")
def trained(bundled_router: RouterTrainingReport) -> RouterTrainingReport:
    return bundled_router


@pytest.fixture(scope="module")
def router(trained: RouterTrainingReport) -> LearnedRouter:
    return load_learned_router(trained.directory)


def test_training_is_fast_and_writes_the_artifact(trained: RouterTrainingReport) -> None:
    assert trained.train_seconds < 30  # `switchboard prepare` (and so `make run`) trains it on a fresh clone
    assert sorted(p.name for p in trained.directory.iterdir()) == [MODEL_FILE, METADATA_FILE]
    # staging directories of the atomic write are gone
    assert [p.name for p in trained.directory.parent.iterdir()] == ["router"]
    meta = json.loads((trained.directory / METADATA_FILE).read_text())
    assert meta["format_version"] == 1 and meta["method"] == trained.method
    assert meta["labels"] == ["hr", "finance", "healthcare", "marketing", "sales", "base"]
    assert meta["threshold"] == trained.threshold and meta["created"]
    assert meta["extra_examples"] == trained.n_extra > 0


def test_held_out_accuracy(trained: RouterTrainingReport) -> None:
    ev = trained.evaluation
    assert ev.department_accuracy >= DEPT_FLOOR
    assert ev.out_of_scope_to_base >= OOS_FLOOR
    assert sum(map(sum, ev.confusion)) == ev.n_test == sum(c.support for c in ev.per_class)
    assert ev.unseen_wording_accuracy is not None and ev.n_unseen_wording > 300
    assert ev.n_field >= 200
    assert ev.field_department_accuracy >= FIELD_DEPT_FLOOR and ev.field_out_of_scope_to_base >= FIELD_OOS_FLOOR
    assert ev.all_department_accuracy >= ALL_DEPT_FLOOR and ev.all_out_of_scope_to_base >= ALL_OOS_FLOOR


def test_bundled_extras_hold_no_held_out_message() -> None:
    split = split_examples(load_examples())
    # the loader would drop such a text; the bundled files must not rely on that
    assert load_extra_examples(held_out=(*split.validation, *split.test)) == load_extra_examples()


def test_extras_equal_to_a_held_out_message_are_dropped(tmp_path: Path) -> None:
    write_company_file(tmp_path)
    (tmp_path / "router").mkdir()
    lines = ['{"text": "EL carry forward?", "category": "HR-02"}', '{"text": "notice period", "category": "HR-45"}']
    (tmp_path / "router" / "extra_hr.jsonl").write_text("\n".join(lines) + "\n")
    extra = load_extra_examples(tmp_path, held_out=[Example("el  Carry forward", "hr")])
    assert [e for e in extra if e.label == "hr"] == [Example("notice period", "hr")]


def test_threshold_is_the_middle_of_those_within_one_message_of_the_best() -> None:
    classes = ["hr", "finance", "base"]
    probs = np.array([[0.9, 0.05, 0.05], [0.6, 0.2, 0.2], [0.4, 0.3, 0.3],  # hr messages
                      [0.35, 0.33, 0.32]])  # an out-of-scope message the model calls hr
    labels = ["hr", "hr", "hr", "base"]
    # 4 right only for thresholds in (0.35, 0.4]: one message decides that band;
    # 3 right anywhere in [0, 0.6], whose middle is kept
    assert fit_threshold(probs, labels, classes) == 0.3


@pytest.mark.slow
def test_evaluate_router_remeasures_the_same_test_split(trained: RouterTrainingReport) -> None:
    assert evaluate_router(trained.directory) == trained.evaluation


@pytest.mark.parametrize("text", ["", "   ", "asdkjh qwpoeiru zxcmvn", "sdfsdf", "🙂🙂", "12345"])
def test_empty_and_gibberish_go_to_base(router: LearnedRouter, text: str) -> None:
    route = router.route(text, [])
    assert route.department == "base"
    assert route.text == text.strip()


def test_empty_text_is_a_fallback(router: LearnedRouter) -> None:
    route = router.route("  ", [])
    assert (route.reason, route.confidence, route.text) == ("fallback", 0.0, "")


def test_confident_message_routes_by_classifier(router: LearnedRouter) -> None:
    route = router.route("  How do I file a travel expense claim?  ", [])
    assert (route.department, route.reason) == ("finance", "classifier")
    assert route.confidence >= router.threshold
    assert route.text == "How do I file a travel expense claim?"


def test_short_follow_up_stays_with_the_conversation(router: LearnedRouter) -> None:
    for text in ("and what about Chennai?", "what about Chennai?"):
        route = router.route(text, HR_ANSWER)
        assert (route.department, route.reason) == ("hr", "context"), text
    # with no conversation the same words go wherever the classifier says
    assert router.route("and what about Chennai?", []).reason != "context"


def test_confident_other_department_escapes_the_context(router: LearnedRouter) -> None:
    for text, dept in [("How do I file a travel expense claim?", "finance"),
                       ("dealer ka credit limit kitna hai", "sales")]:
        route = router.route(text, HR_ANSWER)
        assert (route.department, route.reason) == (dept, "classifier"), text


def test_context_is_the_last_assistant_department_only(router: LearnedRouter) -> None:
    base_answer = [*HR_ANSWER, Turn("user", "hi"), Turn("assistant", "Hello!", department="base")]
    assert router.route("and what about Chennai?", base_answer).reason != "context"


@pytest.mark.parametrize("text, dept", [
    ("EL kitne din milte hain saal mein?", "hr"),
    ("mujhe salary slip kaise milegi", "hr"),
    ("health card kaise download karein", "healthcare"),
    ("expense claim kab tak submit karna hai", "finance"),
    ("campaign approval kaun karega", "marketing"),
    ("dealer ka credit limit kitna hai", "sales"),
])
def test_hinglish_routes_like_english(router: LearnedRouter, text: str, dept: str) -> None:
    assert router.route(text, []).department == dept


@pytest.mark.parametrize("text", ["छुट्टी कितनी मिलती है?", "விடுப்பு எத்தனை நாட்கள்?"])
def test_other_scripts_do_not_crash_and_are_not_classified(router: LearnedRouter, text: str) -> None:
    alone = router.route(text, [])
    assert (alone.department, alone.reason, alone.confidence) == ("base", "fallback", 0.0)
    in_conversation = router.route(text, HR_ANSWER)
    assert (in_conversation.department, in_conversation.reason) == ("hr", "context")


def test_mixed_script_is_classified_on_its_latin_part(router: LearnedRouter) -> None:
    assert router.route("EL कितने दिन?", []).department == "hr"


def test_commands_still_win_over_the_learned_router(router: LearnedRouter) -> None:
    commands = CommandRouter(router, router.metadata.labels)
    assert commands.route("/sales How do I file a travel expense claim?", []).department == "sales"
    route = commands.route("How do I file a travel expense claim?", [])
    assert (route.department, route.pinned) == ("finance", False)


@pytest.fixture
def artifact(trained: RouterTrainingReport, tmp_path: Path) -> Path:
    return Path(shutil.copytree(trained.directory, tmp_path / "router"))


def test_missing_artifact_is_reported(tmp_path: Path) -> None:
    with pytest.raises(RouterArtifactError, match=r"router\.json is missing"):
        load_learned_router(tmp_path / "router")


def test_corrupt_model_file_is_reported(artifact: Path) -> None:
    (artifact / MODEL_FILE).write_bytes(b"not a pickle at all")
    with pytest.raises(RouterArtifactError, match=r"model\.joblib is unreadable"):
        load_learned_router(artifact)


def test_truncated_model_file_is_reported(artifact: Path) -> None:
    data = (artifact / MODEL_FILE).read_bytes()
    (artifact / MODEL_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(RouterArtifactError, match=r"model\.joblib is unreadable"):
        load_learned_router(artifact)


def test_missing_model_file_is_reported(artifact: Path) -> None:
    (artifact / MODEL_FILE).unlink()
    with pytest.raises(RouterArtifactError, match=r"model\.joblib is missing"):
        load_learned_router(artifact)


def test_corrupt_metadata_is_reported(artifact: Path) -> None:
    (artifact / METADATA_FILE).write_text("{not json")
    with pytest.raises(RouterArtifactError, match=r"router\.json is unreadable"):
        load_learned_router(artifact)


def test_wrong_format_version_is_reported(artifact: Path) -> None:
    meta = json.loads((artifact / METADATA_FILE).read_text())
    (artifact / METADATA_FILE).write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(RouterArtifactError, match=r"format_version 99.*reads version 1"):
        load_learned_router(artifact)


def test_metadata_written_before_extras_still_loads(artifact: Path) -> None:
    meta = json.loads((artifact / METADATA_FILE).read_text())
    del meta["extra_examples"]
    (artifact / METADATA_FILE).write_text(json.dumps(meta))
    assert load_learned_router(artifact).metadata.extra_examples == 0


def test_bad_threshold_is_reported(artifact: Path) -> None:
    meta = json.loads((artifact / METADATA_FILE).read_text())
    (artifact / METADATA_FILE).write_text(json.dumps({**meta, "threshold": "high"}))
    with pytest.raises(RouterArtifactError, match=r"threshold 'high' is not a number"):
        load_learned_router(artifact)


def test_evaluating_on_changed_data_is_refused(trained: RouterTrainingReport, tmp_path: Path) -> None:
    data = Path(shutil.copytree(DATA_DIR, tmp_path / "data"))
    oos = data / "router" / "out_of_scope.jsonl"
    oos.write_text(oos.read_text() + '{"text": "a brand new out-of-scope line"}\n')
    with pytest.raises(ValueError, match="trained on different data"):
        evaluate_router(trained.directory, data)
