"""Sinks: where the predictive engine puts each batch of predictions.

A sink receives ``allocate(shapes, dtypes, row_axes=..., batch_size=...)`` once,
``write(name, index, array)`` per batch and output, and ``close()`` at the end, whose return
value the engine returns; ``abort()`` is called instead of ``close()`` when the run fails.
Shapes have the draw axis (chains flattened) first.

:class:`MemorySink` fills NumPy arrays. :class:`ZarrSink` streams every batch to a Zarr
store written under a temporary name and renamed when complete, so memory is bounded by
the batch and an interrupted run leaves nothing at the target path. :class:`ProgressSink`
wraps another sink with a progress bar, :class:`OffsetSink` with outputs' offsets.
:class:`ReduceSink` keeps a statistic over the draws of each batch (a mean, quantiles, a
score per row) instead of the draws, so memory is bounded by the rows, not rows x draws;
:func:`draw_quantiles` is its quantile.
:func:`check_target` validates a ``store=`` argument before anything is computed.

Every directory skimpact writes beside a target (a ``.NAME.xxxxxxxx.partial`` store, a
``.skimpact-scratch-*`` directory) holds a marker file naming the writing process and host.
When a process is killed, such directories stay behind; the next write into the same
parent directory removes those whose writer is dead (same host) or whose marker is older
than a day (another host). Directories without the marker are never touched.
"""

import contextlib
import json
import os
import shutil
import socket
import time
import uuid
import warnings

import numpy as np

__all__ = [
    "MemorySink",
    "OffsetSink",
    "ProgressSink",
    "ReduceSink",
    "ZarrSink",
    "check_target",
    "draw_quantiles",
    "write_tree",
    "scratch_dir",
    "scratch_sink_in",
    "store_tree",
]

_CHUNK_BYTES = 32 * 2**20
_MARKER = ".skimpact-writer.json"
_SCRATCH_PREFIX = ".skimpact-scratch-"
_FOREIGN_STALE_SECONDS = 24 * 3600  # a marker from another host older than this is stale


class MemorySink:
    """Collects batches into preallocated NumPy arrays."""

    def allocate(self, shapes, dtypes, row_axes=None, batch_size=None):
        """Preallocate one array per output."""
        self.arrays = {k: np.empty(s, dtype=dtypes[k]) for k, s in shapes.items()}

    def write(self, name, index, array):
        """Copy one batch into place."""
        self.arrays[name][index] = np.asarray(array)

    def close(self):
        """Return ``{name: ndarray}``."""
        return self.arrays

    def abort(self):
        """Drop the arrays."""
        self.arrays = None


class ReduceSink:
    """Reduces each batch over its draws as it arrives and keeps only the result.

    Parameters
    ----------
    reduce : callable
        ``reduce(name, array, rows) -> ndarray``: ``array`` is one batch of output ``name``
        with the draw axis first, ``rows`` the ``slice`` of the output's rows it holds (or
        ``None`` for an output without rows). The result replaces the draw axis by
        ``lead`` leading axes of its own (none for a mean, one for quantiles); the other
        axes are those of ``array``.

    Notes
    -----
    ``close()`` returns ``{name: ndarray}`` without a draw axis, so :attr:`keeps_draws`
    is False: the caller must not split a draw axis into chains.
    """

    keeps_draws = False

    def __init__(self, reduce):
        self.reduce = reduce

    def allocate(self, shapes, dtypes, row_axes=None, batch_size=None):
        """Note each output's full shape (draw axis first); arrays come with the first
        batch, when the reduction's shape and dtype are known."""
        self.shapes = shapes
        self.arrays = {}

    def write(self, name, index, array):
        """Reduce one batch over its draws and copy the result into place."""
        array = np.asarray(array)
        rows = None
        if isinstance(index, tuple):
            rows = next((i for i in index[1:] if isinstance(i, slice) and i.stop is not None),
                        None)
        out = np.asarray(self.reduce(name, array, rows))
        lead = out.ndim - (array.ndim - 1)
        if name not in self.arrays:
            self.arrays[name] = np.empty(out.shape[:lead] + tuple(self.shapes[name][1:]),
                                         dtype=out.dtype)
        target = (slice(None),) * lead + (index[1:] if isinstance(index, tuple) else (...,))
        self.arrays[name][target] = out

    def close(self):
        """Return ``{name: ndarray}``, each reduced over the draws."""
        return self.arrays

    def abort(self):
        """Drop the arrays."""
        self.arrays = None


def draw_quantiles(draws, q):
    """``np.quantile(draws, q, axis=0)`` (its default linear method, to the bit), by sorting
    each row's draws made contiguous: about 4x faster than NumPy's partition along the
    draw axis of a batch.

    Parameters
    ----------
    draws : ndarray of shape (n_draws, ...)
    q : array-like of float in [0, 1]

    Returns
    -------
    ndarray of shape (len(q), ...)
        Float64 for float32 or float64 draws, as NumPy gives; NaN where a row has a NaN.

    Examples
    --------
    >>> import numpy as np
    >>> from skimpact._sinks import draw_quantiles
    >>> draws = np.random.default_rng(0).normal(size=(101, 3)).astype(np.float32)
    >>> q = [0.05, 0.5, 0.95]
    >>> bool(np.array_equal(draw_quantiles(draws, q), np.quantile(draws, q, axis=0)))
    True
    """
    q = np.asarray(q, dtype=np.float64)
    n = draws.shape[0]
    rows = np.sort(np.ascontiguousarray(np.moveaxis(draws, 0, -1)).reshape(-1, n), axis=-1)
    # NumPy's linear method: the index (n - 1) q between two order statistics, the last
    # one (index -1) from n - 1 on, interpolated from the nearer end
    virtual = (n - 1) * q
    last = virtual >= n - 1
    below = np.where(last, -1, np.floor(virtual)).astype(np.intp)
    above = np.where(last, -1, below + 1)
    gamma = (virtual - below)[:, None]
    a, b = rows[:, below].T, rows[:, above].T
    diff = b - a
    out = np.add(a, diff * gamma)
    np.subtract(b, diff * (1 - gamma), out=out, where=np.broadcast_to(gamma >= 0.5, out.shape))
    out[:, np.isnan(rows[:, -1])] = np.nan  # NaN sorts last
    return out.reshape((len(q),) + draws.shape[1:])


class ProgressSink:
    """Wraps a prediction sink and advances a tqdm bar by the rows of each batch.

    Parameters
    ----------
    inner : object or None
        The sink that stores the batches (``allocate`` / ``write`` / ``close``); ``None``
        for a :class:`MemorySink`.
    n_rows : int
        Total rows predicted.
    desc : str, default="predict"
        Label of the bar.
    """

    def __init__(self, inner, n_rows, desc="predict"):
        from tqdm.auto import tqdm

        self.inner = MemorySink() if inner is None else inner
        self.bar = tqdm(total=n_rows, desc=desc, unit="row")
        self._counter = None

    def __getattr__(self, name):
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def allocate(self, *args, **kwargs):
        """Allocate the inner sink."""
        return self.inner.allocate(*args, **kwargs)

    def write(self, name, index, array):
        """Write one batch to the inner sink; the first output's rows advance the bar."""
        self.inner.write(name, index, array)
        if not isinstance(index, tuple):
            return
        if self._counter is None:
            self._counter = name
        if name == self._counter:
            rows = next(
                (s.stop - s.start for s in index if isinstance(s, slice) and s.stop is not None),
                0,
            )
            self.bar.update(rows)

    def add_reduced(self, reduced, batch_rows, rows):
        """Hand a batch reduced on the device to the inner sink; its rows advance the bar."""
        self.inner.add_reduced(reduced, batch_rows, rows)
        self.bar.update(rows.stop - rows.start)

    def close(self):
        """Close the bar; return what the inner sink's ``close()`` returns."""
        self.bar.close()
        return self.inner.close()

    def abort(self):
        """Close the bar and abort the inner sink."""
        self.bar.close()
        getattr(self.inner, "abort", lambda: None)()


class OffsetSink:
    """Wraps a prediction sink and adds a constant offset, in float64, to some outputs.

    Parameters
    ----------
    inner : object or None
        The sink that stores the batches; ``None`` for a :class:`MemorySink`.
    offsets : dict of str to float
        ``{output: offset}``; outputs not named pass through unchanged.
    """

    #: the inner sink's device reduction would see the outputs without their offsets, so
    #: every batch comes through :meth:`write`
    reduction = None

    def __init__(self, inner, offsets):
        self.inner = MemorySink() if inner is None else inner
        self.offsets = offsets

    def __getattr__(self, name):
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def allocate(self, shapes, dtypes, **kwargs):
        """Allocate the inner sink, the offset outputs as float64."""
        dtypes = {k: (np.dtype(np.float64) if k in self.offsets else d) for k, d in dtypes.items()}
        return self.inner.allocate(shapes, dtypes, **kwargs)

    def write(self, name, index, array):
        """Write one batch, its offset added."""
        if name in self.offsets:
            array = np.asarray(array, dtype=np.float64) + self.offsets[name]
        self.inner.write(name, index, array)

    def close(self):
        """What the inner sink's ``close()`` returns."""
        return self.inner.close()

    def abort(self):
        """Abort the inner sink."""
        getattr(self.inner, "abort", lambda: None)()


def check_target(store):
    """Check a ``store=`` argument before anything is computed.

    Parameters
    ----------
    store : str, os.PathLike, zarr store or None
        ``None`` (nothing to check), a path that does not exist yet and whose nearest
        existing parent is a writable directory, or a Zarr store object.

    Raises
    ------
    ImportError
        zarr or dask is not installed.
    FileExistsError
        The path exists (skimpact never overwrites a store).
    ValueError
        The path cannot be created: its nearest existing parent is not a directory, or not
        writable, or takes no new directory (a read-only or virtual file system: an empty
        directory is created there and removed to know).
    TypeError
        ``store`` is neither a path nor a Zarr store.
    """
    if store is None:
        return
    _require_zarr()
    from zarr.abc.store import Store

    if isinstance(store, Store) and type(store).__name__ != "LocalStore":
        return
    if not isinstance(store, (str, os.PathLike, Store)):
        raise TypeError(
            f"`store` must be a path (str or os.PathLike) or a zarr store; got "
            f"{type(store).__name__}."
        )
    path = _Target(store).path
    if os.path.lexists(path):
        raise FileExistsError(
            f"{path} exists; remove it or give another `store=` path (skimpact never "
            "overwrites a store)."
        )
    parent = os.path.dirname(path)
    while not os.path.lexists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ValueError(
            f"Cannot create the store {path}: {parent} is not a directory. Give a `store=` "
            "path inside a directory."
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(
            f"Cannot create the store {path}: the directory {parent} is not writable. Give "
            "a `store=` path in a directory you can write to."
        )
    # os.access does not see read-only or virtual file systems (/proc), nor what root may
    # not do there: create (and remove) an empty directory to know.
    probe = os.path.join(parent, f".skimpact-probe-{uuid.uuid4().hex[:8]}")
    try:
        os.mkdir(probe)
    except OSError as exc:
        raise _cannot_create(path, parent, exc) from None
    os.rmdir(probe)


def _cannot_create(path, parent, exc):
    return ValueError(
        f"Cannot create the store {path}: the directory {parent} does not take new "
        f"directories ({exc.strerror or exc}). Give a `store=` path in a directory you can "
        "write to."
    )


def _mark(directory):
    """Write the marker naming this process and host into ``directory`` (which skimpact
    just created)."""
    marker = {"pid": os.getpid(), "host": socket.gethostname(), "time": time.time()}
    with open(os.path.join(directory, _MARKER), "w") as fh:
        json.dump(marker, fh)


def _is_stale(directory):
    """Whether ``directory`` is one skimpact made whose writer is gone: its marker names a
    dead process of this host, or another host and is older than a day."""
    try:
        with open(os.path.join(directory, _MARKER)) as fh:
            marker = json.load(fh)
        pid, host, written = int(marker["pid"]), str(marker["host"]), float(marker["time"])
    except (OSError, ValueError, KeyError, TypeError):
        return False  # not ours, or unreadable: leave it alone
    if host != socket.gethostname():
        return time.time() - written > _FOREIGN_STALE_SECONDS
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # alive, owned by another user
    return False


def _clean_stale(parent):
    """Remove the partial stores and scratch directories in ``parent`` that interrupted
    skimpact processes left behind (see :func:`_is_stale`)."""
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        ours = name.startswith(_SCRATCH_PREFIX) or (
            name.startswith(".") and name.endswith(".partial")
        )
        path = os.path.join(parent, name)
        if ours and os.path.isdir(path) and not os.path.islink(path) and _is_stale(path):
            shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def _quiet():
    """Silence Zarr's note that consolidated metadata is outside the v3 specification
    (xarray writes it so the lazy reopen reads one key), and its note on the writer's
    marker file in a partial store (removed before the store is renamed into place)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
        warnings.filterwarnings("ignore", message=f"Object at {_MARKER} is not recognized")
        yield


class _Target:
    """A Zarr target: a filesystem path (written under a temporary name, then renamed) or a
    Zarr store object (written in place)."""

    def __init__(self, store):
        if isinstance(store, (str, os.PathLike)):
            self.path, self.store = os.path.abspath(os.fspath(store)), None
        elif type(store).__name__ == "LocalStore":
            self.path, self.store = os.path.abspath(os.fspath(store.root)), None
        else:
            self.path, self.store = None, store

    def begin(self):
        """Where to write: a fresh temporary path beside the target, or the store."""
        if self.path is None:
            return self.store
        check_target(self.path)
        parent, name = os.path.split(self.path)
        try:
            os.makedirs(parent, exist_ok=True)
            _clean_stale(parent)
            self.tmp = os.path.join(parent, f".{name}.{uuid.uuid4().hex[:8]}.partial")
            os.mkdir(self.tmp)
        except OSError as exc:  # the directory changed since check_target
            raise _cannot_create(self.path, parent, exc) from None
        _mark(self.tmp)
        return self.tmp

    def commit(self):
        """Rename the temporary store to the target; return what to open."""
        if self.path is None:
            return self.store
        os.remove(os.path.join(self.tmp, _MARKER))
        os.rename(self.tmp, self.path)
        return self.path

    def abort(self):
        if self.path is not None and os.path.exists(getattr(self, "tmp", "")):
            shutil.rmtree(self.tmp, ignore_errors=True)


def _chunk_rows(shape, row_axis, batch_size, itemsize):
    """Rows per Zarr chunk: a divisor of ``batch_size`` (so batches fill whole chunks) with
    chunks of about ``_CHUNK_BYTES``."""
    per_row = itemsize * int(np.prod(shape)) // max(1, shape[row_axis])
    target = max(1, _CHUNK_BYTES // max(1, per_row))
    if target >= batch_size:
        return batch_size
    best = 1
    for d in range(1, int(batch_size**0.5) + 1):
        if batch_size % d == 0:
            for c in (d, batch_size // d):
                if best < c <= target:
                    best = c
    return best if best * 4 >= target else target


def _chunks(shape, row_axis, batch_size, itemsize, lead):
    """Dask/Zarr chunks: whole along every axis but the row axis."""
    chunks = list(shape)
    if row_axis is not None and batch_size:
        axis = len(shape) + row_axis
        chunks[axis] = min(shape[axis], _chunk_rows(shape, axis, batch_size, itemsize))
    return tuple(chunks)


class ZarrSink:
    """Streams each batch into a Zarr store laid out as the final ``xarray.DataTree``.

    Parameters
    ----------
    store : str, os.PathLike or zarr store
        Target. A path (or a ``zarr.storage.LocalStore``) is written under a temporary
        name beside it and renamed when complete; it must not exist yet. Other stores are
        written in place.
    build_tree : callable
        ``build_tree(arrays, row_axes) -> xarray.DataTree`` labels the outputs, given as lazy
        placeholders with ``(chain, draw, ...)`` axes; its metadata, coordinates and
        in-memory groups are written first, then every batch fills the outputs.
    group : str
        The group of ``build_tree``'s tree that holds the outputs.
    n_chain : int
        Chains the flattened draw axis is split into.

    Notes
    -----
    Outputs are stored uncompressed: posterior predictive draws are noise-like, so a
    compressor costs several times the write time and saves little space.
    """

    def __init__(self, store, build_tree, group, n_chain):
        check_target(store)
        self.target = _Target(store)
        self.build_tree = build_tree
        self.group = group
        self.n_chain = n_chain

    def allocate(self, shapes, dtypes, row_axes=None, batch_size=None):
        """Write the tree's skeleton and create the output arrays."""
        import dask.array as da
        import zarr

        row_axes = row_axes or {}
        placeholders = {}
        for k, s in shapes.items():
            full = (self.n_chain, s[0] // self.n_chain) + tuple(s[1:])
            itemsize = np.dtype(dtypes[k]).itemsize
            chunks = _chunks(full, row_axes.get(k), batch_size, itemsize, 2)
            placeholders[k] = da.empty(full, dtype=dtypes[k], chunks=chunks)
        tree = self.build_tree(placeholders, row_axes)
        where = self.target.begin()
        try:
            with _quiet():
                # "a": a path target is a fresh directory holding only the marker
                tree.to_zarr(
                    where, mode="a", compute=False,
                    encoding={f"/{self.group}": {k: {"compressors": None} for k in shapes}},
                )
                group = zarr.open_group(where, mode="r+", path=self.group)
            self.arrays = {k: group[k] for k in shapes}
        except BaseException:
            self.target.abort()
            raise

    def write(self, name, index, array):
        """Write one batch (draw axis first) into place."""
        array = np.asarray(array)
        array = array.reshape((self.n_chain, -1) + array.shape[1:])
        if index is Ellipsis:
            self.arrays[name][...] = array
        else:
            self.arrays[name][(slice(None),) + tuple(index)] = array

    def close(self):
        """Rename the store into place and open it lazily (Dask-backed)."""
        import xarray as xr

        where = self.target.commit()
        return xr.open_datatree(where, engine="zarr", chunks={})

    def abort(self):
        """Remove the partial store."""
        self.target.abort()


def write_tree(tree, store):
    """Write a (possibly Dask-backed) DataTree to ``store`` under a temporary name, rename
    it into place and return it opened lazily from there."""
    import xarray as xr

    check_target(store)
    target = _Target(store)
    where = target.begin()
    encoding = {
        node.path: {k: {"compressors": None} for k in node.data_vars}
        for node in tree.subtree
        if node.data_vars
    }
    try:
        with _quiet():
            tree.to_zarr(where, mode="a", encoding=encoding)
    except BaseException:
        target.abort()
        raise
    return xr.open_datatree(target.commit(), engine="zarr", chunks={})


class _ScratchSink(MemorySink):
    """Streams batches to a Zarr group in a scratch directory; ``close()`` returns Dask
    arrays reading from it (draw axis first, whole)."""

    def __init__(self, directory):
        self.directory = directory

    def allocate(self, shapes, dtypes, row_axes=None, batch_size=None):
        import zarr

        row_axes = row_axes or {}
        self.group = zarr.open_group(
            os.path.join(self.directory, uuid.uuid4().hex[:8]), mode="w"
        )
        self.arrays = {
            k: self.group.create_array(
                k, shape=s, dtype=dtypes[k], fill_value=0, compressors=None,
                chunks=_chunks(s, row_axes.get(k), batch_size, np.dtype(dtypes[k]).itemsize, 1),
            )
            for k, s in shapes.items()
        }

    def close(self):
        import dask.array as da

        return {k: da.from_zarr(a) for k, a in self.arrays.items()}


def _require_zarr():
    try:
        import dask.array  # noqa: F401
        import zarr  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "`store=` needs zarr and dask: pip install 'skimpact[zarr]'."
        ) from exc


def scratch_dir(store):
    """A temporary directory for the scenarios of an effect streamed to ``store`` (beside
    a path target, so the data stay on its disk), or ``None`` when ``store`` is ``None``."""
    import tempfile

    if store is None:
        return None
    check_target(store)
    target = _Target(store)
    parent = os.path.dirname(target.path) if target.path else None
    if parent:
        os.makedirs(parent, exist_ok=True)
        _clean_stale(parent)
    scratch = tempfile.TemporaryDirectory(dir=parent, prefix=_SCRATCH_PREFIX)
    _mark(scratch.name)
    return scratch


def scratch_sink_in(scratch):
    """A scratch sink in ``scratch`` (from :func:`scratch_dir`), or ``None`` for memory."""
    return None if scratch is None else _ScratchSink(scratch.name)


def store_tree(store, scratch, tree):
    """Write ``tree`` to ``store`` and remove ``scratch``; without a store return ``tree``."""
    if store is None:
        return tree
    try:
        return write_tree(tree, store)
    finally:
        scratch.cleanup()
