"""Settings declared once: a config field's default, valid range, choices and help side by side.

A config dataclass declares each field with :func:`setting`::

    b: int = setting(20, "samples labeled per query round", Interval(int, 1), kind=RESULT)
    strategy: str = setting("mge+clustering", "query function", choices=_strategies, kind=RESULT)

and calls :func:`check_settings` in ``__post_init__``. The same declarations give the
validation messages ("The 'b' parameter of ALConfig must be an int >= 1. Got 0
instead.") and the command-line flags (``raydal.cli`` turns every declared field into
``--b``, ``--strategy`` with these choices and help). A new field is one declaration:
it is validated and gets a flag without touching the CLI.

Each run setting also declares its **kind**, what changing it does:

- :data:`RESULT`: what the run computes (data seen, batches, precision, method): the
  run's fingerprint covers it, a resume that changes it is refused without ``--fork``,
  the report draws runs that differ in it as separate curves, a sweep may vary it.
- :data:`EXECUTION`: where, how fast or how long the run executes; the models and
  selections stay the same (at most the last bits of a float change, as they do
  with the machine's thread count). Not fingerprinted, free to change on resume,
  never a curve of its own, fixed on a sweep's base config.
- :data:`IDENTITY`: which data the run is on and who labels it (the dataset, its
  shards, simulation or human answers). Fingerprinted like a result, a curve of its
  own in the report, but never swept: a sweep varies settings on one experiment.

The fingerprint (``ALConfig.fingerprint``), the report's grouping and the sweep's
keys read the kind (:func:`fields_of_kind`); no list elsewhere repeats it.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from raydal.exceptions import ConfigError, RaydalError

__all__ = [
    "EXECUTION",
    "IDENTITY",
    "KINDS",
    "RESULT",
    "Interval",
    "LazyChoices",
    "check_settings",
    "check_value",
    "declared_default",
    "declared_settings",
    "field_kind",
    "fields_of_kind",
    "make_settings",
    "param_error",
    "setting",
    "value_type",
]

_CLOSED = ("both", "left", "right", "neither")

#: Kinds of a run setting (see the module docstring).
RESULT = "result"
EXECUTION = "execution"
IDENTITY = "identity"
KINDS = (RESULT, EXECUTION, IDENTITY)


@dataclass(frozen=True)
class Interval:
    """The valid range of a numeric setting (scikit-learn's ``Interval``, smaller).

    type: ``int`` (bools refused) or ``float`` (ints accepted; NaN refused).
    low, high: bounds, ``None`` for unbounded. closed: which bounds are included.
    """

    type: type
    low: float | None = None
    high: float | None = None
    closed: str = "both"

    def __post_init__(self) -> None:
        if self.type not in (int, float) or self.closed not in _CLOSED:
            raise ValueError(
                f"Interval(type={self.type}, closed={self.closed!r}): type int or float, closed in {_CLOSED}"
            )

    def __contains__(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.type is int and not isinstance(value, int):
            return False
        if isinstance(value, float) and math.isnan(value):
            return False
        if self.low is not None:
            if value < self.low or (value == self.low and self.closed in ("right", "neither")):
                return False
        if self.high is not None:
            if value > self.high or (value == self.high and self.closed in ("left", "neither")):
                return False
        return True

    def __str__(self) -> str:
        kind = "an int" if self.type is int else "a float"
        lo_in = self.closed in ("both", "left")
        hi_in = self.closed in ("both", "right")
        if self.low is not None and self.high is not None:
            return f"{kind} in {'[' if lo_in else '('}{self.low}, {self.high}{']' if hi_in else ')'}"
        if self.low is not None:
            return f"{kind} {'>=' if lo_in else '>'} {self.low}"
        if self.high is not None:
            return f"{kind} {'<=' if hi_in else '<'} {self.high}"
        return kind


class LazyChoices(Sequence):
    """Names asked from a registry each time they are used: declaring a setting imports
    nothing, and a name registered later (a plugin's strategy) is valid too."""

    def __init__(self, names: Callable[[], Sequence[str]]):
        self._names = names

    @property
    def _values(self) -> tuple[str, ...]:
        return tuple(self._names())

    def __getitem__(self, i):
        return self._values[i]

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, value: object) -> bool:
        return value in self._values

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __repr__(self) -> str:
        return repr(list(self._values))


def setting(
    default: Any = dataclasses.MISSING,
    help: str = "",
    range: Interval | None = None,
    *,
    choices: Sequence[str] | Callable[[], Sequence[str]] | None = None,
    default_factory: Callable[[], Any] | Any = dataclasses.MISSING,
    flag: str | None = None,
    off_flag: str | None = None,
    cli: bool = True,
    kind: str | None = None,
    parse: Callable[[str], Any] | None = None,
    metavar: str | None = None,
) -> Any:
    """A dataclass field with its rules: ``default``, ``help``, numeric ``range``, ``choices``.

    choices: a sequence, or a function returning the names (a registry's ``list_*``),
        called on first use.
    flag: the command-line flag (default ``--field-name``); off_flag: for a bool, the
        flag that sets it False (default ``--no-field-name``).
    cli: False keeps the field off the command line (set through ``--config`` only).
    kind: :data:`RESULT`, :data:`EXECUTION` or :data:`IDENTITY`; every field of a run's
        config (ALConfig, TrainConfig, ExperimentConfig) declares one. None: not a run
        setting (options of a command such as ``raydal export``, a reader's settings).
    parse: how the flag's text becomes the value (default: the field's type), e.g. a
        comma-separated list; metavar: the flag's placeholder in ``--help``.
    """
    if kind is not None and kind not in KINDS:
        raise ValueError(f"setting(kind={kind!r}): one of {KINDS}")
    if callable(choices):
        choices = LazyChoices(choices)
    metadata = {
        "help": help,
        "range": range,
        "choices": choices,
        "flag": flag,
        "off_flag": off_flag,
        "cli": cli,
        "kind": kind,
        "parse": parse,
        "metavar": metavar,
    }
    return dataclasses.field(default=default, default_factory=default_factory, metadata=metadata)


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def value_type(cls: type, name: str) -> tuple[type, bool]:
    """``(base type, None allowed)`` of field ``name``: ``int | None`` -> ``(int, True)``."""
    hint = _hints(cls)[name]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return ((typing.get_origin(args[0]) or args[0]) if len(args) == 1 else object), True
    return (typing.get_origin(hint) or hint), False


def declared_default(cls: type, name: str) -> Any:
    """The declared default of field ``name`` of ``cls`` (its factory's value for a mutable one)."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


def declared_settings(cls: type) -> list[dataclasses.Field]:
    """The fields of dataclass ``cls`` declared with :func:`setting`, in declaration order."""
    return [f for f in dataclasses.fields(cls) if "help" in f.metadata]


def field_kind(cls: type, name: str) -> str:
    """The declared kind of field ``name`` of ``cls``.

    Raises:
        TypeError: the field declares no kind (a programming error: every field of a
            run's config must, or the fingerprint could not tell what it changes).
    """
    kind = next((f.metadata.get("kind") for f in dataclasses.fields(cls) if f.name == name), None)
    if kind not in KINDS:
        raise TypeError(
            f"{cls.__name__}.{name} declares no kind: declare it with setting(..., kind=RESULT, "
            "EXECUTION or IDENTITY) (raydal.settings)."
        )
    return kind


def fields_of_kind(cls: type, *kinds: str) -> list[str]:
    """Names of the fields of ``cls`` whose kind is one of ``kinds``, in declaration order
    (every field must declare a kind: :func:`field_kind`)."""
    return [f.name for f in dataclasses.fields(cls) if field_kind(cls, f.name) in kinds]


def _allowed(rule: Interval | Sequence | type) -> str:
    """A rule in words: an :class:`Interval`, a sequence of choices or a type."""
    if isinstance(rule, Interval):
        return str(rule)
    if isinstance(rule, type):
        return {bool: "a bool", int: "an int", float: "a float", str: "a string"}.get(rule, f"a {rule.__name__}")
    return f"one of {rule!r}"


def describe(cls: type, f: dataclasses.Field) -> str:
    """What field ``f`` accepts, in words: "an int >= 1", "one of [...] or None"."""
    base, nullable = value_type(cls, f.name)
    meta = f.metadata
    rule = next((r for r in (meta["range"], meta["choices"]) if r is not None), base)
    text = _allowed(rule)
    return f"{text} or None" if nullable else text


def param_error(
    name: str, owner: str | None, allowed: str, value: Any, error: type[RaydalError] = ConfigError
) -> RaydalError:
    """The one form of a bad-parameter message: its parameter, owner, what is allowed and the value.

    ``param_error("b", "ALConfig", "an int >= 1", 0)``: "The 'b' parameter of ALConfig must be
    an int >= 1. Got 0 instead." Every range or choice check of raydal words its error here.
    error: the exception class (a model's or a query's own error where that is what callers catch).
    """
    of = f" of {owner}" if owner else ""
    return error(f"The '{name}' parameter{of} must be {allowed}. Got {value!r} instead.")


def check_value(
    value: Any,
    name: str,
    owner: str | None,
    rule: Interval | Sequence | type,
    *,
    nullable: bool = False,
    error: type[RaydalError] = ConfigError,
) -> Any:
    """``value`` when ``rule`` allows it (or it is None and ``nullable``); else :func:`param_error`.

    rule: an :class:`Interval` (type and range), a sequence of choices, or a type
    (``bool``: a bool and nothing else). For a parameter that is no declared field.
    A NumPy scalar (``np.int64(3)``, a count computed from an array) is checked and
    returned as the Python number it holds.
    """
    if value is None and nullable:
        return value
    if type(value).__module__ == "numpy" and hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        value = value.item()
    if isinstance(rule, Interval):
        good = value in rule
    elif isinstance(rule, type):
        good = _ok(rule, value)
    else:
        good = value in rule and (isinstance(value, str) or not isinstance(value, bool))
    if not good:
        allowed = _allowed(rule)
        raise param_error(name, owner, f"{allowed} or None" if nullable else allowed, value, error)
    return value


def _ok(base: type, value: Any) -> bool:
    if base is bool:
        return isinstance(value, bool)
    if base is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if base is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return base is object or isinstance(value, base)


def check_settings(obj: Any, owner: str | None = None) -> None:
    """Validate every declared field of dataclass instance ``obj`` (type, range, choices).

    owner: who the message names (default: the dataclass, e.g. ``run_sweep`` for its options).

    Raises:
        ConfigError: "The 'b' parameter of ALConfig must be an int >= 1. Got 0 instead."
    """
    cls = type(obj)
    owner = owner or cls.__name__
    for f in declared_settings(cls):
        value = getattr(obj, f.name)
        base, nullable = value_type(cls, f.name)
        if value is None and nullable:
            continue
        meta = f.metadata
        good = (
            value is not None
            and _ok(base, value)
            and (meta["range"] is None or value in meta["range"])
            and (meta["choices"] is None or value in meta["choices"])
        )
        if not good:
            raise param_error(f.name, owner, describe(cls, f), value)


def make_settings(cls: type, values: Mapping[str, Any], owner: str) -> Any:
    """An instance of the settings dataclass ``cls`` from keyword ``values``, validated.

    Raises:
        ConfigError: a name ``cls`` does not declare (listing those it does), or a bad value
            (the message names ``owner``, the function or class the values were given to).
    """
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ConfigError(f"Unknown parameter(s) {unknown} of {owner}. Valid: {names}.")
    obj = cls(**values)
    check_settings(obj, owner)
    return obj
