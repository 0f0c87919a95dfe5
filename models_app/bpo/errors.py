"""The base of this package's errors: each carries every problem found, not only the first."""

from collections.abc import Iterable

# An exception message lists this many problems; the full list stays on `.problems`.
_PROBLEMS_IN_MESSAGE = 20


class BpoError(Exception):
    """Raised with a list of problems, each a sentence the user can act on.

    Callers show ``problems`` as a list; ``str(error)`` is a summary line followed by the
    problems, for logs and command-line output.
    """

    summary = "The optimisation could not be processed"

    def __init__(self, problems: Iterable[str], *, summary: str | None = None) -> None:
        self.problems: list[str] = list(problems)
        if summary is not None:
            self.summary = summary
        super().__init__(self._message())

    def _message(self) -> str:
        shown = self.problems[:_PROBLEMS_IN_MESSAGE]
        lines = [f"{self.summary}:"] + [f"- {problem}" for problem in shown]
        hidden = len(self.problems) - len(shown)
        if hidden:
            lines.append(f"- and {hidden} more problem{'s' if hidden > 1 else ''}")
        return "\n".join(lines)
