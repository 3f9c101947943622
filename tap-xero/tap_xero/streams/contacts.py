"""Contacts and contact groups."""

from __future__ import annotations

from tap_xero.client import XeroStream


class ContactsStream(XeroStream):
    """Archived contacts are hidden unless asked for: ask, so destinations see them."""

    name = "contacts"
    collection = "Contacts"
    id_field = "ContactID"
    paging = "page_size"
    modified_since = True
    ordered = True
    replication_key = "UpdatedDateUTC"
    include_archived = True
    webhook_fetch = "IDs"


class ContactGroupsStream(XeroStream):
    name = "contact_groups"
    collection = "ContactGroups"
    id_field = "ContactGroupID"
