import pytest

from core.company import load_company
from core.messages import Turn
from router.commands import CommandRouter, FallbackRouter, parse_command

router = CommandRouter(FallbackRouter(), load_company().targets)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/hr how many leaves?", ("hr", "how many leaves?")),
        ("  /Finance  ", ("finance", "")),
        ("/sales@SwitchboardBot price list", ("sales", "price list")),
        ("/auto\nwhat now", ("auto", "what now")),
        ("no command here", (None, "no command here")),
        ("a /hr in the middle", (None, "a /hr in the middle")),
        ("/", (None, "/")),
    ],
)
def test_parse_command(text, expected):
    assert parse_command(text) == expected


def test_without_commands_everything_goes_to_base():
    route = router.route("What is the capital of France?", [])
    assert (route.department, route.reason, route.pinned) == ("base", "fallback", False)
    assert route.text == "What is the capital of France?"


def test_a_department_command_pins_and_strips_itself():
    route = router.route("/hr how many casual leaves?", [])
    assert (route.department, route.reason, route.pinned) == ("hr", "command", True)
    assert route.text == "how many casual leaves?"


def test_the_pin_sticks_until_auto():
    history = [Turn("user", "hi"), Turn("assistant", "hello", department="hr", pinned=True)]
    assert router.route("and for adoption?", history).department == "hr"
    released = router.route("/auto and for adoption?", history)
    assert (released.department, released.pinned, released.text) == ("base", False, "and for adoption?")
    after_auto = history + [Turn("user", "x"), Turn("assistant", "y", department="base", pinned=False)]
    assert router.route("next question", after_auto).reason == "fallback"


def test_an_explicit_command_beats_the_pin():
    history = [Turn("assistant", "ok", department="hr", pinned=True)]
    route = router.route("/finance when is Form 16 out?", history)
    assert (route.department, route.pinned) == ("finance", True)


def test_base_command_pins_the_general_model_and_unknown_commands_are_text():
    assert router.route("/base", []).pinned is True
    route = router.route("/weather in Pune", [])
    assert (route.department, route.text) == ("base", "/weather in Pune")
