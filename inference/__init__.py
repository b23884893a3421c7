"""Model loading and generation behind one small interface."""

from inference.base import (
    DepartmentModel,
    Generation,
    GenerationParams,
    InferenceBackend,
    InputTooLong,
    NotReady,
)

__all__ = [
    "DepartmentModel",
    "Generation",
    "GenerationParams",
    "InferenceBackend",
    "InputTooLong",
    "NotReady",
]
