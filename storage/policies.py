"""Tenants' upload policies (core.policy.TenantPolicy): one row per tenant that has one."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, insert, select, update

from core.errors import NoSuchTenant
from core.policy import TenantPolicy
from storage.engine import EngineBound, utcnow
from storage.schema import tenant_policies, tenants


class Policies(EngineBound):
    def tenant_policy(self, tenant: str) -> TenantPolicy | None:
        with self.reading() as conn:
            row = conn.execute(
                select(tenant_policies).where(tenant_policies.c.tenant == tenant)
            ).first()
        if row is None:
            return None
        types = row.allowed_types
        return TenantPolicy(
            tenant=row.tenant,
            max_upload_size=row.max_upload_size,
            allowed_types=tuple(types) if types is not None else None,
        )

    def set_tenant_policy(
        self,
        tenant: str,
        *,
        max_upload_size: int | None = None,
        allowed_types: Sequence[str] | None = None,
    ) -> TenantPolicy:
        """Set the given fields, keeping the others as they were."""
        values: dict[str, object] = {"updated_at": utcnow()}
        if max_upload_size is not None:
            values["max_upload_size"] = max_upload_size
        if allowed_types is not None:
            values["allowed_types"] = list(allowed_types)
        with self.transaction() as conn:
            if conn.execute(select(tenants.c.id).where(tenants.c.name == tenant)).first() is None:
                raise NoSuchTenant(tenant)
            changed = conn.execute(
                update(tenant_policies).where(tenant_policies.c.tenant == tenant).values(**values)
            ).rowcount
            if not changed:
                conn.execute(insert(tenant_policies).values(tenant=tenant, **values))
        policy = self.tenant_policy(tenant)
        assert policy is not None
        return policy

    def clear_tenant_policy(self, tenant: str) -> None:
        with self.transaction() as conn:
            conn.execute(delete(tenant_policies).where(tenant_policies.c.tenant == tenant))
