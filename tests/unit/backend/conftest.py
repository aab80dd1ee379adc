"""Backend unit tests run real stores and runtimes in-process; the backends import model
classes by module path, so the shared test model (tests/models) goes on the import path."""
import sys
from pathlib import Path

MODELS = Path(__file__).resolve().parents[2] / "models"
if str(MODELS) not in sys.path:
    sys.path.insert(0, str(MODELS))

