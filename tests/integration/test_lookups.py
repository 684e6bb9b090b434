"""One look-up of a list by name and of a member by address, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from mailforum.core import lists
from mailforum.db.models import Visibility
from mailforum.db.queries import list_named
from mailforum.errors import NotFound


def test_a_list_is_found_by_its_stored_name_public_or_not(site):
    site.create_list("dev")
    site.create_list("staff", visibility=Visibility.PRIVATE)
    with site.db.session() as session:
        assert list_named(session, "dev").name == "dev"
        assert list_named(session, "dev", public=True).name == "dev"
        assert list_named(session, "staff").name == "staff"
        assert list_named(session, "staff", public=True) is None
        assert list_named(session, "dev", lock=True).name == "dev"
        assert list_named(session, "nosuch") is None
        # What a person typed is normalised by the caller that reads it.
        assert lists.get_list(session, " Dev ").name == "dev"
        assert lists.list_by_name(session, "dev") is lists.list_by_name(session, "dev")
        with pytest.raises(NotFound):
            lists.get_list(session, "nosuch")


def test_a_member_is_found_by_address_whatever_its_case(site):
    site.create_list("dev")
    site.add_members("dev", "ann@example.com")
    with site.db.session() as session:
        mlist = lists.get_list(session, "dev")
        assert lists.find_member(session, mlist.id, "Ann@Example.COM").address == "ann@example.com"
        assert lists.find_member(session, mlist.id, "") is None
        assert lists.find_member(session, mlist.id, "bob@example.com") is None
