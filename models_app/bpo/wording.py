"""How values from configs and forms are quoted in problem messages."""


def json_type(value: object) -> str:
    """The JSON kind of ``value`` as a scientist would read it: "a list", "a text", ..."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, str):
        return "a text"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    return "a number"


def shown(value: object, *, limit: int = 60) -> str:
    """``value`` quoted for a message, shortened when long."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
