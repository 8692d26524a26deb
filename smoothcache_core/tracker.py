"""Step tracking: turns the stream of model evaluations into (step, branch) coordinates.

A schedule is indexed by model evaluation ("step" below): a second-order solver's two evaluations
per solver step are two steps. Calls that repeat the previous timestep are further *branches* of
the same step (split classifier-free guidance: cond and uncond as two calls). How many branches a
step has is learnt from the first step of each generation (the calls before the timestep first
changes); after that a repeated timestep beyond that count is a new step (Heun evaluates the end of
one step and the start of the next at the same sigma), unless its batch differs from the step's first
call's: then it is one more branch (SD3's skip-layer guidance adds a call of the conditional half at
some steps only). A timestep that moves against the direction
established by the generation (going back up for the usual decreasing schedules) starts a new
generation, as do :meth:`StepTracker.reset` and :meth:`StepTracker.restart`.

The tracker sees timesteps only. A repeated first timestep is read as another branch; whether it is
one, or the start of a new generation after an abandoned one, is for the caller to judge from the
call's inputs (:class:`~smoothcache_core.engine.CacheHandle` does) and settle with ``restart``.
"""

from __future__ import annotations

from collections.abc import Callable


class StepTracker:
    """Assigns every model evaluation its step and branch; plain Python, no tensors.

    With ``steps`` given the tracker counts instead of reading timesteps: every evaluation is the
    next step (after ``branches`` calls per step), and a generation ends after ``steps`` steps or at
    :meth:`reset`. That needs no host read at all, at the price of trusting the call pattern.
    """

    def __init__(self, on_new_generation: Callable[[int], None], steps: int | None = None, branches: int = 1) -> None:
        """``on_new_generation(previous_steps)`` runs whenever a new generation starts.

        ``previous_steps`` is how many steps the generation before it ran (0 when there was none or
        it was ended by :meth:`reset`).
        """
        self._on_new_generation = on_new_generation
        self._count_steps = steps
        self._count_branches = branches
        self.step = -1
        self.branch = 0
        self.evaluations = 0
        self.generations = 0
        self._last_timestep: float | None = None
        self._branches: int | None = None
        self._direction = 0
        self._step_batch: int | None = None

    def reset(self, clear_counts: bool = False) -> None:
        """Forget the current generation; the next evaluation starts a new one."""
        if clear_counts:
            self.evaluations = 0
            self.generations = 0
        self._last_timestep = None
        self.step = -1
        self.branch = 0

    def finish(self) -> None:
        """End the current generation as finished by its caller (a pipeline starts the next one):
        ``on_new_generation`` hears how many steps it ran, as at a detected start; the next
        evaluation starts a new generation."""
        if self.step >= 0:
            self._on_new_generation(self.step + 1)
        self.reset()

    def restart(self, previous_steps: int | None = None) -> None:
        """Make the current evaluation the first of a new generation (it was read as a branch, or as
        the next step); ``previous_steps``: how many steps the generation before it really ran."""
        self._start_generation(self._last_timestep, previous_steps)

    @property
    def timestep(self) -> float | None:
        """The timestep of the current step (None when counting, or before the first evaluation)."""
        return self._last_timestep

    @property
    def counted_to_the_end(self) -> bool:
        """Whether a counting tracker has seen every evaluation of its generation."""
        return (
            self._count_steps is not None
            and self.step >= 0
            and self.step + 1 >= self._count_steps
            and self.branch + 1 >= self._count_branches
        )

    def count(self) -> None:
        """Advance to the next evaluation by counting (for trackers built with ``steps``)."""
        self.evaluations += 1
        if self.step < 0 or self.counted_to_the_end:
            self._start_generation(None)
        elif self.branch + 1 < self._count_branches:
            self.branch += 1
        else:
            self.step += 1
            self.branch = 0

    @property
    def counting(self) -> bool:
        return self._count_steps is not None

    def observe(self, timestep: float, batch: int | None = None) -> None:
        """Advance to the coordinates of a new model evaluation at ``timestep`` (``batch``: its
        leading size, which tells an extra guidance call from a second-order solver's next step)."""
        self.evaluations += 1
        last = self._last_timestep
        if last is None:
            self._start_generation(timestep)
            self._step_batch = batch
            return
        another_branch = self._branches is None or self.branch + 1 < self._branches or batch != self._step_batch
        if timestep == last and another_branch:
            self.branch += 1
            return
        if self._branches is None:
            self._branches = self.branch + 1
        direction = (timestep > last) - (timestep < last)
        if direction:
            if self._direction == 0:
                self._direction = direction
            elif direction != self._direction:
                self._start_generation(timestep)
                return
        self._last_timestep = timestep
        self._step_batch = batch
        self.step += 1
        self.branch = 0

    def _start_generation(self, timestep: float | None, previous_steps: int | None = None) -> None:
        previous_steps = self.step + 1 if previous_steps is None else previous_steps
        self.generations += 1
        self.step = 0
        self.branch = 0
        self._last_timestep = timestep
        self._branches = None
        self._direction = 0
        self._on_new_generation(previous_steps)
