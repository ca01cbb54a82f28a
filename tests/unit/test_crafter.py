from datetime import UTC, datetime

import pytest

from api.crafter import attachment_json, format_file_size
from storage.records import Attachment, Upload
from tests.samples import CRAFTER_FILE_SIZES


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        *CRAFTER_FILE_SIZES,
        (-5, "0"),
        (1, "1 B"),
        (3 * 1024**3, "3 GB"),
        (1024**4 + 1024**4 // 4, "1.2 TB"),
    ],
)
def test_file_size_matches_crafters_table(size: int, expected: str) -> None:
    assert format_file_size(size) == expected


def test_attachment_json_has_exactly_crafters_fields() -> None:
    now = datetime.now(UTC)
    att = Attachment(
        id="a" * 24,
        profile_id="b" * 24,
        file_name="picture1",
        current_upload_id=None,
        created_at=now,
    )
    up = Upload(
        seq=1,
        id="c" * 32,
        attachment_id=att.id,
        state="staged",
        reason=None,
        original_name="picture1.jpg",
        md5="498a1e16be56873ef53a1a61295d1781",
        sha256="0" * 64,
        size=23193,
        declared_type="image/jpeg",
        sniffed_type="image/jpeg",
        detected_type=None,
        staging_key="k",
        object_key=None,
        quarantine_key=None,
        signature=None,
        engine_version=None,
        signature_version=None,
        rescan_queued_version=None,
        attempts=0,
        resend_after=None,
        created_at=now,
        updated_at=now,
        scanned_at=None,
        verified_at=None,
        finished_at=None,
    )
    assert attachment_json(att, up) == {
        "md5": "498a1e16be56873ef53a1a61295d1781",
        "contentType": "image/jpeg",
        "fileSize": "22.6 KB",
        "fileName": "picture1",
        "fileSizeBytes": 23193,
        "id": "a" * 24,
    }
