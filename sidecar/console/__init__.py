"""The on-call console: one place on the admin listener that says what is wrong now, for people at night.

In: the state the other flows already keep (probe results and the health model, the request-duration
histogram, the correlation index, the log pipeline, the Sentry forwarder) and, on demand only, BullMQ's
failed jobs. Out: server-rendered HTML pages at ``/console`` with a small hand-written ES module
(``static/``) that refreshes their live parts by short polling, and on the Overview also when a
Server-Sent Event says a status changed. No CDN, no build step, no third-party
script; a strict Content-Security-Policy. Only ``settings`` is imported at start-up by the root
configuration; ``wiring`` loads with the admin app when the console is enabled, and the pages
(``handlers`` and what it imports) on the first console request.

- ``settings``: the ``console:`` section (on/off, history length, links to a trace viewer and Sentry).
- ``wiring``: builds the state on the admin app, starts the traffic sampler, routes ``/console``.
- ``state``: the one object under the ``CONSOLE`` app key that every page reads.
- ``history``: a bounded ring of each check's recent results; when readiness and each check last changed.
- ``traffic``: per-route 1/5/15-minute windows from snapshots of the duration histogram; recent requests.
- ``queues``: per-queue figures from the latest probe samples; BullMQ's failed jobs read on demand.
- ``errors``: the newest Sentry events forwarded or relayed (the forwarder's observers).
- ``tail``: the Logs page's live tail, a log pipeline sink only while someone watches.
- ``auth``: the login cookie, CSRF tokens, bearer fallback, failed-login throttle.
- ``handlers``: the dispatcher, security headers, login, pages, actions and static files.
- ``views``: each page's body and its live part; ``render``: the layout, escaping, times, sparklines.
- ``static/`` and ``templates/``: the stylesheet, the script and the page layout, shipped as package data.
"""
