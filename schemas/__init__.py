"""Wire format shared by the server and the device: pure marshmallow, no Flask or SQLAlchemy.

`client_sync` validates a visit note on the phone with the very schema the server uses.
"""
