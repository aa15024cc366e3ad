"""The QLDB gateway behind `strand serve`: QLDB's own protocols in front of Strand's ledgers.

`server.py` is the aiohttp server (one port): body limits, then SigV4 (`sigv4.py`, botocore's
signer), then `X-Amz-Target: QLDBSession.SendCommand` to the session service (`session.py`,
its pure rules in `core/qldb_session.py`) and everything else to the `qldb` control plane
(`control.py`: ledgers, tags, digests, blocks and revisions with proofs, REST-JSON).
`serve.py` is the `strand serve` command. Unmodified pyqldb and boto3 `qldb` clients reach it
by setting `endpoint_url`.
"""
