"""The parse schema and its validator (used on the offline parser's output and on every LLM answer)."""
from __future__ import annotations

import copy

import pytest

from nnunet_causal.errors import PromptError
from nnunet_causal.intervention.commands import ACTIONS, STRENGTHS, validate_actions
from nnunet_causal.intervention.commands.schema import check_command_text

GOOD = {"command": "shrink the liver", "refused": None,
        "actions": [{"action": "shrink", "target": ["liver"], "strength": "slight", "location": "upper",
                     "confounder": None, "why": None}]}


def test_constants():
    assert ACTIONS == ("expand", "shrink", "remove", "add", "ignore_confounder")
    assert STRENGTHS == ("slight", "moderate", "strong")


def test_good_parse_passes_unchanged():
    obj = copy.deepcopy(GOOD)
    assert validate_actions(obj) is obj and obj == GOOD
    assert validate_actions({"command": "fine", "actions": [], "refused": "no edit"})["actions"] == []


@pytest.mark.parametrize("change, message", [
    (lambda o: o.pop("refused"), "lacks key 'refused'"),
    (lambda o: o.update(extra=1), "unknown key(s) extra"),
    (lambda o: o.update(actions="shrink"), "actions must be a list"),
    (lambda o: o["actions"][0].update(action="explode"), "'explode' is not one of"),
    (lambda o: o["actions"][0].update(strength="huge"), "'huge' is not one of"),
    (lambda o: o["actions"][0].update(target="liver"), "target must be a list"),
    (lambda o: o["actions"][0].update(target=[]), "needs at least one target"),
    (lambda o: o["actions"][0].pop("why"), "lacks key(s) why"),
    (lambda o: o["actions"][0].update(shell="rm -rf /"), "unknown key(s) shell"),
    (lambda o: o["actions"][0].update(location=3), "location must be a string or null"),
    (lambda o: o.update(refused="no"), "'refused' must be null"),
])
def test_off_schema_parses_raise_clear_errors(change, message):
    obj = copy.deepcopy(GOOD)
    change(obj)
    with pytest.raises(PromptError, match=message.replace("(", r"\(").replace(")", r"\)")):
        validate_actions(obj)


def test_non_objects_rejected():
    for bad in (None, [], "text", {"command": "x", "actions": [3], "refused": None}):
        with pytest.raises(PromptError):
            validate_actions(bad)


def test_command_text_limits():
    assert check_command_text("  shrink the liver \n") == "shrink the liver"
    for bad in ("", "   \t", None, 42):
        with pytest.raises(PromptError):
            check_command_text(bad)
    check_command_text("x" * 500)
    with pytest.raises(PromptError, match="501 characters is too long"):
        check_command_text("x" * 501)
