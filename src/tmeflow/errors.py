"""The one exception type for user mistakes.

A :class:`TmeflowInputError` names what is wrong and where (file, sample, column). The CLI prints it
as a single line and exits with status 2; it is never shown as a traceback.
"""

from __future__ import annotations

from os import PathLike

EXIT_INPUT_ERROR = 2


class TmeflowInputError(Exception):
    """A problem with the user's inputs or parameters."""

    def __init__(
        self,
        message: str,
        *,
        file: str | PathLike | None = None,
        sample: str | None = None,
        column: str | None = None,
        row: int | None = None,
    ) -> None:
        self.message = message
        self.file = None if file is None else str(file)
        self.sample = sample
        self.column = column
        self.row = row
        super().__init__(self._format())

    def _format(self) -> str:
        where = [
            f"{label} {value}"
            for label, value in (
                ("file", self.file),
                ("sample", self.sample),
                ("row", self.row),
                ("column", self.column),
            )
            if value is not None
        ]
        message = " ".join(self.message.split())  # always one line
        return f"{message} [{', '.join(where)}]" if where else message


class TmeflowInputErrors(TmeflowInputError):
    """Report several input problems at once.

    Several input problems found at once (``tmeflow run`` checks every row before any stage);
    the CLI prints one line per problem.
    """

    def __init__(self, errors: list[TmeflowInputError]) -> None:
        self.errors = list(errors)
        super().__init__(f"{len(self.errors)} input problem(s): " + "; ".join(str(error) for error in self.errors))

    def lines(self) -> list[str]:
        """Return one line per problem."""
        return [str(error) for error in self.errors]


class Interrupted(BaseException):
    """Signal SIGTERM or SIGINT during ``tmeflow run``.

    SIGTERM or SIGINT during ``tmeflow run``: a BaseException, so that no stage's ``except
    Exception`` swallows it and every ``finally`` (temporary files) runs on the way out.
    """

    def __init__(self, signum: int) -> None:
        import signal

        self.signum = signum
        self.exit_code = 128 + signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
