"""SigV4 verification of incoming requests, with botocore's own signer.

Every request to `strand serve` (QLDB Session and control plane) must carry an AWS
Signature Version 4 `Authorization` header made with one of the configured access keys.
The expected signature is recomputed by botocore's `SigV4Auth` (its canonical request,
string to sign and signing key), fed the request exactly as it arrived: method, raw path and
query, the headers the client says it signed, and the body. Nothing of SigV4 is re-implemented
here except parsing the header and the checks around it.

Rules (as AWS applied them): any region is accepted; the service must be `qldb` (both
botocore's `qldb` and `qldb-session` clients sign with it); `host` and `x-amz-date` must be
signed, and `x-amz-target` too when present; the request time is within 15 minutes of the
server's clock and matches the credential's date; an `x-amz-content-sha256` header must be
the body's real SHA-256 (an UNSIGNED-PAYLOAD is refused), so the signature always covers
the body; presigned URLs (signature in the query) are not accepted.

Invariants: `verify` returns the access key (and region) only when the signature recomputed
with that key's secret equals the one given (compared in constant time); otherwise it raises
`AuthError` carrying AWS's error code and HTTP status, and no secret appears in any message.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

ALGORITHM = "AWS4-HMAC-SHA256"
SERVICE = "qldb"
MAX_SKEW = datetime.timedelta(minutes=15)
AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"


class AuthError(Exception):
    """A request refused before it was looked at: AWS's error code, status and message."""

    def __init__(self, code: str, status: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class Verified:
    """Who signed a request that verified, and for which region."""

    access_key: str
    region: str


@dataclass(frozen=True, slots=True)
class ParsedAuthorization:
    """The parts of an `Authorization: AWS4-HMAC-SHA256 ...` header."""

    access_key: str
    date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str


def _incomplete(message: str) -> AuthError:
    return AuthError("IncompleteSignatureException", 403, message)


def _mismatch() -> AuthError:
    return AuthError(
        "InvalidSignatureException",
        403,
        "The request signature we calculated does not match the signature you provided. "
        "Check your AWS Secret Access Key and signing method.",
    )


def parse_authorization(header: str) -> ParsedAuthorization:
    """Split the header; IncompleteSignatureException when a part is missing or malformed."""
    algorithm, _, rest = header.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise _incomplete(f"Authorization header must use {ALGORITHM}")
    parts: dict[str, str] = {}
    for item in rest.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep or key in parts:
            raise _incomplete("Authorization header is malformed")
        parts[key] = value
    missing = [k for k in ("Credential", "SignedHeaders", "Signature") if k not in parts]
    if missing:
        raise _incomplete(f"Authorization header requires {', '.join(missing)}")
    scope = parts["Credential"].split("/")
    if len(scope) != 5 or scope[4] != "aws4_request" or not all(scope):
        raise _incomplete("Credential must be KEY/yyyymmdd/region/service/aws4_request")
    signed = tuple(parts["SignedHeaders"].split(";"))
    if (
        not all(signed)
        or list(signed) != sorted(set(signed))
        or signed != tuple(h.lower() for h in signed)
    ):
        raise _incomplete("SignedHeaders must be sorted, lower case and distinct")
    signature = parts["Signature"]
    if len(signature) != 64 or any(c not in "0123456789abcdef" for c in signature):
        raise _incomplete("Signature must be 64 lower-case hex digits")
    access_key, date, region, service, _ = scope
    return ParsedAuthorization(access_key, date, region, service, signed, signature)


def verify(
    *,
    method: str,
    raw_path: str,
    headers: Iterable[tuple[str, str]],
    body: bytes,
    keys: Mapping[str, str],
    now: datetime.datetime,
) -> Verified:
    """The access key (and region) that signed this request, or AuthError (see the module
    docstring).

    `raw_path` is the request target as sent (path and query, still percent-encoded);
    `headers` every header as received (repeated names included); `now` is aware (UTC).
    """
    header_list = [(name.lower(), value) for name, value in headers]
    authorizations = [v for n, v in header_list if n == "authorization"]
    if not authorizations:
        raise AuthError("MissingAuthenticationTokenException", 403, "Missing Authentication Token")
    if len(authorizations) > 1:
        raise _incomplete("more than one Authorization header")
    auth = parse_authorization(authorizations[0])
    if auth.service != SERVICE:
        raise _incomplete(f"Credential should be scoped to correct service: '{SERVICE}'")
    for required in ("host", "x-amz-date"):
        if required not in auth.signed_headers:
            raise _incomplete(f"the '{required}' header must be signed")
    present = {name for name, _ in header_list}
    if "x-amz-target" in present and "x-amz-target" not in auth.signed_headers:
        raise _incomplete("the 'x-amz-target' header must be signed")
    if any(name not in present for name in auth.signed_headers):
        raise _incomplete("a signed header is missing from the request")
    amz_dates = [v for n, v in header_list if n == "x-amz-date"]
    try:
        when = datetime.datetime.strptime(amz_dates[0], AMZ_DATE_FORMAT).replace(
            tzinfo=datetime.UTC
        )
    except ValueError:
        raise _incomplete("X-Amz-Date must be yyyymmddThhmmssZ") from None
    if abs(now - when) > MAX_SKEW:
        raise AuthError(
            "InvalidSignatureException",
            403,
            f"Signature expired: {amz_dates[0]} is not within 15 minutes of the server's "
            f"time ({now.strftime(AMZ_DATE_FORMAT)})",
        )
    if auth.date != amz_dates[0][:8]:
        raise _incomplete("the Credential's date does not match X-Amz-Date")
    for name, value in header_list:
        if name == "x-amz-content-sha256" and value != hashlib.sha256(body).hexdigest():
            raise _incomplete("X-Amz-Content-SHA256 must be the SHA-256 of the body")
    secret = keys.get(auth.access_key)
    if secret is None:
        raise AuthError(
            "UnrecognizedClientException",
            403,
            "The security token included in the request is invalid.",
        )
    # the request as the client signed it: only the headers it names, the body as sent
    request = AWSRequest(method=method, url=f"http://localhost{raw_path}", data=body)
    for name, value in header_list:
        if name in auth.signed_headers:
            request.headers[name] = value  # HTTPHeaders: a repeated name adds a value
    request.context["timestamp"] = amz_dates[0]
    signer = SigV4Auth(Credentials(auth.access_key, secret), SERVICE, auth.region)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected, auth.signature):
        raise _mismatch()
    return Verified(auth.access_key, auth.region)
