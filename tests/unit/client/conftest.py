"""Client unit tests use the shared test model (tests/models) in memory: no runtime, no network."""
import sys
from pathlib import Path

MODELS = Path(__file__).resolve().parents[2] / "models"
if str(MODELS) not in sys.path:
    sys.path.insert(0, str(MODELS))
