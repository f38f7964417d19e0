"""docs/regularizers.md names every registered term, norm, loss, weight rule and constraint.

Each registry's names must appear in backticks in its own section of the page, so a component
registered without documentation fails here (issue 20)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from normgan.functional.losses import LOSSES
from normgan.functional.norms import NORMS
from normgan.functional.weighting import SCHEDULES
from normgan.regularizers import CONSTRAINTS, TERMS, WEIGHTS
from normgan.regularizers.weights import ADAPTIVE

DOC = Path(__file__).resolve().parent.parent / "docs" / "regularizers.md"


def _sections() -> dict[str, str]:
    """The page's level-2 sections: title -> text."""
    parts = re.split(r"^## (.+)$", DOC.read_text(encoding="utf-8"), flags=re.MULTILINE)
    return {title.strip(): text for title, text in zip(parts[1::2], parts[2::2])}


@pytest.mark.parametrize(
    "registry,section",
    [
        (TERMS, "Terms"),
        (NORMS, "Norms"),
        (LOSSES, "Losses"),
        (WEIGHTS, "Weights"),
        (SCHEDULES, "Weights"),
        (ADAPTIVE, "Weights"),
        (CONSTRAINTS, "Constraints"),
    ],
    ids=["terms", "norms", "losses", "weights", "schedules", "adaptive", "constraints"],
)
def test_docs_name_every_registered_component(registry, section):
    sections = _sections()
    assert section in sections, f"docs/regularizers.md has no '## {section}' section"
    text = sections[section]
    missing = [name for name in registry.names() if f"`{name}`" not in text]
    assert not missing, (
        f"docs/regularizers.md '## {section}' does not name the {registry.kind}(s): {', '.join(missing)}"
    )
    assert len(registry.names()) > 0
