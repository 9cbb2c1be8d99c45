"""Use every CPU core: one JAX CPU device per core.

XLA runs a CPU computation's elementwise loops on one thread, so a single CPU device leaves
the other cores idle. The engine already spreads each chunk's trajectories over all local
devices (``engine._traj_sharding``); this module makes the CPU backend expose one device per
usable core, which must happen before JAX starts its backends - ``import sweep`` does it.

Control: the environment variable ``SWEEP_CPU_DEVICES`` (a positive integer; ``1`` keeps JAX's
single CPU device). Nothing is changed when JAX has already started its backends, when
``XLA_FLAGS`` sets ``--xla_force_host_platform_device_count``, or when ``jax_num_cpu_devices``
was set by the caller. Each trajectory is computed on one device, independently of the
others, so the device count only changes how many share a compiled call (for the scalar
problems the results are bit-identical; for networks, whose losses sum over units and points
inside a trajectory, XLA may vectorise those sums differently for very small per-device chunks,
which can move the last bits). Programs with batched LAPACK calls (``jnp.linalg``: second-order
optimizers, some targets and metrics) run on one device: see ``engine.LINALG_PRIMITIVES``.
"""
from __future__ import annotations

import os
import sys
import warnings

ENV = "SWEEP_CPU_DEVICES"
_SET_ENV: dict = {}  # the JAX_NUM_CPU_DEVICES value this module set, until JAX has read it


def settle() -> None:
    """Once JAX is imported (it has read ``JAX_NUM_CPU_DEVICES``), remove the variable if this module set
    it, so that child processes (other programs) do not inherit it."""
    if _SET_ENV and "jax" in sys.modules:
        if os.environ.get("JAX_NUM_CPU_DEVICES") == _SET_ENV.get("value"):
            del os.environ["JAX_NUM_CPU_DEVICES"]
        _SET_ENV.clear()


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def requested_devices() -> int:
    """``SWEEP_CPU_DEVICES`` if set (a positive integer), else the number of usable cores."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return usable_cores()
    try:
        n = int(raw)
    except ValueError:
        n = 0
    if n < 1:
        warnings.warn(f"{ENV}={raw!r} is not a positive integer; using {usable_cores()} (the usable cores). "
                      f"Set it to e.g. 1 to keep one CPU device.", stacklevel=2)
        return usable_cores()
    return n


def use_all_cores() -> int | None:
    """Ask JAX for one CPU device per core if it is still possible; returns the count set, or None.

    Before JAX is imported this sets ``JAX_NUM_CPU_DEVICES`` (JAX reads it as ``jax_num_cpu_devices``
    when imported), so ``import sweep`` does not import JAX; a value the caller set is kept."""
    n = requested_devices()
    if n <= 1 or "xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", ""):
        return None
    if "jax" not in sys.modules:
        if os.environ.get("JAX_NUM_CPU_DEVICES", "").strip():  # the caller chose
            return None
        os.environ["JAX_NUM_CPU_DEVICES"] = str(n)
        _SET_ENV["value"] = str(n)
        return n
    import jax

    if jax.config.jax_num_cpu_devices not in (-1, None):  # the caller chose
        return None
    try:
        jax.config.update("jax_num_cpu_devices", n)
    except RuntimeError:  # JAX's backends are already running: keep what the caller has
        return None
    return n
