"""JAX's persistent compilation cache, switched on for skimpact's compiled programs.

A new process fitting a model of a shape it has fitted before then reads the compiled
programs from disk instead of compiling them again. :func:`enable_compilation_cache` runs
once, when skimpact is imported; it changes nothing when the user has configured JAX's cache
themselves (``jax_compilation_cache_dir`` or ``JAX_COMPILATION_CACHE_DIR``) or when the
environment variable ``SKIMPACT_COMPILATION_CACHE`` is ``0`` (``off``, ``false``, ``no``).
The cache lives in the platform's user cache directory (``$XDG_CACHE_HOME`` or
``~/.cache`` on Linux, ``~/Library/Caches`` on macOS, ``%LOCALAPPDATA%`` on Windows) under
``skimpact/jax``; delete that directory to reclaim its space.
"""

import os
import sys

import jax

__all__ = ["enable_compilation_cache", "default_cache_dir"]

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
