"""Face backends: ``dlib`` (embedded, offline default) and ``insightface`` (production)."""

from likeness.faces.types import Analyzer, Face

__all__ = ["Analyzer", "Face"]
