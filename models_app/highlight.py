"""Syntax highlighting of a model's source files for the "toggle source code" panel."""

from __future__ import annotations

from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexer import RegexLexer, words
from pygments.lexers import PythonLexer, TextLexer
from pygments.token import Comment, Keyword, Name, Number, Operator, Punctuation, String, Text


class NmodlLexer(RegexLexer):
    """NEURON's NMODL (.mod files): Pygments ships no lexer for it."""

    name = "NMODL"
    aliases = ["nmodl"]
    filenames = ["*.mod"]
    tokens = {
        "root": [
            (r"(?s)COMMENT.*?ENDCOMMENT", Comment.Multiline),
            (r"[:?].*?$", Comment.Single),
            (
                words(
                    (
                        "NEURON",
                        "UNITS",
                        "PARAMETER",
                        "STATE",
                        "ASSIGNED",
                        "BREAKPOINT",
                        "INITIAL",
                        "DERIVATIVE",
                        "PROCEDURE",
                        "FUNCTION",
                        "KINETIC",
                        "NET_RECEIVE",
                        "LINEAR",
                        "NONLINEAR",
                        "TITLE",
                        "INDEPENDENT",
                        "CONSTANT",
                        "VERBATIM",
                        "ENDVERBATIM",
                        "FUNCTION_TABLE",
                    ),
                    suffix=r"\b",
                ),
                Keyword.Namespace,
            ),
            (
                words(
                    (
                        "SUFFIX",
                        "POINT_PROCESS",
                        "ARTIFICIAL_CELL",
                        "USEION",
                        "READ",
                        "WRITE",
                        "VALENCE",
                        "RANGE",
                        "GLOBAL",
                        "NONSPECIFIC_CURRENT",
                        "ELECTRODE_CURRENT",
                        "POINTER",
                        "BBCOREPOINTER",
                        "THREADSAFE",
                        "SOLVE",
                        "METHOD",
                        "STEADYSTATE",
                        "LOCAL",
                        "TABLE",
                        "DEPEND",
                        "FROM",
                        "TO",
                        "WITH",
                        "UNITSON",
                        "UNITSOFF",
                        "CONSERVE",
                        "COMPARTMENT",
                        "if",
                        "else",
                        "while",
                        "for",
                    ),
                    suffix=r"\b",
                ),
                Keyword,
            ),
            (r"\b(cnexp|derivimplicit|euler|sparse|runge)\b", Name.Builtin),
            (r"\b(exp|log|fabs|sqrt|pow|sin|cos|tan|v|celsius|dt|t)\b", Name.Builtin),
            (r"[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?", Number),
            (r'"[^"]*"', String),
            (r"[A-Za-z_][A-Za-z0-9_]*'?", Name),
            (r"[-+*/^=<>!&|~]", Operator),
            (r"[(){}\[\],]", Punctuation),
            (r"\s+", Text),
        ]
    }


_FORMATTER = HtmlFormatter(cssclass="highlight", linenos=False)


def highlighted(text: str, language: str) -> str:
    lexer = {"python": PythonLexer, "nmodl": NmodlLexer}.get(language, TextLexer)()
    return highlight(text, lexer, _FORMATTER)


def stylesheet() -> str:
    return _FORMATTER.get_style_defs(".highlight")
