"""Sinks: where the predictive engine puts each batch of predictions.

A sink receives ``allocate(shapes, dtypes, row_axes=..., batch_size=...)`` once,
``write(name, index, array)`` per batch and output, and ``close()`` at the end, whose return
value the engine returns; ``abort()`` is called instead of ``close()`` when the run fails.
Shapes have the draw axis (chains flattened) first.

:class:`MemorySink` fills NumPy arrays. :class:`ZarrSink` streams every batch to a Zarr
store written under a temporary name and renamed when complete, so memory is bounded by
the batch and an interrupted run leaves nothing at the target path.
"""

import contextlib
import os
import shutil
import uuid
import warnings

import numpy as np

__all__ = ["MemorySink", "ZarrSink", "write_tree", "scratch_dir", "scratch_sink_in", "store_tree"]

_CHUNK_BYTES = 32 * 2**20


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


@contextlib.contextmanager
def _quiet():
    """Silence Zarr's note that consolidated metadata is outside the v3 specification
    (xarray writes it so the lazy reopen reads one key)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)
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
        if os.path.exists(self.path):
            raise FileExistsError(
                f"{self.path} exists; remove it or give another `store=` path (skimpact never "
                "overwrites a store)."
            )
        parent, name = os.path.split(self.path)
        os.makedirs(parent, exist_ok=True)
        self.tmp = os.path.join(parent, f".{name}.{uuid.uuid4().hex[:8]}.partial")
        return self.tmp

    def commit(self):
        """Rename the temporary store to the target; return what to open."""
        if self.path is None:
            return self.store
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
        _require_zarr()
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
                tree.to_zarr(
                    where, mode="w-" if self.target.path else "a", compute=False,
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

    target = _Target(store)
    where = target.begin()
    encoding = {
        node.path: {k: {"compressors": None} for k in node.data_vars}
        for node in tree.subtree
        if node.data_vars
    }
    try:
        with _quiet():
            tree.to_zarr(where, mode="w-" if target.path else "a", encoding=encoding)
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
    _require_zarr()
    target = _Target(store)
    parent = os.path.dirname(target.path) if target.path else None
    if parent:
        os.makedirs(parent, exist_ok=True)
    return tempfile.TemporaryDirectory(dir=parent, prefix=".skimpact-scratch-")


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
