"""Errors caused by the user's input: the CLI prints them in one line and exits 2."""


class UserError(Exception):
    """Base of errors the user can fix; the message names the field and the fix."""


class ConfigError(UserError):
    """A config file or override is invalid."""


class CapacityError(UserError):
    """Tensors do not fit the memories the placement allows."""

