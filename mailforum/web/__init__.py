"""The web: its endpoints, grouped by kind, and how posts and values read in a browser.

``runners/web.py`` builds the Starlette app from ``ROUTES`` and serves it; the
endpoints are here, one class per group, each built with the one ``WebContext``:

- ``context.py``        WebContext: links, templates to responses, ETag/304, list and topic look-ups (404)
- ``archive_pages.py``  ArchivePages: the lists, topics, a topic, permalinks, search, months
- ``feeds.py``          Feeds: Atom feeds, mbox downloads, attachments
- ``subscribe.py``      SubscribeForms: the join and watch forms
- ``links.py``          SignedLinks: confirm, unsubscribe, enable delivery, moderate
- ``forms.py``          what forms need: CSRF tokens, rate limits, reading a POST, the hand-off
- ``body.py``, ``formats.py``  pure presentation: post bodies, template filters, mbox, headers

Endpoints hold no SQL: they call ``db/queries.py`` and ``core/``.
"""
