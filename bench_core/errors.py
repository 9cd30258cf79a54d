"""Exceptions that carry a message meant for the user, not a traceback."""


class UserError(Exception):
    """Bad input from the user (unknown name, bad value, malformed file).

    The CLI prints the message on one line and exits with status 2; nothing stored is touched.
    """

