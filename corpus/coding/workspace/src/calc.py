"""A small calculator: the project the corpus's coding agent works on."""


def add(a, b):
    return a + b


def sub(a, b):
    return a - b


def mul(a, b):
    return a * b


def div(a, b):
    if b == 0:
        raise ZeroDivisionError("b is zero")
    return a / b
