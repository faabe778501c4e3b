"""Arbitrary bytes in every recorded header, the path and JSON bodies never stop the server.

Hypothesis draws the requests (tests/fixtures/input_fuzz.py) and sends them over raw sockets to
one real server on the demo models; after each, the server must still answer `/health` and a
demo model request (the run loop is alive). No answer may be a 5xx: the demo's upstream answers
any body it cannot read with a 4xx, so a 5xx can only be our own failure. The benchmark
(bench/faults_fuzz.py) runs the same with >= 1,000 examples.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, Phase, given, settings

from tests.fixtures.input_fuzz import FuzzCase, exchange, fuzz_cases, loop_alive, own_tracebacks
from tests.fixtures.server import RunningServer, demo_server

EXAMPLES = 80


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with demo_server(tmp_path_factory.mktemp("input-fuzz"), "input-fuzz") as running:
        yield running


def test_arbitrary_bytes_get_a_4xx_at_worst_and_the_loop_keeps_serving(server) -> None:
    assert loop_alive(server.port) is None  # loads the demo model once, before the clock runs

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.generate, Phase.shrink],
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(fuzz_cases())
    def answered_and_alive(case: FuzzCase) -> None:
        answer = exchange(server.port, case.raw)
        server.output()  # drain its stderr (parse errors are logged) so it never blocks
        assert 0 < answer.status < 500, (answer.status, answer.body[:300])
        assert loop_alive(server.port) is None

    answered_and_alive()
    unexpected = own_tracebacks(server.output())
    assert not unexpected, "\n\n".join(unexpected)
