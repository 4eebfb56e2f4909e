"""Faults: Ctrl-C during a fit, chunked inference staying deterministic, store arguments
checked before any work, and partial stores left by killed writers cleaned up."""

import _thread
import gc
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from skimpact import ImpactRegressor
from skimpact._sinks import ProgressSink, check_target, scratch_dir, write_tree


def _data(n=60, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 1))
    return X, 1.0 + 2.0 * X[:, 0] + rng.normal(0, 0.5, n)


def _interrupted(est):
    """Fit ``est``, sending the main thread a SIGINT-like interrupt a second later."""
    timer = threading.Timer(1.0, _thread.interrupt_main)
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            est.fit(*_data())
    finally:
        timer.cancel()


@pytest.mark.slow
def test_ctrl_c_stops_svi_without_progress_bar():
    _interrupted(ImpactRegressor(inference="svi", num_steps=10**7, num_samples=5, random_state=0))
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


@pytest.mark.slow
def test_ctrl_c_during_a_garbage_collection_still_stops_the_fit():
    # Python raises KeyboardInterrupt at the next bytecode, which may be in a gc callback
    # (JAX registers one), where it is printed and dropped; the fit must stop all the same
    armed = threading.Event()

    def interrupt_in_collection(phase, info):
        if armed.is_set() and phase == "start" and threading.current_thread() is \
                threading.main_thread():
            armed.clear()
            signal.raise_signal(signal.SIGINT)

    def arm_once_the_fit_handles_ctrl_c():
        # armed on a clock alone, a loaded machine could still be compiling with Python's
        # own handler in place: the interrupt was then raised in the callback and dropped
        # by Python itself, and the fit ran on to its end
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not stop.is_set():
            if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
                time.sleep(0.5)
                armed.set()
                return
            time.sleep(0.01)

    stop = threading.Event()
    gc.callbacks.append(interrupt_in_collection)
    watcher = threading.Thread(target=arm_once_the_fit_handles_ctrl_c)
    watcher.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            ImpactRegressor(inference="svi", num_steps=10**7, num_samples=5,
                            random_state=0).fit(*_data())
    finally:
        stop.set()
        watcher.join()
        gc.callbacks.remove(interrupt_in_collection)


@pytest.mark.slow
def test_ctrl_c_stops_nuts_sampling_without_progress_bar():
    _interrupted(
        # long enough that only Ctrl-C ends it in time, bounded so a lost interrupt fails
        # within a minute instead of sampling for half an hour
        ImpactRegressor(inference="nuts", num_warmup=20, num_samples=10**6, random_state=0)
    )


@pytest.mark.slow
def test_ctrl_c_stops_nuts_warmup():
    _interrupted(
        ImpactRegressor(inference="nuts", num_warmup=10**6, num_samples=10, random_state=0)
    )


def test_chunked_svi_is_deterministic():
    X, y = _data()
    fits = [
        ImpactRegressor(inference="svi", num_steps=250, num_samples=20, random_state=3).fit(X, y)
        for _ in range(2)
    ]
    loss = fits[0].diagnostics_["loss"]
    assert loss.shape == (250,)  # chunks of 100, 100 and 50 steps
    np.testing.assert_array_equal(loss, fits[1].diagnostics_["loss"])
    np.testing.assert_array_equal(fits[0].predict(X), fits[1].predict(X))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:r_hat above:sklearn.exceptions.ConvergenceWarning")
def test_chunked_nuts_concatenates_draws_and_divergences():
    X, y = _data()
    params = dict(inference="nuts", num_warmup=150, num_samples=230, num_chains=2)
    one = ImpactRegressor(random_state=1, **params).fit(X, y)
    two = ImpactRegressor(random_state=1, **params).fit(X, y)
    post = one.posterior_["posterior"]
    assert post.sizes["chain"] == 2 and post.sizes["draw"] == 230
    assert one.posterior_["sample_stats"]["diverging"].shape == (2, 230)
    np.testing.assert_array_equal(post["beta"].values, two.posterior_["posterior"]["beta"].values)
    # The chains are different chains, and adapted: they agree on the slope of 2.
    beta = post["beta"].values[..., 0]
    assert not np.array_equal(beta[0], beta[1])
    assert one.diagnostics_["r_hat"]["beta"] < 1.05
    slope = float(post["coef"].mean())
    assert slope == pytest.approx(2.0, abs=0.3)


def test_check_target_rejects_bad_stores_before_work(tmp_path):
    check_target(None)
    check_target(tmp_path / "new" / "deeper" / "out.zarr")  # parents are created later
    (tmp_path / "there.zarr").mkdir()
    with pytest.raises(FileExistsError, match="remove it or give another"):
        check_target(tmp_path / "there.zarr")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a directory"):
        check_target(tmp_path / "file" / "out.zarr")
    with pytest.raises(TypeError, match="path .* or a zarr store; got int"):
        check_target(3)
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        try:
            with pytest.raises(ValueError, match="not writable"):
                check_target(locked / "out.zarr")
        finally:
            locked.chmod(0o700)


def test_check_target_accepts_zarr_stores(tmp_path):
    import zarr

    check_target(zarr.storage.MemoryStore())
    with pytest.raises(FileExistsError):
        check_target(zarr.storage.LocalStore(str(tmp_path)))


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _leftover(parent, name, pid, host=None, age=0.0):
    path = parent / name
    (path / "sub").mkdir(parents=True)
    marker = {"pid": pid, "host": host or socket.gethostname(), "time": time.time() - age}
    (path / ".skimpact-writer.json").write_text(json.dumps(marker))
    return path


def test_new_write_removes_only_stale_leftovers(tmp_path):
    import xarray as xr

    dead = _leftover(tmp_path, ".old.zarr.1234abcd.partial", _dead_pid())
    dead_scratch = _leftover(tmp_path, ".skimpact-scratch-dead", _dead_pid())
    live = _leftover(tmp_path, ".busy.zarr.5678abcd.partial", os.getpid())
    foreign_old = _leftover(tmp_path, ".skimpact-scratch-far", 1, host="elsewhere", age=2 * 86400)
    foreign_new = _leftover(tmp_path, ".far.zarr.9abcdef0.partial", 1, host="elsewhere")
    unmarked = tmp_path / ".mine.zarr.00000000.partial"
    unmarked.mkdir()

    tree = xr.DataTree(xr.Dataset({"a": ("x", np.arange(3.0))}))
    out = write_tree(tree, tmp_path / "out.zarr")
    np.testing.assert_array_equal(out["a"].values, [0.0, 1.0, 2.0])
    assert sorted(os.listdir(tmp_path)) == sorted(
        [live.name, foreign_new.name, unmarked.name, "out.zarr"]
    )
    assert not (dead.exists() or dead_scratch.exists() or foreign_old.exists())
    assert ".skimpact-writer.json" not in os.listdir(tmp_path / "out.zarr")


def test_scratch_dir_is_marked_and_cleans_its_parent(tmp_path):
    dead = _leftover(tmp_path, ".skimpact-scratch-gone", _dead_pid())
    scratch = scratch_dir(tmp_path / "effect.zarr")
    try:
        marker = json.loads(open(os.path.join(scratch.name, ".skimpact-writer.json")).read())
        assert marker["pid"] == os.getpid() and marker["host"] == socket.gethostname()
        assert not dead.exists()
        assert os.listdir(tmp_path) == [os.path.basename(scratch.name)]
    finally:
        scratch.cleanup()
    assert os.listdir(tmp_path) == []


def test_progress_sink_defaults_to_memory(capsys):
    sink = ProgressSink(None, n_rows=4, desc="rows")
    sink.allocate({"y": (2, 4)}, {"y": np.float32})
    sink.write("y", (slice(None), slice(0, 3)), np.ones((2, 3)))
    sink.write("y", (slice(None), slice(3, 4)), np.zeros((2, 1)))
    out = sink.close()
    np.testing.assert_array_equal(out["y"], [[1, 1, 1, 0], [1, 1, 1, 0]])
    assert "rows" in capsys.readouterr().err
