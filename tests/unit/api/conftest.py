import pytest

from strom import StreamExecutionEnvironment


@pytest.fixture(params=[1, 4], ids=["p1", "p4"])
def env(request: pytest.FixtureRequest) -> StreamExecutionEnvironment:
    e = StreamExecutionEnvironment.get_execution_environment()
    e.set_parallelism(request.param)
    # small batches so records really cross channels in several batches
    e.set_batch_size(7)
    return e
