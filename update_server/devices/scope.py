"""Which devices a person sees (R6 least privilege, R9).

An administrator sees every device. A technician sees the devices of the
sites their scope holds (``fwserver user scope``), and nothing else: a
device of another site is "not found" to them, never "forbidden", so a
technician of one hospital cannot even learn that another's device exists.
Everyone else sees no device. Reused by every view and page that lists or
acts on devices.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, delete, false, select
from sqlalchemy.orm import Session

from update_server.devices.models import Device, TechnicianSite
from update_server.models import Role, User


def sites_of(db: Session, user: User) -> list[str]:
    """The sites in ``user``'s scope, sorted."""
    rows = db.scalars(
        select(TechnicianSite.site)
        .where(TechnicianSite.user_id == user.id)
        .order_by(TechnicianSite.site)
    )
    return list(rows)


def visible_to(db: Session, user: User, query: Select[Any]) -> Select[Any]:
    """``query`` (over ``Device``) narrowed to the devices ``user`` may see."""
    if user.role == Role.ADMIN:
        return query
    if user.role == Role.TECHNICIAN:
        return query.where(Device.site.in_(sites_of(db, user)))
    return query.where(false())


def in_scope(db: Session, user: User, device: Device) -> bool:
    if user.role == Role.ADMIN:
        return True
    return user.role == Role.TECHNICIAN and device.site in sites_of(db, user)


def set_sites(db: Session, user: User, sites: list[str]) -> None:
    """Replace ``user``'s scope by ``sites`` (empty: no device at all)."""
    db.execute(delete(TechnicianSite).where(TechnicianSite.user_id == user.id))
    for site in sorted(set(sites)):
        db.add(TechnicianSite(user_id=user.id, site=site))
    db.flush()
