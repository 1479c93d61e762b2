"""Config validation messages: the key, the value and what is expected, in one line.

Snakemake's `validate` reports a schema violation with the whole schema fragment that the value
broke, which for this config's nested sections runs to dozens of lines. `config_error` keeps what
a user needs, and recognises the commonest YAML surprise: PyYAML (YAML 1.1) reads `1e-3` as a
string, since its floats need a decimal point and a signed exponent (`1.0e-3`).
"""

import re

from jsonschema import ValidationError

NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def yaml_number(text: str) -> str:
    """How to write the number `text` so that YAML reads a number: 1e-3 -> 1.0e-3, 5e4 -> 5.0e+4."""
    mantissa, e, exponent = text.partition("e") if "e" in text else text.partition("E")
    if "." not in mantissa:
        mantissa += ".0"
    if exponent and exponent[0] not in "+-":
        exponent = "+" + exponent
    return mantissa + e + exponent


def config_error(error: Exception) -> str:
    """One line for a schema violation: the key (as config['a']['b']), the value and what the
    schema expects, and for a number that YAML read as a string, how to write it.

    Args:
        error: jsonschema's ValidationError, or an error raised while handling one (Snakemake's
            WorkflowError keeps it as its context); any other error is described as it is.
    """
    if not isinstance(error, ValidationError):
        if not isinstance(error.__context__, ValidationError):
            return str(error)
        error = error.__context__
    key = "config" + "".join(f"[{part!r}]" for part in error.absolute_path)
    message = f"Error validating config file: {key}: {error.message}"
    value = error.instance
    if error.validator == "type" and isinstance(value, str) and NUMBER.fullmatch(value.strip()):
        if "e" in value.lower():
            message += (
                f"; YAML reads {value} as a string (its numbers need a decimal point and a signed "
                f"exponent): write {yaml_number(value.strip())}"
            )
        else:
            message += f"; write {value.strip()} without quotes"
    return message
