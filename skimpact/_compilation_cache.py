"""JAX's persistent compilation cache, switched on for skimpact's compiled programs.

A new process fitting a model of a shape it has fitted before then reads the compiled
programs from disk instead of compiling them again. :func:`enable_compilation_cache` runs
once, when skimpact is imported; it changes nothing when the user has configured JAX's cache
themselves (``jax_compilation_cache_dir`` or ``JAX_COMPILATION_CACHE_DIR``) or when the
environment variable ``SKIMPACT_COMPILATION_CACHE`` is ``0`` (``off``, ``false``, ``no``).
The cache lives in the platform's user cache directory (``$XDG_CACHE_HOME`` or
``~/.cache`` on Linux, ``~/Library/Caches`` on macOS, ``%LOCALAPPDATA%`` on Windows) under
``skimpact/jax``; delete that directory to reclaim its space.

Compiled programs held in memory are bounded too. On a CPU every XLA executable holds
memory maps (about 80 for a small model), and a process fitting thousands of shapes
reached the kernel's limit (``vm.max_map_count``, 65,530 by default) and crashed.
:data:`PROGRAMS` counts the programs XLA compiles and, every :attr:`ProgramBudget.every`
of them, reads the process's maps; past its ``limit`` (``SKIMPACT_MAX_MAPS``, default 40%
of ``vm.max_map_count``; ``0`` for no bound) the next fit or prediction releases every
compiled program (``jax.clear_caches()`` and skimpact's own caches) before it compiles its
own, so the maps stay under half of the kernel's limit.
"""

import os
import sys
import threading

import jax

__all__ = ["enable_compilation_cache", "default_cache_dir", "ProgramBudget", "PROGRAMS"]

#: Share of ``vm.max_map_count`` above which compiled programs are released.
MAPS_FRACTION = 0.4
_MAPS = "/proc/self/maps"
_MAX_MAP_COUNT = "/proc/sys/vm/max_map_count"

_OFF = ("0", "off", "false", "no")
_MIN_COMPILE_SECONDS = 0.0  # cache every program: a fit is dozens of small compilations


def default_cache_dir(environ=None, platform=None):
    """The directory skimpact gives JAX's persistent compilation cache.

    Parameters
    ----------
    environ : mapping, optional
        Environment variables; default ``os.environ``.
    platform : str, optional
        ``sys.platform``-style name; default the running platform.

    Returns
    -------
    str

    Examples
    --------
    >>> from skimpact._compilation_cache import default_cache_dir
    >>> default_cache_dir({"XDG_CACHE_HOME": "/tmp/c"}, platform="linux")
    '/tmp/c/skimpact/jax'
    """
    environ = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform
    if platform == "darwin":
        base = os.path.join(os.path.expanduser("~"), "Library", "Caches")
    elif platform.startswith("win"):
        base = environ.get("LOCALAPPDATA") or os.path.join(os.path.expanduser("~"), "AppData",
                                                           "Local")
    else:
        base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "skimpact", "jax")


def enable_compilation_cache(environ=None):
    """Point JAX's persistent compilation cache at :func:`default_cache_dir`.

    Does nothing when ``SKIMPACT_COMPILATION_CACHE`` is ``0`` / ``off`` / ``false`` /
    ``no``, or when JAX's cache directory is already configured. It takes effect for the
    programs compiled afterwards, so import skimpact before JAX compiles anything.

    Parameters
    ----------
    environ : mapping, optional
        Environment variables; default ``os.environ``.

    Returns
    -------
    str or None
        The cache directory in use when skimpact set it, else ``None``.

    Examples
    --------
    >>> from skimpact._compilation_cache import enable_compilation_cache
    >>> enable_compilation_cache({"SKIMPACT_COMPILATION_CACHE": "0"}) is None
    True
    """
    environ = os.environ if environ is None else environ
    if environ.get("SKIMPACT_COMPILATION_CACHE", "").strip().lower() in _OFF:
        return None
    if jax.config.jax_compilation_cache_dir or environ.get("JAX_COMPILATION_CACHE_DIR"):
        return None
    if not jax.config.jax_enable_compilation_cache:
        return None
    path = default_cache_dir(environ)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", _MIN_COMPILE_SECONDS)
    return path


class ProgramBudget:
    """A bound on the memory maps that compiled programs hold, checked as XLA compiles them.

    Parameters
    ----------
    limit : int
        Memory maps of the process above which :meth:`release_if_over` releases every
        compiled program; ``0`` for no bound.
    every : int, default=20
        Programs compiled between two readings of the process's maps.

    Attributes
    ----------
    compiled : int
        Programs compiled since the maps were last read (from ``jax.monitoring``).
    releases : int
        Releases so far.

    Examples
    --------
    >>> from skimpact._compilation_cache import ProgramBudget
    >>> budget = ProgramBudget(limit=0)
    >>> budget.release_if_over()
    False
    """

    _EVENT = "/jax/core/compile/backend_compile_duration"

    def __init__(self, limit, every=20):
        self.limit = int(limit)
        self.every = int(every)
        self.compiled = 0
        self.releases = 0
        self._clears = []
        self._lock = threading.Lock()

    def on_event(self, name, *args, **kwargs):
        """``jax.monitoring`` listener: count one compilation."""
        if name == self._EVENT:
            self.compiled += 1

    def register(self, clear):
        """Call ``clear()`` (which empties a cache of compiled functions) on each release."""
        self._clears.append(clear)

    def release_if_over(self):
        """Release every compiled program when the process holds more than ``limit``
        memory maps (read once ``every`` programs were compiled since the last reading);
        call it where no compiled program of skimpact is running half-way (before a fit or
        a prediction compiles its own).

        Returns
        -------
        bool
            Whether the programs were released.
        """
        if not self.limit or self.compiled < self.every:
            return False
        with self._lock:
            if self.compiled < self.every:
                return False
            self.compiled = 0
            if _maps() <= self.limit:
                return False
            for clear in self._clears:
                clear()
            jax.clear_caches()
            self.releases += 1
        return True


def _maps():
    """Memory maps of this process (0 where the system does not list them)."""
    try:
        with open(_MAPS) as f:
            return sum(1 for _ in f)
    except OSError:
        return 0


def _limit_from(environ):
    """The bound on memory maps: ``SKIMPACT_MAX_MAPS``, else :data:`MAPS_FRACTION` of the
    kernel's ``vm.max_map_count`` (0, no bound, where it cannot be read)."""
    value = environ.get("SKIMPACT_MAX_MAPS", "").strip()
    if value:
        try:
            return max(0, int(value))
        except ValueError:
            raise ValueError(
                f"SKIMPACT_MAX_MAPS must be a whole number of memory maps (0: no bound); got "
                f"{value!r}."
            ) from None
    try:
        with open(_MAX_MAP_COUNT) as f:
            return int(int(f.read()) * MAPS_FRACTION)
    except (OSError, ValueError):
        return 0


#: The process's bound on compiled programs (see :class:`ProgramBudget`).
PROGRAMS = ProgramBudget(_limit_from(os.environ))
jax.monitoring.register_event_duration_secs_listener(PROGRAMS.on_event)
