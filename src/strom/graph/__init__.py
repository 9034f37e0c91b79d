"""From the API's transformations to the runtime's ``JobGraph``: parallelism resolution,
partitioning defaults, operator chaining. The API builds transformations; ``translate`` turns
them into the job graph that ``strom.runtime`` executes."""

from strom.graph.transformations import (
    PartitionTransformation,
    PhysicalTransformation,
    SideOutputTransformation,
    SourceTransformation,
    Transformation,
    UnionTransformation,
)
from strom.graph.translate import translate

__all__ = [
    "PartitionTransformation",
    "PhysicalTransformation",
    "SideOutputTransformation",
    "SourceTransformation",
    "Transformation",
    "UnionTransformation",
    "translate",
]
