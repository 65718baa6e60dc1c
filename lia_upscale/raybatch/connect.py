"""Joining a Ray cluster: bounded in time, quiet, and interruptible.

``ray.init`` on an address where nothing listens retries for minutes, prints the C++ core's
log lines on the terminal and, blocked in C++, does not see SIGTERM. Here an explicit
address is first reached with a plain TCP connection (a few seconds at most, interrupted
by any signal), Ray's own connection retries are bounded, and what Ray's C++ side writes
to the terminal while it connects goes to a log file instead.
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import threading
import time
from contextlib import contextmanager
from collections.abc import Iterator

from ..batch import UsageError, failure_reason

__all__ = ["connect", "CONNECT_TIMEOUT_S", "INIT_DEADLINE_S", "parse_address"]

#: Seconds to reach an explicit address before it is called unreachable.
CONNECT_TIMEOUT_S = 5.0
#: Seconds ``ray.init`` may take on an explicit address once it answered (it retries for
#: minutes where something that is not Ray listens).
INIT_DEADLINE_S = 20.0
_DEFAULT_PORT = 6379
_CLIENT_PORT = 10001


def parse_address(address: str) -> tuple[str, int] | None:
    """(host, port) of an explicit Ray address (``host:port``, ``ray://host[:port]``); None for
    ``local``, ``auto`` and other names Ray resolves itself."""
    text = address.strip()
    default = _DEFAULT_PORT
    if text.startswith("ray://"):
        text, default = text[len("ray://"):], _CLIENT_PORT
    elif "://" in text or text in ("", "local", "auto"):
        return None
    host, sep, port = text.rpartition(":") if text.count(":") == 1 or text.startswith("[") else ("", "", "")
    if not sep:
        return (text.strip("[]"), default) if text else None
    if not port.isdecimal() or not 0 < int(port) < 65536:
        raise UsageError(f"{address}: not a Ray address (HOST:PORT, port from 1 to 65535)")
    return host.strip("[]"), int(port)


def _reach(address: str, host: str, port: int) -> None:
    """A TCP connection to ``host:port`` within :data:`CONNECT_TIMEOUT_S`, else UsageError."""
    started = time.monotonic()
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            return
    except socket.timeout:
        why = f"no answer within {CONNECT_TIMEOUT_S:g} s"
    except OSError as exc:
        why = exc.strerror or str(exc) or type(exc).__name__
    raise UsageError(f"cannot join the Ray cluster at {address}: {why} "
                     f"(after {time.monotonic() - started:.1f} s); is the cluster running there?")


@contextmanager
def _terminal_quiet() -> Iterator[str]:
    """File descriptor 2 points at a log file meanwhile (Ray's C++ writes there, not through
    Python); yields the log file's path."""
    log = tempfile.NamedTemporaryFile(prefix="lia-ray-connect-", suffix=".log", delete=False)  # noqa: SIM115
    saved = os.dup(2)
    try:
        os.dup2(log.fileno(), 2)
        yield log.name
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        log.close()


def _within(call, seconds: float, address: str) -> None:
    """``call()`` in a worker thread, waited for at most ``seconds`` (the wait, unlike a call
    blocked in C++, ends at once on a signal); UsageError when it takes longer."""
    done = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:  # handed to the caller
            failure.append(exc)
        finally:
            done.set()

    threading.Thread(target=run, name="ray-connect", daemon=True).start()
    if not done.wait(seconds):
        raise UsageError(f"cannot join the Ray cluster at {address}: it answers, but no Ray cluster "
                         f"came up there within {seconds:g} s")
    if failure:
        raise failure[0]


def connect(address: str | None) -> bool:
    """Connect (``address``, else ``RAY_ADDRESS``, else a new local instance); True if we did
    (the caller then shuts Ray down), False when Ray was already initialised.

    Raises UsageError with one line when the cluster cannot be joined: nothing listening
    (within :data:`CONNECT_TIMEOUT_S`), a bad address, or a cluster that refuses us (recent
    Ray turns token authentication on by default: the message says where the token goes).
    """
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    target = parse_address(address)
    if target is not None:
        _reach(address, *target)
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")  # the C++ core's warnings stay in its logs

    def init() -> None:
        ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR,
                 configure_logging=False, include_dashboard=False if address == "local" else None)

    try:
        with _terminal_quiet() as log:
            if target is None:
                init()  # a local instance starts here, in the main thread
            else:
                _within(init, INIT_DEADLINE_S, address)
    except UsageError:
        raise
    except Exception as exc:  # ConnectionError, an authentication error, a bad address
        hint = ("; if the cluster uses token authentication (on by default in recent Ray), give the driver "
                "its token: RAY_AUTH_TOKEN or ~/.ray/auth_token") if address != "local" else ""
        raise UsageError(f"cannot join the Ray cluster at {address}: {failure_reason(exc)}{hint} "
                         f"(Ray's log: {log})") from None
    os.unlink(log)
    return True
