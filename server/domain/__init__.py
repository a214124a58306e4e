"""Pure rules of the domain: no Flask, no SQLAlchemy, no clock reads (times are passed in)."""
