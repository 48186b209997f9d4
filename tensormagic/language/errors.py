"""One error family: every message carries the statement and a caret at the culprit."""


class NotationError(Exception):
    """Base of tensormagic's errors: a message, and where in which statement it applies."""

    def __init__(self, message, statement=None, lineno=None, col=None, end_col=None):
        self.message = message
        self.statement = statement
        self.lineno = lineno
        self.col = col  # 0-based character column inside the statement
        self.end_col = end_col if end_col is not None else (None if col is None else col + 1)
        super().__init__(message)
        if isinstance(self, SyntaxError):
            self.msg = message
            self.text = statement
            self.offset = None if col is None else col + 1
            self.end_offset = None if self.end_col is None else self.end_col + 1
            self.filename = "<tensorgrad>"

    def short(self):
        """The message, the statement, and a caret under the offending text."""
        lines = [self.message]
        if self.statement is not None:
            where = "" if self.lineno is None else f"line {self.lineno}: "
            lines.append(f"    {where}{self.statement}")
            if self.col is not None:
                width = max(1, self.end_col - self.col)
                lines.append("    " + " " * (len(where) + self.col) + "^" * width)
        return "\n".join(lines)

    def __str__(self):
        return self.short()


class NotationSyntaxError(NotationError, SyntaxError):
    """A statement that is not well formed."""


class NotationValueError(NotationError, ValueError):
    """A well-formed statement that means nothing, or a call with inconsistent sizes."""
