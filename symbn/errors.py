"""The one exception symbn raises for bad input."""


class SymbnError(Exception):
    """Bad input or usage: the message names the input and the fix.

    >>> raise SymbnError("n must be a positive integer, got 0; try n=4")
    Traceback (most recent call last):
    ...
    symbn.errors.SymbnError: n must be a positive integer, got 0; try n=4
    """

    exit_code = 2
