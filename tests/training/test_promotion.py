import json

import pytest

from inference.registry import read_registry
from training.promotion import ModelVersion, RegistryError, live_version, promote, register_candidate, rollback


def version(path: str, accuracy: float, base_accuracy: float = 0.1) -> ModelVersion:
    return ModelVersion("adapter", path, "lora", accuracy, base_accuracy, "2026-11-27T10:00:00", "base")


def test_first_model_must_beat_base_and_goes_live(tmp_path):
    first = version("hr/lora-1/artifact", 0.6)
    register_candidate(tmp_path, "hr", first)
    assert promote(tmp_path, "hr", first).promoted
    assert live_version(tmp_path, "hr") == first
    served = read_registry(tmp_path, ["hr"]).artifacts["hr"]
    assert served.kind == "adapter" and served.path == (tmp_path / "hr/lora-1/artifact").resolve()


def test_worse_candidate_stays_a_candidate_unless_forced(tmp_path):
    good, worse = version("hr/a", 0.7), version("hr/b", 0.5)
    promote(tmp_path, "hr", good)
    register_candidate(tmp_path, "hr", worse)
    decision = promote(tmp_path, "hr", worse)
    assert not decision.promoted and "below the live model's 70.0%" in decision.reason
    assert live_version(tmp_path, "hr") == good
    document = json.loads((tmp_path / "registry.json").read_text())
    assert [c["path"] for c in document["departments"]["hr"]["candidates"]] == ["hr/b"]
    assert promote(tmp_path, "hr", worse, force=True).promoted
    assert live_version(tmp_path, "hr") == worse


def test_a_model_worse_than_base_is_not_promoted(tmp_path):
    assert not promote(tmp_path, "sales", version("sales/x", 0.05, base_accuracy=0.1)).promoted
    assert live_version(tmp_path, "sales") is None


def test_rollback_restores_the_previous_version_and_then_base(tmp_path):
    one, two = version("hr/1", 0.5), version("hr/2", 0.6)
    promote(tmp_path, "hr", one)
    promote(tmp_path, "hr", two)
    assert rollback(tmp_path, "hr") == one
    assert rollback(tmp_path, "hr") is None
    assert "hr" not in read_registry(tmp_path, ["hr"]).artifacts
    with pytest.raises(RegistryError, match="no live model"):
        rollback(tmp_path, "hr")


def test_corrupt_registry_is_a_clear_error(tmp_path):
    (tmp_path / "registry.json").write_text("{oops")
    with pytest.raises(RegistryError, match="registry.json: not valid JSON"):
        promote(tmp_path, "hr", version("hr/1", 0.5))
