"""Outgoing e-mail: an outbox table written in the caller's transaction, rendered from templates,
and sent (with retries) by the scheduler's sender job. It knows nothing of referrals.

    outbox.enqueue()   queue a message once per dedupe key, in the caller's transaction
    render.render()    a template under server/templates/mail/ → subject, text, HTML
    render.build()     a queued message → a multipart text + HTML message (UTF-8, Auto-Submitted)
    transport          where messages go: .eml files (development) or SMTP
    sender.send_due()  claim due messages, send, record; retries with backoff; never lost

The whole design, with the retry policy and what a crash can do, is in docs/scheduler-and-mail.md.
"""
