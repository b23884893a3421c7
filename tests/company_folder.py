"""Company folders for tests: departments.yaml in a temporary folder."""

from __future__ import annotations

from pathlib import Path

from core.company import BUNDLED_COMPANY, COMPANY_FILE


def write_company_file(root: Path) -> Path:
    """The bundled company's departments.yaml in `root`, without its recipe paths (they live in the bundle)."""
    root.mkdir(parents=True, exist_ok=True)
    lines = (BUNDLED_COMPANY / COMPANY_FILE).read_text(encoding="utf-8").splitlines()
    (root / COMPANY_FILE).write_text("\n".join(line for line in lines if not line.strip().startswith("recipe:")) + "\n",
                                     encoding="utf-8")
    return root
