import pytest

from tests.broker import Broker, Subscriber
from tests.e2e.harness import Sim, example_config, fast_config


@pytest.fixture
def broker():
    b = Broker().start()
    yield b
    b.stop()


@pytest.fixture
def sub(broker):
    s = Subscriber(broker.port, "qterm/#")
    yield s
    s.stop()


@pytest.fixture
def sim(broker):
    s = Sim(broker.port, example_config()).start()
    yield s
    s.cleanup()


@pytest.fixture
def hall(broker):
    """A simulator whose printer settles fast (queue and ticket scenarios)."""
    s = Sim(broker.port, fast_config()).start()
    yield s
    s.cleanup()
