"""Did-you-mean hints for misspelled keys and option names, one rule for every command.

Used by ``evaluate.py`` (the config's ``model:`` section) and ``train.py`` (its command line and
YAML): the closest valid name by :func:`difflib.get_close_matches`; a dotted key
(``model.lamda_area``) is matched as a whole first, then by its last part, so a key given at the
wrong level (``--lamda_area``) still finds ``model.lambda_area``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(name: str, valid: Iterable[str]) -> str | None:
    """The valid name closest to ``name``, or None when none is close enough."""
    valid = list(valid)
    found = difflib.get_close_matches(str(name), valid, n=1)
    if found:
        return found[0]
    leaf = str(name).rpartition(".")[2]
    by_leaf: dict[str, str] = {}
    for key in valid:
        by_leaf.setdefault(key.rpartition(".")[2], key)
    found = difflib.get_close_matches(leaf, list(by_leaf), n=1)
    return by_leaf[found[0]] if found else None


def with_hint(name: str, valid: Iterable[str], quote: str = "'") -> str:
    """``'lamda_area' (did you mean 'lambda_area'?)``, or the quoted name alone."""
    close = closest(name, valid)
    hint = f" (did you mean {quote}{close}{quote}?)" if close is not None else ""
    return f"{quote}{name}{quote}{hint}"
