"""Train and evaluate the learned router (router/learned.py).

Data: the user messages of every department's train.jsonl (instruction plus
its `input` context, as a user would send them; label = department) and
router/out_of_scope.jsonl (label = base). One stratified split with a fixed
seed gives TRAIN (fit), VALIDATION (the confidence threshold) and TEST (only
ever measured). The split is re-derived from the data and the seed stored in
router.json, and a fingerprint of the data guards against evaluating on a test
split that a changed data set would have mixed into training.

With `augment` (the default) the classifier also learns each department's
vocabulary from the answers of its TRAIN records and its handbook's facts:
questions use words the few training questions never did ("tourniquet",
"IRN"), and answers and handbooks hold them. Answers of VALIDATION/TEST
records are never used, so no test question's own answer leaks in.

With `extras` (the default) it also fits on router-only questions,
router/extra_<target>.jsonl (same fields as out_of_scope.jsonl; `category`
names the handbook fact or out-of-scope topic a text was written for), and on
the questions of each department's paraphrases.jsonl. They are never part of
the split, so they only ever add to TRAIN; one whose text equals a VALIDATION
or TEST message is dropped rather than leak it.

Once the thresholds are fitted on VALIDATION, the shipped model is refitted
on TRAIN + VALIDATION: 15% more questions, and TEST stays untouched.

    switchboard train router      (or train_router(out_dir=...) from Python)
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import joblib
import numpy as np
import sklearn
from sklearn.calibration import CalibratedClassifierCV
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.svm import LinearSVC

from core.company import BASE, BUNDLED_COMPANY, Company, load_company
from router.learned import (
    FORMAT_VERSION,
    METADATA_FILE,
    METHODS,
    MODEL_FILE,
    LearnedRouter,
    MiniLMEmbedder,
    RouterMetadata,
    load_learned_router,
    normalise_text,
)
from training.datasets import (
    DATA_DIR,
    OUT_OF_SCOPE_FILE,
    department_files,
    load_eval,
    load_handbook,
    load_out_of_scope,
    load_sft,
)
from training.examples import user_text

# Chosen by measurement (bench/router_compare.py, numbers in its docstring):
# the most accurate candidate that trains in seconds and routes in under 5 ms;
# the MiniLM hybrid is ~1 point more accurate but ~19 ms a message and minutes to train.
DEFAULT_METHOD = "tfidf-svm"
TEST_FRACTION = 0.2
VALIDATION_FRACTION = 0.15  # of the whole data set
EXTRA_FILE = "extra_{target}.jsonl"  # router-only TRAIN questions, in the dir of OUT_OF_SCOPE_FILE
# Router-only TRAIN questions from a department's whole field (general health, selling technique...),
# which its handbook never mentions; field_base.jsonl holds out-of-scope texts close to the fields.
FIELD_FILE = "field_{target}.jsonl"
# Held out, never trained on: field questions with their department, measured by `eval router`.
FIELD_EVAL_FILE = "field_eval.jsonl"
SWITCH_PRECISION = 0.99  # how sure a short follow-up must be to leave its conversation's department


@dataclass(frozen=True)
class Example:
    text: str
    label: str
    answer: str = ""  # the record's output, for augmentation; "" for out-of-scope texts


@dataclass(frozen=True)
class Split:
    train: tuple[Example, ...]
    validation: tuple[Example, ...]
    test: tuple[Example, ...]
    data_sha256: str


@dataclass(frozen=True)
class ClassCount:
    """How one true label fared on the test split."""

    label: str
    support: int
    correct: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.support if self.support else 0.0


@dataclass(frozen=True)
class RouterEvaluation:
    """Routing quality on the held-out TEST split (empty history: a conversation's first message).

    confusion[i][j] counts messages of true label labels[i] routed to labels[j].
    unseen_wording_accuracy: department accuracy on <dept>/eval.jsonl, whose
    questions are worded unlike train (None when those files are absent).
    """

    method: str
    threshold: float
    switch_threshold: float
    n_test: int
    department_accuracy: float
    out_of_scope_to_base: float
    labels: tuple[str, ...]
    confusion: tuple[tuple[int, ...], ...]
    per_class: tuple[ClassCount, ...]
    unseen_wording_accuracy: float | None
    n_unseen_wording: int
    # The held-out field split (router/field_eval.jsonl): questions in a department's field that its
    # handbook does not answer, and out-of-scope ones; None when the company has no such file.
    field_department_accuracy: float | None = None
    field_out_of_scope_to_base: float | None = None
    n_field: int = 0
    # Both held-out sets together: the split's TEST messages and the field split.
    all_department_accuracy: float = 0.0
    all_out_of_scope_to_base: float = 0.0


@dataclass(frozen=True)
class RouterTrainingReport:
    method: str
    augmented: bool
    directory: Path
    threshold: float
    switch_threshold: float
    n_train: int  # split messages the shipped model was fitted on: TRAIN + VALIDATION
    n_validation: int
    n_test: int
    n_extra: int  # router-only extra questions fitted on
    train_seconds: float  # fitting, thresholds and refit; what a first start waits for
    evaluation: RouterEvaluation


def load_examples(data_dir: str | Path = DATA_DIR) -> list[Example]:
    """Every routing example in file order: department user messages, then out-of-scope texts."""
    company = load_company(data_dir)
    examples = [Example(user_text(r.instruction, r.input).strip(), dept, r.output)
                for dept in company.ids for r in load_sft(department_files(dept, data_dir).train)]
    out_of_scope = load_out_of_scope(_base_file(data_dir, OUT_OF_SCOPE_FILE.name))
    examples += [Example(text.strip(), BASE) for text in out_of_scope]
    return examples


def _base_file(data_dir: str | Path, name: str) -> Path:
    """The company's router/<name>, else the bundled example's: trivia, code and weather are out of
    scope for every company, so a new company folder need not write its own."""
    own = Path(data_dir) / OUT_OF_SCOPE_FILE.parent / name
    return own if own.exists() else BUNDLED_COMPANY / OUT_OF_SCOPE_FILE.parent / name


def load_extra_examples(data_dir: str | Path = DATA_DIR,
                        held_out: Sequence[Example] = ()) -> list[Example]:
    """router/extra_<target>.jsonl, router/field_<target>.jsonl and the paraphrase questions,
    minus any text also in `held_out` or in the held-out field split."""
    company = load_company(data_dir)
    seen = {_normalised(e.text) for e in (*held_out, *load_field_examples(data_dir))}
    folder = Path(data_dir) / OUT_OF_SCOPE_FILE.parent
    paths = [(target, folder / pattern.format(target=target))
             for target in company.ids for pattern in (EXTRA_FILE, FIELD_FILE)]
    paths += [(BASE, _base_file(data_dir, pattern.format(target=BASE))) for pattern in (EXTRA_FILE, FIELD_FILE)]
    extra = [Example(text.strip(), target) for target, path in paths if path.exists()
             for text in load_out_of_scope(path)]
    extra += [Example(user_text(r.instruction, r.input).strip(), dept) for dept in company.ids
              if (path := department_files(dept, data_dir).paraphrases).exists() for r in load_sft(path)]
    return [e for e in extra if _normalised(e.text) not in seen]


def load_field_examples(data_dir: str | Path = DATA_DIR) -> list[Example]:
    """The held-out field split, router/field_eval.jsonl ({"text", "department"}); [] when absent."""
    path = Path(data_dir) / OUT_OF_SCOPE_FILE.parent / FIELD_EVAL_FILE
    if not path.exists():
        return []
    targets = load_company(data_dir).targets
    examples = []
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            text, label = record["text"], record["department"]
        except (ValueError, KeyError, TypeError):
            raise ValueError(f'{path}:{number}: expected {{"text": ..., "department": ...}}') from None
        if label not in targets:
            raise ValueError(f"{path}:{number}: field 'department': {label!r} is not one of {', '.join(targets)}")
        examples.append(Example(str(text).strip(), label))
    return examples


def field_texts(company: Company) -> list[tuple[str, str]]:
    """Each department's description, whole and topic by topic: the field the admin says it covers."""
    pairs = []
    for department in company.departments:
        topics = re.split(r"[,;]|\band\b", department.description)
        pairs += [(f"{department.name}: {department.description}", department.id)]
        pairs += [(topic.strip(), department.id) for topic in topics if len(topic.strip()) > 2]
    return pairs


def _normalised(text: str) -> str:
    return " ".join(text.lower().strip(" ?!.").split())


def split_examples(examples: Sequence[Example], seed: int = 0) -> Split:
    """Stratified TRAIN / VALIDATION / TEST split, fixed by `seed`."""
    labels = [e.label for e in examples]
    rest, test = train_test_split(list(examples), test_size=TEST_FRACTION, stratify=labels, random_state=seed)
    train, validation = train_test_split(
        rest, test_size=VALIDATION_FRACTION / (1 - TEST_FRACTION),
        stratify=[e.label for e in rest], random_state=seed,
    )
    digest = hashlib.sha256("\n".join(sorted(f"{e.label}\t{e.text}" for e in examples)).encode())
    return Split(tuple(train), tuple(validation), tuple(test), digest.hexdigest())


def build_model(method: str, seed: int = 0) -> Pipeline:
    """An unfitted text -> calibrated-probabilities pipeline for `method`."""
    if method not in METHODS:
        raise ValueError(f"unknown router method {method!r}; expected one of {', '.join(METHODS)}")
    # Words catch topic vocabulary; character n-grams within words catch
    # typos ("hw many EL dys") and Hinglish spelling variants.
    tfidf = FeatureUnion([
        ("words", TfidfVectorizer(preprocessor=normalise_text, sublinear_tf=True)),
        ("chars", TfidfVectorizer(preprocessor=normalise_text, analyzer="char_wb", ngram_range=(1, 5),
                                  sublinear_tf=True)),
    ])
    features: object = {
        "tfidf-svm": tfidf,
        "tfidf-lr": tfidf,
        "minilm-lr": MiniLMEmbedder(),
        # 0.5: measured by cross-validation on TRAIN+VALIDATION (0.5 beat 1 and 2).
        "tfidf+minilm-svm": FeatureUnion([("tfidf", tfidf), ("minilm", MiniLMEmbedder(weight=0.5))]),
    }[method]
    # balanced: augmentation adds many department texts and none for base;
    # reweighting keeps base recall up (cross-validated: 89% -> 93%).
    if method.endswith("-lr"):
        head: object = LogisticRegression(C=10.0, max_iter=3000, class_weight="balanced", random_state=seed)
    else:
        head = LinearSVC(C=0.3, class_weight="balanced", random_state=seed)
    # ensemble=False: one classifier plus a calibrator fitted on its
    # cross-validated scores, so routing costs one model, not five.
    calibrated = CalibratedClassifierCV(head, method="sigmoid", cv=5, ensemble=False)
    return Pipeline([("features", features), ("classifier", calibrated)])


def training_texts(train: Sequence[Example], data_dir: str | Path = DATA_DIR, augment: bool = True,
                   extra: Sequence[Example] = ()) -> tuple[list[str], list[str]]:
    """(texts, labels) to fit on: TRAIN and `extra` examples, plus TRAIN answers and the handbooks if `augment`."""
    pairs = [(e.text, e.label) for e in (*train, *extra)]
    if augment:
        company = load_company(data_dir)
        pairs += [(e.answer, e.label) for e in train if e.answer]
        pairs += field_texts(company)
        for dept in company.ids:
            handbook = department_files(dept, data_dir).handbook
            if handbook.exists():
                pairs += [(fact.text, dept) for fact in load_handbook(handbook)]
    return [text for text, _ in pairs], [label for _, label in pairs]


def fit_threshold(probabilities: np.ndarray, labels: Sequence[str], classes: Sequence[str]) -> float:
    """The middle of the thresholds that route the most validation messages right, give or take one.

    A message whose top probability is under the threshold goes to base, so a
    higher threshold trades department hits for out-of-scope catches. Every
    message counts once; the mean of the two rates instead weighs one
    out-of-scope message like five department ones. The score is nearly flat
    over a wide band, so a single validation message would decide the exact
    maximum: the middle of every threshold within one message of the best is
    kept, furthest from both failure modes. On re-drawn splits this picked
    0.26 +- 0.02 where the rate mean picked 0.39 +- 0.16, and routed ~1 point
    more department messages right.
    """
    top, best, truth = probabilities.max(axis=1), _best(probabilities, classes), np.asarray(labels)
    right = np.array([(np.where(top >= t, best, BASE) == truth).sum() for t in _CANDIDATES])
    winners = _CANDIDATES[right >= right.max() - 1]
    return float(winners[len(winners) // 2])


def fit_switch_threshold(probabilities: np.ndarray, labels: Sequence[str], classes: Sequence[str],
                         floor: float) -> float:
    """The lowest threshold (>= floor) above which the top label was right SWITCH_PRECISION of the time."""
    top, right = probabilities.max(axis=1), _best(probabilities, classes) == np.asarray(labels)
    for t in _CANDIDATES[_CANDIDATES >= floor]:
        above = top >= t
        if above.any() and right[above].mean() >= SWITCH_PRECISION:
            return float(t)
    return 1.0  # never precise enough: short follow-ups always stay in their conversation


_CANDIDATES = np.round(np.arange(0.0, 1.0, 0.01), 2)


def _best(probabilities: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    return np.asarray(classes)[probabilities.argmax(axis=1)]


def train_router(data_dir: str | Path = DATA_DIR, *, out_dir: Path, method: str = DEFAULT_METHOD,
                 seed: int = 0, augment: bool = True, extras: bool = True) -> RouterTrainingReport:
    """Train, fit the thresholds, refit, measure on TEST and write the artifact into `out_dir` atomically.

    `out_dir` is normally `<models_dir>/router`; an existing router there is replaced.
    """
    out_dir = Path(out_dir)
    split = split_examples(load_examples(data_dir), seed)
    extra = load_extra_examples(data_dir, (*split.validation, *split.test)) if extras else []
    started = time.perf_counter()
    model = build_model(method, seed)
    model.fit(*training_texts(split.train, data_dir, augment, extra))
    validation = model.predict_proba([e.text for e in split.validation])
    truth, classes = [e.label for e in split.validation], list(model.classes_)
    threshold = fit_threshold(validation, truth, classes)
    switch_threshold = fit_switch_threshold(validation, truth, classes, floor=threshold)
    # Refit with VALIDATION too: on re-drawn splits it added ~0.5 points of
    # department accuracy and ~2 of OOS -> base under the same thresholds.
    fitted = (*split.train, *split.validation)
    model = build_model(method, seed).fit(*training_texts(fitted, data_dir, augment, extra))
    train_seconds = time.perf_counter() - started

    metadata = RouterMetadata(
        format_version=FORMAT_VERSION, method=method, augmented=augment, threshold=threshold,
        switch_threshold=switch_threshold, labels=load_company(data_dir).targets, seed=seed,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        sklearn_version=sklearn.__version__, data_sha256=split.data_sha256,
        test_department_accuracy=0.0, test_out_of_scope_to_base=0.0, extra_examples=len(extra),
    )
    evaluation = _evaluate(LearnedRouter(model, metadata), split.test, data_dir)
    metadata = RouterMetadata(**{**metadata.__dict__,
                                 "test_department_accuracy": round(evaluation.department_accuracy, 4),
                                 "test_out_of_scope_to_base": round(evaluation.out_of_scope_to_base, 4)})
    _write_atomically(out_dir, model, metadata)
    return RouterTrainingReport(method, augment, out_dir, threshold, switch_threshold, len(fitted),
                                len(split.validation), len(split.test), len(extra), train_seconds, evaluation)


def evaluate_router(router_dir: Path, data_dir: str | Path = DATA_DIR) -> RouterEvaluation:
    """Re-measure a trained router on its held-out TEST split (and the unseen-wording eval questions)."""
    router = load_learned_router(Path(router_dir))
    split = split_examples(load_examples(data_dir), router.metadata.seed)
    if split.data_sha256 != router.metadata.data_sha256:
        # A different data set splits differently: "test" could hold texts the router trained on.
        raise ValueError(f"the router in {router_dir} was trained on different data than {data_dir}; "
                         "retrain it before measuring")
    return _evaluate(router, split.test, data_dir)


def _evaluate(router: LearnedRouter, test: Sequence[Example], data_dir: str | Path) -> RouterEvaluation:
    company = load_company(data_dir)
    targets = company.targets
    index = {label: i for i, label in enumerate(targets)}
    confusion = np.zeros((len(targets), len(targets)), dtype=int)
    for example in test:
        confusion[index[example.label], index[router.route(example.text, []).department]] += 1
    dept = [index[d] for d in company.ids]
    unseen = [(user_text(r.instruction, r.input), d) for d in company.ids if department_files(d, data_dir).eval.exists()
              for r in load_eval(department_files(d, data_dir).eval)]
    unseen_hits = sum(router.route(text, []).department == d for text, d in unseen)
    field = load_field_examples(data_dir)
    field_right = [(e.label, router.route(e.text, []).department == e.label) for e in field]
    in_field = [right for label, right in field_right if label != BASE]
    outside = [right for label, right in field_right if label == BASE]
    return RouterEvaluation(
        method=router.metadata.method,
        threshold=router.threshold,
        switch_threshold=router.switch_threshold,
        n_test=len(test),
        department_accuracy=float(confusion[dept, dept].sum() / confusion[dept].sum()),
        out_of_scope_to_base=float(confusion[index[BASE], index[BASE]] / confusion[index[BASE]].sum()),
        labels=targets,
        confusion=tuple(tuple(int(n) for n in row) for row in confusion),
        per_class=tuple(ClassCount(label, int(confusion[i].sum()), int(confusion[i, i]))
                        for i, label in enumerate(targets)),
        unseen_wording_accuracy=unseen_hits / len(unseen) if unseen else None,
        n_unseen_wording=len(unseen),
        field_department_accuracy=sum(in_field) / len(in_field) if in_field else None,
        field_out_of_scope_to_base=sum(outside) / len(outside) if outside else None,
        n_field=len(field),
        all_department_accuracy=float((confusion[dept, dept].sum() + sum(in_field))
                                      / (confusion[dept].sum() + len(in_field))),
        all_out_of_scope_to_base=float((confusion[index[BASE], index[BASE]] + sum(outside))
                                       / (confusion[index[BASE]].sum() + len(outside))),
    )


def _write_atomically(out_dir: Path, model: Pipeline, metadata: RouterMetadata) -> None:
    # Build next to the target and swap with renames, so a crash or a
    # concurrent start never sees a half-written router.
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    staging = out_dir.with_name(f".{out_dir.name}.tmp-{tag}")
    staging.mkdir()
    try:
        joblib.dump(model, staging / MODEL_FILE)
        (staging / METADATA_FILE).write_text(metadata.to_json(), encoding="utf-8")
        old = out_dir.with_name(f".{out_dir.name}.old-{tag}")
        if out_dir.exists():
            out_dir.rename(old)
        try:
            staging.rename(out_dir)
        except OSError:
            if old.exists():
                old.rename(out_dir)  # put the previous router back
            raise
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
