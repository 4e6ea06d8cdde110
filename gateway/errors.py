"""The root of the errors the gateway raises on purpose: each says what went wrong and how to fix it.

An intake (the API, the CLI, MQTT) catches GatewayError to answer a person with its message, and needs to know
nothing of the room (sandbox, policy, config, model) it came from; anything else is a bug and is logged as one.
"""


class GatewayError(Exception):
    """A failure the gateway expected and explained in its message."""
