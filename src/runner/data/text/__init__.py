"""Text data of the fawning (sycophancy) experiments: the internal format, induction and
neutralisation templates, readers of the external formats, the knowledge-base twin, data modules."""

from .format import TextExample, read_jsonl, write_jsonl_atomic
from .induction import DEFAULT_TEMPLATES, Neutraliser
from .twin import KnowledgeBaseTwin

__all__ = [
    "DEFAULT_TEMPLATES",
    "KnowledgeBaseTwin",
    "Neutraliser",
    "TextExample",
    "read_jsonl",
    "write_jsonl_atomic",
]
