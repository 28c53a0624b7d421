"""Estimation stage and progress bar on stderr (``fit(progress=True)``), and the user's callback."""
import sys
import time


class Progress:
    """Callable passed to the engine as ``callback(stage, iteration, objective)``.

    Forwards every call to the user's callback; when enabled, writes the stage and a bar of the
    iterations used out of ``maxiter`` to `stream` (stderr).  Quiet by default.
    """

    def __init__(self, enabled=False, callback=None, maxiter=100, stream=None, width=30):
        self.enabled, self.callback, self.maxiter = bool(enabled), callback, maxiter
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.stage = None
        self.t0 = time.perf_counter()

    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()
        return False

    def __call__(self, stage, iteration, objective):
        if self.callback is not None:
            self.callback(stage, iteration, objective)
        if not self.enabled:
            return
        if stage != self.stage and self.stage is not None:
            self.stream.write("\n")
        self.stage = stage
        done = min(1.0, iteration / self.maxiter) if stage != "done" else 1.0
        bar = "#" * int(round(done * self.width))
        obj = "" if objective != objective else f"  -loglik {objective:.6g}"
        self.stream.write(f"\r{stage:<16s} [{bar:<{self.width}s}] {iteration:4d}{obj}  "
                          f"{time.perf_counter() - self.t0:6.2f}s")
        self.stream.flush()
