"""create_session: the options every lowbit session shares."""

from __future__ import annotations

import numpy as np

from lowbit.runtime.ort import create_session
from tests.models import small_resnet


def test_sessions_stop_spinning_when_a_run_returns() -> None:
    """A session left spinning holds the cores while the next one runs: every timed
    comparison lowbit makes interleaves sessions (lowbit.analysis.bench)."""
    model = small_resnet()
    for threads in (None, 2):
        session = create_session(model, threads=threads)
        options = session.get_session_options()
        assert options.get_session_config_entry("session.force_spinning_stop") == "1"
        name = session.get_inputs()[0].name
        shape = [1 if not isinstance(d, int) else d for d in session.get_inputs()[0].shape]
        first = session.run(None, {name: np.ones(shape, np.float32)})[0]
        again = session.run(None, {name: np.ones(shape, np.float32)})[0]
        np.testing.assert_array_equal(first, again)  # runs on after its workers stopped
