"""The structured form of a command (the JSON every parser backend must produce) and its validator.

One parse is ``{"command": str, "actions": [action, ...], "refused": str | None}`` with each action
``{"action", "target", "strength", "location", "confounder", "why"}`` (see :data:`ACTION_SCHEMA`).
``refused`` explains an empty ``actions`` list (a question, an approval, prompt-injection text) and is
``None`` whenever there are actions. The validator is hand-written (the schema is small, and it keeps
``jsonschema`` out of the dependencies) but follows :data:`PARSE_SCHEMA` exactly, which is also shown to
LLM backends in their prompt.
"""
from __future__ import annotations

from typing import Any

from nnunet_causal.errors import PromptError

ACTIONS = ("expand", "shrink", "remove", "add", "ignore_confounder")
STRENGTHS = ("slight", "moderate", "strong")
ACTION_KEYS = ("action", "target", "strength", "location", "confounder", "why")
MAX_COMMAND_CHARS = 500

ACTION_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": list(ACTION_KEYS),
    "properties": {
        "action": {"enum": list(ACTIONS)},
        "target": {"type": "array", "items": {"type": "string"}},
        "strength": {"enum": list(STRENGTHS)},
        "location": {"type": ["string", "null"]},
        "confounder": {"type": ["string", "null"]},
        "why": {"type": ["string", "null"]},
    },
}
PARSE_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["command", "actions", "refused"],
    "properties": {"command": {"type": "string"}, "actions": {"type": "array", "items": ACTION_SCHEMA},
                   "refused": {"type": ["string", "null"]}},
}


def _optional_str(value: Any, where: str) -> None:
    if value is not None and not isinstance(value, str):
        raise PromptError(f"{where} must be a string or null, got {type(value).__name__} {value!r}")


def validate_action(action: Any, where: str = "action") -> dict:
    """Check one action against :data:`ACTION_SCHEMA`; returns it, raises :class:`PromptError`."""
    if not isinstance(action, dict):
        raise PromptError(f"{where} must be a JSON object, got {type(action).__name__}")
    missing = [k for k in ACTION_KEYS if k not in action]
    extra = sorted(set(action) - set(ACTION_KEYS))
    if missing:
        raise PromptError(f"{where} lacks key(s) {', '.join(missing)} (required: {', '.join(ACTION_KEYS)})")
    if extra:
        raise PromptError(f"{where} has unknown key(s) {', '.join(extra)} (allowed: {', '.join(ACTION_KEYS)})")
    if action["action"] not in ACTIONS:
        raise PromptError(f"{where}: action {action['action']!r} is not one of {', '.join(ACTIONS)}")
    if action["strength"] not in STRENGTHS:
        raise PromptError(f"{where}: strength {action['strength']!r} is not one of {', '.join(STRENGTHS)}")
    target = action["target"]
    if not isinstance(target, list) or not all(isinstance(t, str) and t for t in target):
        raise PromptError(f"{where}: target must be a list of structure names, got {target!r}")
    if not target and action["action"] != "ignore_confounder":
        raise PromptError(f"{where}: action {action['action']!r} needs at least one target structure")
    for key in ("location", "confounder", "why"):
        _optional_str(action[key], f"{where}: {key}")
    if action["action"] == "ignore_confounder" and action["confounder"] is None and not action["why"]:
        raise PromptError(f"{where}: ignore_confounder without a confounder must say why in 'why'")
    return action


def validate_actions(obj: Any) -> dict:
    """Check a whole parse (``{"command", "actions", "refused"}``) against :data:`PARSE_SCHEMA`.

    Used on the offline parser's output and on every LLM answer. Returns ``obj`` unchanged; raises
    :class:`PromptError` naming the first offending field.
    """
    if not isinstance(obj, dict):
        raise PromptError(f"a parse must be a JSON object, got {type(obj).__name__}")
    for key in ("command", "actions", "refused"):
        if key not in obj:
            raise PromptError(f"parse lacks key '{key}' (required: command, actions, refused)")
    extra = sorted(set(obj) - {"command", "actions", "refused"})
    if extra:
        raise PromptError(f"parse has unknown key(s) {', '.join(extra)} (allowed: command, actions, refused)")
    if not isinstance(obj["command"], str):
        raise PromptError(f"parse: command must be a string, got {type(obj['command']).__name__}")
    if not isinstance(obj["actions"], list):
        raise PromptError(f"parse: actions must be a list, got {type(obj['actions']).__name__}")
    _optional_str(obj["refused"], "parse: refused")
    for i, action in enumerate(obj["actions"]):
        validate_action(action, f"actions[{i}]")
    if obj["actions"] and obj["refused"] is not None:
        raise PromptError("parse: 'refused' must be null when there are actions")
    return obj


def check_command_text(command: Any) -> str:
    """The stripped command; :class:`PromptError` for non-strings, empty text or more than
    :data:`MAX_COMMAND_CHARS` characters. The text is data only: never executed, never a path."""
    if not isinstance(command, str):
        raise PromptError(f"a command must be text, got {type(command).__name__}")
    text = command.strip()
    if not text:
        raise PromptError("empty command: say what to change, e.g. \"shrink the liver a bit\"")
    if len(text) > MAX_COMMAND_CHARS:
        raise PromptError(f"command of {len(text)} characters is too long (at most {MAX_COMMAND_CHARS}); "
                          f"split it into several commands")
    return text
