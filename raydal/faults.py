"""Fault injection: die (or hang) at a named point so reliability tests reach it deterministically.

``RAYDAL_FAULT`` is a comma-separated list of ``POINT[@N][=ACTION]``:

- ``POINT``: a name passed to :func:`fault_point`, ``phase:where`` (``train:start``,
  ``train:mid``, ``save:mid``, ``import:end``, ...; docs/service.md lists them);
- ``@N``: act the N-th time this process reaches the point (default 1);
- ``ACTION``: ``kill`` (default: SIGKILL of this process, no cleanup, no flush,
  like a power cut or the OOM killer), ``hang`` (sleep until killed, for tests
  that remove a node while work is in flight), ``hang-once`` (``hang`` in the
  first process of the whole cluster that gets there, which writes its pid to
  ``TRACE.POINT.once``; the others, retries included, go on; needs the trace) or
  ``pause-once`` (``hang-once`` until the file ``TRACE.POINT.go`` exists, then go on:
  for tests that act while a process is held at a point, then let it finish).

``RAYDAL_FAULT_TRACE=FILE`` appends ``POINT PID HOSTNAME`` to FILE at every point
reached (whether or not it acts), so a test can check that a point exists on the
code path it exercises and learn which process reached it.

Unset, :func:`fault_point` is one dictionary lookup: the points stay in production code.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections import Counter

from raydal.constants import ENV_FAULT, ENV_FAULT_TRACE
from raydal.exceptions import ConfigError

ACTIONS = ("kill", "hang", "hang-once", "pause-once")
_reached: Counter[str] = Counter()


def parse_faults(spec: str) -> dict[str, tuple[int, str]]:
    """``"a:b@2=hang,c:d"`` -> ``{"a:b": (2, "hang"), "c:d": (1, "kill")}``."""
    out: dict[str, tuple[int, str]] = {}
    for item in filter(None, (s.strip() for s in spec.split(","))):
        point, _, action = item.partition("=")
        point, _, nth = point.partition("@")
        action = action or "kill"
        if action not in ACTIONS or (nth and not nth.isdigit()) or not point:
            raise ConfigError(
                f"{ENV_FAULT}={spec!r}: {item!r} is not POINT[@N][=ACTION] with ACTION one of {ACTIONS} "
                "(e.g. train:mid or score:batch@2=hang)."
            )
        out[point] = (int(nth or 1), action)
    return out


def fault_point(name: str) -> None:
    """Mark a point where a test may kill this process; a no-op unless ``RAYDAL_FAULT`` names it."""
    spec, trace = os.environ.get(ENV_FAULT), os.environ.get(ENV_FAULT_TRACE)
    if not spec and not trace:
        return
    _reached[name] += 1
    if trace:
        with open(trace, "a") as f:
            f.write(f"{name} {os.getpid()} {socket.gethostname()}\n")
    wanted = parse_faults(spec or "").get(name)
    if wanted is None or wanted[0] != _reached[name]:
        return
    if wanted[1] in ("hang-once", "pause-once"):
        if not trace:
            raise ConfigError(
                f"{ENV_FAULT}: the {wanted[1]} action needs {ENV_FAULT_TRACE} (its marker goes beside it)."
            )
        try:
            fd = os.open(f"{trace}.{name}.once", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(fd, f"{os.getpid()}\n".encode())
        os.close(fd)
    if wanted[1] == "pause-once":
        while not os.path.exists(f"{trace}.{name}.go"):
            time.sleep(0.05)
        return
    if wanted[1] in ("hang", "hang-once"):
        while True:
            time.sleep(3600)
    os.kill(os.getpid(), signal.SIGKILL)
