"""``StreamExecutionEnvironment``: where a job starts (sources) and how it runs (execute).

The environment only records transformations and settings; ``execute`` translates them into a
``JobGraph`` and hands it to the local executor. It owns no running state.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from strom.api.datastream import DataStream
from strom.connectors.base import Source
from strom.errors import InvalidJobError
from strom.eventtime import WatermarkStrategy
from strom.functions import ParallelSourceFunction, SourceFunction
from strom.graph import SourceTransformation, Transformation, translate
from strom.graph.transformations import per_subtask_copy
from strom.runtime.checkpoint import CheckpointConfig, CheckpointingMode
from strom.runtime.executor import LocalJobClient
from strom.runtime.job import JobClient, JobExecutionResult
from strom.runtime.jobgraph import JobConfig, JobGraph
from strom.runtime.keygroups import DEFAULT_MAX_PARALLELISM
from strom.runtime.operators.sources import SourceFunctionOperator, SourceReaderOperator
from strom.runtime.restart import RestartStrategy
from strom.runtime.state import StateSerializer, check_state_backend

if TYPE_CHECKING:
    from strom.api.collect import CloseableIterator

T = TypeVar("T")
log = logging.getLogger("strom")


def _check_positive(name: str, value: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidJobError(f"{name} must be a positive integer, got {value!r}")
    return value


class StreamExecutionEnvironment:
    """Entry point of every job (PyFlink's ``StreamExecutionEnvironment``)."""

    _default_parallelism = 1
    """Parallelism of environments created from now on, unless they set their own."""

    _default_restore: tuple[str, bool] | None = None
    """``(path, allow_non_restored_state)`` every new environment restores from, if set."""

    def __init__(self) -> None:
        self._parallelism = StreamExecutionEnvironment._default_parallelism
        self._max_parallelism = DEFAULT_MAX_PARALLELISM
        self._config = JobConfig()
        if StreamExecutionEnvironment._default_restore is not None:
            path, allow = StreamExecutionEnvironment._default_restore
            self.restore_from(path, allow_non_restored_state=allow)
        self._transformations: list[Transformation] = []
        self._sinks: list[Transformation] = []
        self._next_id = 0

    @staticmethod
    def get_execution_environment() -> StreamExecutionEnvironment:
        return StreamExecutionEnvironment()

    @classmethod
    def set_default_parallelism(cls, parallelism: int) -> None:
        """Process-wide default parallelism of every environment created afterwards.

        This is how ``strom run --parallelism N`` reaches a job without editing it (Flink's
        ``flink run -p``); an environment's own ``set_parallelism`` still takes precedence.
        """
        StreamExecutionEnvironment._default_parallelism = _check_positive(
            "default parallelism", parallelism
        )

    @classmethod
    def set_default_restore(
        cls, path: str | None, *, allow_non_restored_state: bool = False
    ) -> None:
        """Process-wide restore point of every environment created afterwards: how
        ``strom run --from-checkpoint/--from-savepoint`` reaches a job without editing it."""
        StreamExecutionEnvironment._default_restore = (
            None if path is None else (path, allow_non_restored_state)
        )

    # -- settings -------------------------------------------------------------------------
    def set_parallelism(self, parallelism: int) -> StreamExecutionEnvironment:
        self._parallelism = _check_positive("parallelism", parallelism)
        return self

    def get_parallelism(self) -> int:
        return self._parallelism

    def set_max_parallelism(self, max_parallelism: int) -> StreamExecutionEnvironment:
        """Number of key groups: the upper bound of parallelism a job can be rescaled to."""
        self._max_parallelism = _check_positive("max parallelism", max_parallelism)
        return self

    def get_max_parallelism(self) -> int:
        return self._max_parallelism

    def set_batch_size(self, batch_size: int) -> StreamExecutionEnvironment:
        """Records per batch that sources emit (default 1024)."""
        self._config.batch_size = _check_positive("batch size", batch_size)
        return self

    def set_buffer_timeout(self, timeout_ms: int) -> StreamExecutionEnvironment:
        """How long a push-style source may hold a partial batch before it is emitted."""
        if timeout_ms < 0:
            raise InvalidJobError(f"buffer timeout must be >= 0 ms, got {timeout_ms}")
        self._config.flush_interval = max(timeout_ms, 1) / 1000
        return self

    def set_auto_watermark_interval(self, interval_ms: int) -> StreamExecutionEnvironment:
        """How often periodic watermark generators are asked for a watermark (default 200)."""
        self._config.auto_watermark_interval_ms = _check_positive(
            "auto watermark interval", interval_ms
        )
        return self

    def set_processing_time_clock(self, clock: Callable[[], int]) -> StreamExecutionEnvironment:
        """Use ``clock()`` (ms) as processing time, e.g. ``strom.testing.ManualClock``."""
        self._config.processing_time = clock
        return self

    def set_state_backend(
        self,
        backend: str,
        *,
        directory: str | os.PathLike[str] | None = None,
        cache_size: int | None = None,
        serializer: StateSerializer | None = None,
    ) -> StreamExecutionEnvironment:
        """Where keyed state lives: ``"heap"`` (default; dicts in memory) or ``"disk"`` (an
        embedded LMDB store per operator subtask behind an in-memory cache, for state larger
        than memory; needs ``pip install 'strom[state-disk]'``).

        Both backends behave the same and write the same checkpoints, so a job may switch
        between them across a restore. For ``"disk"``: ``directory`` holds the per-subtask
        stores (default: the working directory; each is removed when its task ends),
        ``cache_size`` is the number of entries per state kept in memory (default 10,000).
        ``serializer`` (both backends) turns state into bytes for checkpoints and savepoints,
        and for the disk backend's stores (default: pickle protocol 5, any Python value; any
        object with ``dumps``/``loads``). A checkpoint names its serializer and restores only
        with the same one.
        """
        try:
            check_state_backend(backend)
        except ValueError as e:
            raise InvalidJobError(str(e)) from None
        if backend != "disk" and (directory is not None or cache_size is not None):
            raise InvalidJobError("directory and cache_size only apply to the 'disk' state backend")
        if cache_size is not None:
            _check_positive("state cache size", cache_size)
        if serializer is not None and not isinstance(serializer, StateSerializer):
            raise InvalidJobError(
                f"serializer must have dumps(value) -> bytes and loads(bytes), got {serializer!r}"
            )
        self._config.state_backend = backend
        self._config.state_dir = None if directory is None else os.fspath(directory)
        self._config.state_cache_size = cache_size
        self._config.state_serializer = serializer
        return self

    def get_state_backend(self) -> str:
        return self._config.state_backend

    def set_job_parameters(self, **parameters: str) -> StreamExecutionEnvironment:
        self._config.job_parameters.update({k: str(v) for k, v in parameters.items()})
        return self

    # -- fault tolerance ------------------------------------------------------------------
    def enable_checkpointing(
        self, interval: int, mode: CheckpointingMode = CheckpointingMode.EXACTLY_ONCE
    ) -> StreamExecutionEnvironment:
        """Take a checkpoint every ``interval`` ms. Sources keep replayable positions and
        operators their state in it; on failure the job restarts from the latest one."""
        self._config.checkpoint.set_checkpoint_interval(interval)
        self._config.checkpoint.set_checkpointing_mode(mode)
        return self

    def get_checkpoint_config(self) -> CheckpointConfig:
        return self._config.checkpoint

    def get_checkpoint_interval(self) -> int:
        return self._config.checkpoint.interval_ms

    def set_restart_strategy(self, strategy: RestartStrategy) -> StreamExecutionEnvironment:
        """See ``RestartStrategies``; default: fixed delay (1 s, unlimited) with
        checkpointing, no restart without."""
        self._config.restart_strategy = strategy
        return self

    def restore_from(
        self, path: str, *, allow_non_restored_state: bool = False
    ) -> StreamExecutionEnvironment:
        """Start the next execution from a checkpoint or savepoint directory, or ``"latest"``
        (the newest completed checkpoint of this job name in the checkpoint storage).

        State is matched to operators by ``uid``; state that matches no operator is an error
        unless ``allow_non_restored_state``. The job may run at another parallelism.
        """
        self._config.restore_path = path
        self._config.allow_non_restored_state = allow_non_restored_state
        return self

    # -- building -------------------------------------------------------------------------
    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _register(self, t: Transformation) -> None:
        self._transformations.append(t)

    def _register_sink(self, t: Transformation) -> None:
        self._transformations.append(t)
        self._sinks.append(t)

    def from_source(
        self,
        source: Source[T],
        watermark_strategy: WatermarkStrategy | None = None,
        source_name: str | None = None,
    ) -> DataStream:
        """A stream read by a pull-based ``Source`` (all built-in connectors).

        ``watermark_strategy`` gives records event timestamps and generates watermarks, one
        generator per split (e.g. per Kafka partition); the minimum over active splits flows
        downstream.
        """
        if not isinstance(source, Source):
            raise InvalidJobError(
                f"from_source expects a strom.connectors.base.Source, got {type(source).__name__}"
                "; use add_source() for a SourceFunction"
            )
        if watermark_strategy is not None and not isinstance(watermark_strategy, WatermarkStrategy):
            raise InvalidJobError(f"expected a WatermarkStrategy, got {watermark_strategy!r}")
        name = source_name or source.describe()
        interval = self._config.auto_watermark_interval_ms
        t = SourceTransformation(
            id=self._new_id(),
            name=name,
            factory=lambda n: SourceReaderOperator(n, source, watermark_strategy, interval),
            parallelism_limit=source.max_parallelism,
            bounded=source.bounded,
            watermark_strategy=watermark_strategy,
        )
        self._register(t)
        return DataStream(self, t)

    def add_source(
        self, source_function: SourceFunction[T], source_name: str = "Custom Source"
    ) -> DataStream:
        """A stream produced by a push-style ``SourceFunction`` (seed §3.1–3.3).

        Only a ``ParallelSourceFunction`` may run with parallelism > 1.
        """
        if not isinstance(source_function, SourceFunction):
            raise InvalidJobError(
                f"add_source expects a SourceFunction, got {type(source_function).__name__}"
            )
        parallel = isinstance(source_function, ParallelSourceFunction)
        t = SourceTransformation(
            id=self._new_id(),
            name=source_name,
            factory=lambda n: SourceFunctionOperator(n, per_subtask_copy(source_function)),
            parallelism_limit=None if parallel else 1,
            bounded=False,
            timestamped_source=True,
        )
        self._register(t)
        return DataStream(self, t)

    def from_collection(self, collection: Iterable[T], type_info: Any = None) -> DataStream:
        """A bounded stream of the collection's elements (parallelism 1, exactly-once)."""
        from strom.connectors.collection import CollectionSource

        if isinstance(collection, str | bytes | dict):
            raise InvalidJobError(
                "from_collection expects a collection of elements, "
                f"got a {type(collection).__name__}"
            )
        return self.from_source(CollectionSource(collection), source_name="Collection Source")

    def from_elements(self, *elements: T) -> DataStream:
        return self.from_collection(list(elements))

    def socket_text_stream(
        self, hostname: str, port: int, delimiter: str = "\n", max_retry: int = 0
    ) -> DataStream:
        """Lines read from a TCP server (at-most-once). ``max_retry``: reconnect attempts after
        the connection ends (0: end the stream, -1: forever)."""
        from strom.connectors.socket import SocketTextSource

        return self.from_source(
            SocketTextSource(hostname, port, delimiter=delimiter, max_retry=max_retry),
            source_name=f"Socket Stream {hostname}:{port}",
        )

    def read_text_file(
        self, file_path: str, charset_name: str = "utf-8", monitor_interval: float | None = None
    ) -> DataStream:
        """Lines of a file or of all files in a directory (exactly-once with checkpoints).

        With ``monitor_interval`` (seconds) the directory is watched and new files are read as
        they appear; the stream is then unbounded.
        """
        from strom.connectors.file import FileSource

        return self.from_source(
            FileSource(file_path, encoding=charset_name, monitor_interval=monitor_interval),
            source_name=f"File Source {file_path}",
        )

    # -- running --------------------------------------------------------------------------
    def get_job_graph(self, job_name: str = "strom job") -> JobGraph:
        return translate(
            job_name,
            self._sinks,
            default_parallelism=self._parallelism,
            max_parallelism=self._max_parallelism,
            config=self._config,
        )

    def get_execution_plan(self, job_name: str = "strom job") -> str:
        return self.get_job_graph(job_name).describe()

    def execute_async(self, job_name: str = "strom job") -> JobClient:
        graph = self.get_job_graph(job_name)
        log.debug("submitting %s", graph.describe())
        # as in Flink, an executed topology is consumed: the next execute starts afresh
        self._transformations.clear()
        self._sinks.clear()
        return LocalJobClient(graph).start()

    def execute(self, job_name: str = "strom job") -> JobExecutionResult:
        """Run the job to completion (or failure). Ctrl-C cancels it cleanly."""
        client = self.execute_async(job_name)
        try:
            return client.wait()
        except KeyboardInterrupt:
            client.cancel()
            try:
                client.wait(timeout=30)
            except Exception:  # the KeyboardInterrupt is what the caller needs to see
                pass
            raise

    def _execute_and_collect(
        self, stream: DataStream, job_name: str, capacity: int = 64
    ) -> CloseableIterator[Any]:
        from strom.api.collect import CloseableIterator, CollectSink

        sink: CollectSink[Any] = CollectSink(capacity)
        stream.sink_to(sink).name("Collect Sink")
        return CloseableIterator(self.execute_async(job_name), sink)
