"""JAX's persistent compilation cache for skimpact's compiled programs, opt-in.

With the cache on, a new process fitting a model of a shape it has fitted before reads the
compiled programs from disk instead of compiling them again. :func:`enable_compilation_cache`
runs once, when skimpact is imported, and switches the cache on only when the environment
variable ``SKIMPACT_COMPILATION_CACHE`` is ``1`` (``on``, ``true``, ``yes``) and the user has
not configured JAX's cache themselves (``jax_compilation_cache_dir`` or
``JAX_COMPILATION_CACHE_DIR``). It is off by default because two processes compiling into
one cache at once (joblib workers, pytest-xdist) crashed in JAX 0.12's CPU cache writer
(a segmentation fault and an abort while serialising executables).
The cache lives in the platform's user cache directory (``$XDG_CACHE_HOME`` or
``~/.cache`` on Linux, ``~/Library/Caches`` on macOS, ``%LOCALAPPDATA%`` on Windows) under
``skimpact/jax``; delete that directory to reclaim its space.
"""

import os
import sys

import jax

__all__ = ["enable_compilation_cache", "default_cache_dir"]

_ON = ("1", "on", "true", "yes")
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

    Does nothing unless ``SKIMPACT_COMPILATION_CACHE`` is ``1`` / ``on`` / ``true`` /
    ``yes``, and nothing when JAX's cache directory is already configured. It takes effect for the
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
    >>> enable_compilation_cache({}) is None   # off unless asked for
    True
    """
    environ = os.environ if environ is None else environ
    if environ.get("SKIMPACT_COMPILATION_CACHE", "").strip().lower() not in _ON:
        return None
    if jax.config.jax_compilation_cache_dir or environ.get("JAX_COMPILATION_CACHE_DIR"):
        return None
    if not jax.config.jax_enable_compilation_cache:
        return None
    path = default_cache_dir(environ)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", _MIN_COMPILE_SECONDS)
    return path
