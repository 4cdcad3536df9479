"""A Crochet Gateway `policy` plugin written in Python (world `policy` of
`crochet:plugin@1.1.0`), built into a WebAssembly component by componentize-py.

The same rule as the Rust template: refuse calls whose JSON body has `"blocked": true`
at the top level with `422 BLOCKED_BY_POLICY` (field `/blocked`), allow every other
call, and log one line through the host's `log` import for each refusal.

Configuration (the operator's JSON, from the host's `config()`; `{}` if none):

    {"message": "this request is blocked by policy"}
"""

import json

import wit_world
from wit_world.imports import host, types

DEFAULT_MESSAGE = "this request is blocked by policy"


def parse_config(text):
    """The denial message from the operator's JSON, and a warning if it is invalid."""
    try:
        config = json.loads(text)
    except ValueError as err:
        return DEFAULT_MESSAGE, f"invalid configuration ({err}); using defaults"
    if not isinstance(config, dict) or set(config) - {"message"}:
        return DEFAULT_MESSAGE, "invalid configuration (unknown keys); using defaults"
    message = config.get("message", DEFAULT_MESSAGE)
    if not isinstance(message, str):
        return DEFAULT_MESSAGE, "invalid configuration (`message` is not a string); using defaults"
    return message, None


def decide(message, body_json):
    """The policy itself: plain Python, testable without a host."""
    try:
        body = json.loads(body_json)
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("blocked") is True:
        return types.Decision_Deny(
            types.Denial(
                status=422,
                code="BLOCKED_BY_POLICY",
                message=message,
                field="/blocked",
                retry_after_seconds=None,
            )
        )
    return types.Decision_Allow()


class WitWorld(wit_world.WitWorld):
    """The glue the host calls: reads `config()`, decides, logs refusals."""

    def check(self, ctx: types.CallContext) -> types.Decision:
        message, warning = parse_config(host.config())
        if warning is not None:
            host.log(host.LogLevel.WARN, warning)
        decision = decide(message, ctx.body_json)
        if isinstance(decision, types.Decision_Deny):
            host.log(
                host.LogLevel.INFO,
                f"blocked a call to {ctx.route} at {host.now_ms()} ms",
            )
        return decision
