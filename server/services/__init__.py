"""Use cases. Each takes a session and the acting user, checks permissions, applies the domain
rules, writes, and appends to the audit log, all in the caller's transaction (callers commit)."""
