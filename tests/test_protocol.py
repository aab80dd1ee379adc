"""The generated gRPC code matches dataclay.proto."""
from pathlib import Path

from dataclay.protocol.generate import SOURCE_ROOT, generate


def test_generated_code_is_fresh(tmp_path: Path):
    for fresh in generate(tmp_path):
        committed = SOURCE_ROOT / fresh.relative_to(tmp_path)
        assert committed.read_text() == fresh.read_text(), (
            f"{committed} is stale: run `python -m dataclay.protocol.generate`"
        )
