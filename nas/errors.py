"""One exception type for everything a user can fix, so the CLI can print one line and exit."""


class UserError(Exception):
    """A problem with user input (config, data, files). The message is a single line."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Terminated(KeyboardInterrupt):
    """SIGTERM (a cluster's time limit, `timeout`, preemption) outside the training loop, where
    there is nothing to save: the command stops like on Ctrl-C, with its own exit code."""

    exit_code = 143
