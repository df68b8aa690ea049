"""`@job`: turning a function into a typed, named job definition, and the registry of them.

- `options`: the options `@job(...)` declares (`JobOptions`), written once.
- `definition`: `JobDefinition`, those options plus what the function's signature says.
- `registry`: `Registry`, `@job`, and the dispatcher a registry's `.delay()` is bound to.
- `importing`: importing the module that defines the jobs, by dotted path.
"""

from jobworker.definitions.definition import JobDefinition, build_definition
from jobworker.definitions.importing import import_object
from jobworker.definitions.options import (
    NAME_PATTERN,
    JobOptionKeywords,
    JobOptions,
    parse_options,
)
from jobworker.definitions.registry import (
    Dispatcher,
    JobFunction,
    Registry,
    default_registry,
    job,
)

__all__ = [
    "NAME_PATTERN",
    "Dispatcher",
    "JobDefinition",
    "JobFunction",
    "JobOptionKeywords",
    "JobOptions",
    "Registry",
    "build_definition",
    "default_registry",
    "import_object",
    "job",
    "parse_options",
]
