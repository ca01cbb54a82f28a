"""The clamd reply grammar, against replies captured from clamd 1.4."""

from datetime import UTC, datetime

import pytest

from core.clamd import EngineVersion, _verdict
from core.errors import ScanError, ScanLimitExceeded


def test_version_with_a_signature_database() -> None:
    v = EngineVersion.parse("ClamAV 1.4.6/27852/Thu Nov 26 09:40:14 2026")
    assert v.engine == "ClamAV 1.4.6"
    assert v.signatures == 27852
    assert v.published == datetime(2026, 11, 26, 9, 40, 14, tzinfo=UTC)
    assert v.age_seconds(datetime(2026, 11, 26, 10, 40, 14, tzinfo=UTC)) == 3600


def test_version_without_a_signature_database() -> None:
    v = EngineVersion.parse("ClamAV 1.4.6")
    assert (v.engine, v.signatures, v.published) == ("ClamAV 1.4.6", None, None)


def test_verdicts() -> None:
    assert _verdict("stream: OK", "e").infected is False
    found = _verdict("stream: Attachd.Test.EICAR-Body.UNOFFICIAL FOUND", "e")
    assert found.infected and found.signature == "Attachd.Test.EICAR-Body.UNOFFICIAL"
    with pytest.raises(ScanLimitExceeded):
        _verdict("INSTREAM size limit exceeded. ERROR", "e")
    with pytest.raises(ScanLimitExceeded):
        _verdict("stream: Heuristics.Limits.Exceeded.MaxFileSize FOUND", "e")
    with pytest.raises(ScanError):
        _verdict("Can't allocate memory ERROR", "e")
    with pytest.raises(ScanError):
        _verdict("something else", "e")
