"""Registry.build, the one builder from config entries (issue 20), and the declared capabilities."""

from __future__ import annotations

import pytest

from normgan.errors import ConfigError
from normgan.registry import Registry
from normgan.regularizers import TERMS, Term
from normgan.regularizers.weights import ADAPTIVE, SCHEDULE_RULES, WEIGHTS, Weight

THINGS = Registry("thing")


@THINGS.register("box")
class Box:
    def __init__(self, *, net: str, size: float = 1.0, colour: str = "red") -> None:
        if not size > 0:
            raise ConfigError(f"size: bad value {size!r}; must be > 0")
        if colour == "blue":
            raise ValueError("blue boxes are sold out")
        self.net, self.size, self.colour = net, size, colour


def test_build_constructs_with_options_and_fixed_arguments():
    box = THINGS.build(
        {"kind": "box", "size": 2.0, "net": "D"}, key="things.b", name_key="kind", common=("net",), fixed={"net": "G"}
    )
    assert (box.net, box.size, box.colour) == ("G", 2.0, "red")


@pytest.mark.parametrize(
    "spec,message",
    [
        ({"kind": "crate"}, "things.b.kind: unknown thing 'crate'; choose one of: box"),
        ({"size": 1}, "things.b: expected a mapping with 'kind'; choose one of: box"),
        (3, "things.b: expected a mapping with 'kind', got 3; choose one of: box"),
        (
            {"kind": "box", "sise": 1},
            "things.b: unknown option 'sise' for thing 'box'; allowed: kind, net, size, colour",
        ),
        ({"kind": "box", "size": -1}, "things.b.size: bad value -1; must be > 0"),
        ({"kind": "box", "colour": "blue"}, "things.b: blue boxes are sold out"),
    ],
)
def test_build_errors_are_one_line_and_name_the_key(spec, message):
    with pytest.raises(ConfigError) as info:
        THINGS.build(spec, key="things.b", name_key="kind", common=("net",), fixed={"net": "G"})
    assert str(info.value) == message


def test_an_option_may_not_name_a_fixed_argument():
    with pytest.raises(
        ConfigError, match=r"^things\.b\.options: unknown option 'net' for thing 'box'; allowed: size, colour$"
    ):
        THINGS.create("box", {"net": "D"}, key="things.b", fixed={"net": "G"}, options_key="options")


def test_capabilities_are_declared_on_the_base_classes():
    for flag in ("paired_only", "per_sample_gradients", "shares_real_forward", "needs_gates"):
        assert getattr(Term, flag) is False
    assert Weight.nets == ("G", "D")
    assert [n for n in TERMS.names() if TERMS.get(n).per_sample_gradients] == ["grad"]
    assert TERMS.get("recon").paired_only


def test_weight_rules_are_schedules_or_adaptive():
    assert set(WEIGHTS.names()) == set(SCHEDULE_RULES.names()) | set(ADAPTIVE.names())
    assert not set(SCHEDULE_RULES.names()) & set(ADAPTIVE.names())
    assert ADAPTIVE.names() == ["grad_ratio", "gradnorm", "target", "uncertainty"]
