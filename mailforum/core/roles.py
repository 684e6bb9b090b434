"""Who may run what: site admins (every list), list owners (one list), moderators.

The roles nest: a site admin counts as an owner of every list, and an owner as a
moderator of their list. Addresses are stored and compared lower-cased.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from mailforum.db.models import ListOwner, MailingList, Moderator, SiteAdmin


def _lower(addresses: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(a.strip().lower() for a in addresses if a.strip()))


def is_admin(session: Session, address: str) -> bool:
    found = session.scalar(select(SiteAdmin.id).where(SiteAdmin.address == address.lower()))
    return found is not None


def is_owner(session: Session, mailing_list: MailingList, address: str) -> bool:
    """An owner of this list, or a site admin."""
    found = session.scalar(
        select(ListOwner.id).where(ListOwner.list_id == mailing_list.id, ListOwner.address == address.lower())
    )
    return found is not None or is_admin(session, address)


def is_moderator(session: Session, mailing_list: MailingList, address: str) -> bool:
    """A moderator or owner of this list, or a site admin."""
    found = session.scalar(
        select(Moderator.id).where(Moderator.list_id == mailing_list.id, Moderator.address == address.lower())
    )
    return found is not None or is_owner(session, mailing_list, address)


def admins(session: Session) -> list[str]:
    return list(session.scalars(select(SiteAdmin.address).order_by(SiteAdmin.id)))


def add_admins(session: Session, addresses: Iterable[str]) -> list[str]:
    """Make these addresses site admins; the ones that were not already."""
    have = set(admins(session))
    added = [a for a in _lower(addresses) if a not in have]
    session.add_all(SiteAdmin(address=a) for a in added)
    return added


def remove_admins(session: Session, addresses: Iterable[str]) -> list[str]:
    """Take the role from these addresses; the ones that had it."""
    gone = [a for a in _lower(addresses) if a in set(admins(session))]
    if gone:
        session.execute(delete(SiteAdmin).where(SiteAdmin.address.in_(gone)))
    return gone


def owners(session: Session, mailing_list: MailingList) -> list[str]:
    return list(
        session.scalars(
            select(ListOwner.address).where(ListOwner.list_id == mailing_list.id).order_by(ListOwner.id)
        )
    )


def owned_lists(session: Session, address: str) -> list[MailingList]:
    """The lists this address owns (every list for a site admin), by name."""
    query = select(MailingList).order_by(MailingList.name)
    if not is_admin(session, address):
        owned = select(ListOwner.list_id).where(ListOwner.address == address.lower())
        query = query.where(MailingList.id.in_(owned))
    return list(session.scalars(query))


def add_owners(session: Session, mailing_list: MailingList, addresses: Iterable[str]) -> list[str]:
    have = set(owners(session, mailing_list))
    added = [a for a in _lower(addresses) if a not in have]
    session.add_all(ListOwner(list_id=mailing_list.id, address=a) for a in added)
    return added


def remove_owners(session: Session, mailing_list: MailingList, addresses: Iterable[str]) -> list[str]:
    gone = [a for a in _lower(addresses) if a in set(owners(session, mailing_list))]
    if gone:
        session.execute(
            delete(ListOwner).where(ListOwner.list_id == mailing_list.id, ListOwner.address.in_(gone))
        )
    return gone


def moderated_lists(session: Session, address: str) -> list[MailingList]:
    """The lists this address moderates, owns, or (a site admin) may run: by name."""
    if is_admin(session, address):
        return owned_lists(session, address)
    address = address.lower()
    moderated = select(Moderator.list_id).where(Moderator.address == address)
    owned = select(ListOwner.list_id).where(ListOwner.address == address)
    return list(
        session.scalars(
            select(MailingList)
            .where(MailingList.id.in_(moderated) | MailingList.id.in_(owned))
            .order_by(MailingList.name)
        )
    )
