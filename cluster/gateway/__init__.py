"""The QLDB gateway behind `strand serve`: QLDB's own protocols in front of Strand's ledgers.

`control.py` answers the `qldb` control plane (REST-JSON: ledgers, tags, digests, blocks and
revisions with proofs); the HTTP server routes every request that is not a QLDB Session call
to `control.handle_control`.
"""
