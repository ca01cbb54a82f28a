"""issue 23: quarantine_audit, the append-only trail of releases from quarantine and purges of
their evidence (who, when, why, which verdict); webhook secrets encrypted at rest with
ATTACHD_WEBHOOK_SECRET_KEY (wider columns, the stored ones sealed)

Revision ID: 0009
Revises: 0005, 0006, 0007
Create Date: 2026-12-06
"""

from __future__ import annotations

import os
from collections.abc import Callable

import sqlalchemy as sa
from alembic import op
from cryptography.fernet import Fernet, MultiFernet

# Self-contained on purpose (a migration must not change when the app's code does): the format
# of storage/secretbox.py, Fernet under the first key of the variable, "whsec_…" in the clear.
_KEY_VAR = "ATTACHD_WEBHOOK_SECRET_KEY"
_CLEAR = "whsec_"
_subs = sa.table(
    "webhook_subscriptions",
    sa.column("id", sa.String),
    sa.column("secret", sa.Text),
    sa.column("previous_secret", sa.Text),
)

revision = "0009"
# Every head of its day (the branches were built side by side): one head after it.
down_revision = ("0005", "0006", "0007")
branch_labels = None
depends_on = None

# Releases and purges made before the trail existed: the last release of each upload (an earlier
# one was overwritten by it, and is lost) and every purge, whose actor was never recorded.
_EARLIER = """
INSERT INTO quarantine_audit
    (upload_id, tenant, profile_id, file_name, action, actor, reason, signature,
     signature_version, at)
SELECT upload_id, tenant, profile_id, file_name, action, actor, reason, signature,
       signature_version, at
FROM (
    SELECT u.id AS upload_id, p.tenant AS tenant, p.id AS profile_id, a.file_name AS file_name,
           'released' AS action, COALESCE(u.released_by, 'unknown') AS actor,
           COALESCE(u.release_reason, '') AS reason, u.signature AS signature,
           u.signature_version AS signature_version, u.released_at AS at
    FROM uploads u
    JOIN attachments a ON a.id = u.attachment_id
    JOIN profiles p ON p.id = a.profile_id
    WHERE u.released_at IS NOT NULL
    UNION ALL
    SELECT u.id, p.tenant, p.id, a.file_name, 'purged', 'unknown (before the audit trail)',
           '', u.signature, u.signature_version, u.purged_at
    FROM uploads u
    JOIN attachments a ON a.id = u.attachment_id
    JOIN profiles p ON p.id = a.profile_id
    WHERE u.purged_at IS NOT NULL
) earlier
ORDER BY at
"""


def _fernet(why: str) -> MultiFernet:
    keys = [k.strip() for k in os.environ.get(_KEY_VAR, "").split(",") if k.strip()]
    if not keys:
        raise RuntimeError(
            f"{_KEY_VAR} is not set and {why}: set it (a Fernet key: "
            "python3 -c 'import base64,secrets; "
            "print(base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())') and migrate again"
        )
    return MultiFernet([Fernet(k.encode()) for k in keys])


def _rewrite(change: Callable[[str], str], clear: bool) -> None:
    """Every stored secret through `change`: those in the clear (upgrade) or not (downgrade)."""
    conn = op.get_bind()
    rows = conn.execute(sa.select(_subs.c.id, _subs.c.secret, _subs.c.previous_secret)).all()
    for sub_id, secret, previous in rows:
        values = {
            name: change(value)
            for name, value in (("secret", secret), ("previous_secret", previous))
            if value and value.startswith(_CLEAR) == clear
        }
        if values:
            conn.execute(sa.update(_subs).where(_subs.c.id == sub_id).values(**values))


def _has_clear_secrets() -> bool:
    conn = op.get_bind()
    return bool(
        conn.execute(
            sa.select(sa.func.count())
            .select_from(_subs)
            .where(
                sa.or_(
                    _subs.c.secret.like(_CLEAR + "%"), _subs.c.previous_secret.like(_CLEAR + "%")
                )
            )
        ).scalar_one()
    )


def upgrade() -> None:
    # A sealed secret is ~170 characters.
    with op.batch_alter_table("webhook_subscriptions") as batch:
        batch.alter_column("secret", type_=sa.Text, existing_nullable=False)
        batch.alter_column("previous_secret", type_=sa.Text, existing_nullable=True)
    if _has_clear_secrets():
        fernet = _fernet("webhook secrets are stored in the clear")
        _rewrite(lambda value: fernet.encrypt(value.encode()).decode(), clear=True)
    op.create_table(
        "quarantine_audit",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("upload_id", sa.String(32), nullable=False),
        sa.Column("tenant", sa.String(255), nullable=True),
        sa.Column("profile_id", sa.String(24), nullable=True),
        sa.Column("file_name", sa.String(255), nullable=True),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("actor", sa.String(255), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("signature", sa.String(255), nullable=True),
        sa.Column("signature_version", sa.Integer, nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_quarantine_audit_upload", "quarantine_audit", ["upload_id"])
    op.create_index("ix_quarantine_audit_tenant", "quarantine_audit", ["tenant", "seq"])
    op.execute(_EARLIER)


def downgrade() -> None:
    op.drop_index("ix_quarantine_audit_tenant", "quarantine_audit")
    op.drop_index("ix_quarantine_audit_upload", "quarantine_audit")
    op.drop_table("quarantine_audit")
    # Back in the clear, as the code before 0009 reads them.
    conn = op.get_bind()
    if conn.execute(sa.select(sa.func.count()).select_from(_subs)).scalar_one():
        fernet = _fernet("the stored webhook secrets are encrypted")
        _rewrite(lambda value: fernet.decrypt(value.encode()).decode(), clear=False)
    with op.batch_alter_table("webhook_subscriptions") as batch:
        batch.alter_column("secret", type_=sa.String(128), existing_nullable=False)
        batch.alter_column("previous_secret", type_=sa.String(128), existing_nullable=True)
