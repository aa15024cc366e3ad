"""QLDB's control plane (the `qldb` service, REST-JSON, API version 2019-01-02) over a LedgerSet.

The HTTP server hands every request that is not a QLDB Session call to `handle_control`
(method, path, query, body) and sends back the `ControlResponse`: a status, a JSON body and
headers. Paths and shapes are botocore's `qldb/2019-01-02` service model:

| operation | route |
| --- | --- |
| CreateLedger, ListLedgers | POST, GET `/ledgers` |
| DescribeLedger, UpdateLedger, DeleteLedger | GET, PATCH, DELETE `/ledgers/{name}` |
| UpdateLedgerPermissionsMode | PATCH `/ledgers/{name}/permissions-mode` |
| GetDigest, GetBlock, GetRevision | POST `/ledgers/{name}/digest`, `/block`, `/revision` |
| TagResource, ListTagsForResource, UntagResource | POST, GET, DELETE `/tags/{resourceArn}` |
| journal exports and Kinesis streams | `/journal-s3-exports`, `/ledgers/{name}/journal-...` |

Digests are base64 in JSON; block addresses, blocks, revisions and proofs travel as Ion text
in `{"IonText": ...}` holders, exactly as QLDB wrote them (`{strandId:"…",sequenceNo:N}`,
proofs as a list of blobs), so the DMV sample's verifier and pyqldb's `QldbHash` check them
unchanged. A ledger's ARN is `arn:aws:qldb:<region>:000000000000:ledger/<name>`; any region
and account are accepted in an ARN given to us (the server holds one account).

CreateLedger answers `State: CREATING` as QLDB did (clients wait for ACTIVE with
DescribeLedger); an embedded ledger is usable at once, so DescribeLedger already says ACTIVE.
Kinesis streams (StreamJournalToKinesis, Describe/List/Cancel) are served by
cluster/streams.py's `control_operation`; journal exports (ExportJournalToS3,
DescribeJournalS3Export, ListJournalS3Exports, ListJournalS3ExportsForLedger) by
cluster/s3_exports.py's (asynchronous jobs with a durable status).

Invariants: `handle_control` never raises; every failure is a response with QLDB's error code
(in the `x-amzn-ErrorType` header and the body's `Code`), its status (InvalidParameter 400,
LimitExceeded 400, ResourceNotFound 404, ResourceAlreadyExists / ResourceInUse 409,
ResourcePreconditionNotMet 412) and a `Message` saying what was wrong; every input is checked
against the model's rules (name pattern, enums, tag counts and lengths, MaxResults range,
token pattern, Ion text size) before anything changes.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import logging
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from amazon.ion import simpleion

from cluster.ledgers import (
    AWS_OWNED_KMS_KEY,
    DeletionProtectedError,
    InvalidLedgerParameterError,
    LedgerExistsError,
    LedgerInfo,
    LedgerInUseError,
    LedgerLimitError,
    LedgerNotFoundError,
    LedgerSet,
    check_kms_key,
    check_name,
    check_permissions_mode,
    check_tag_keys,
    check_tags,
)
from core.errors import (
    BlockNotFoundError,
    InvalidArgumentError,
    LedgerClosedError,
    LimitExceededError,
    RevisionNotFoundError,
)
from core.iontext import IonTextError, load_text

__all__ = ["ACCOUNT_ID", "DEFAULT_REGION", "ControlResponse", "handle_control", "ledger_arn"]

log = logging.getLogger(__name__)

ACCOUNT_ID = "000000000000"
DEFAULT_REGION = "us-east-1"
DEFAULT_MAX_RESULTS = 100
MAX_RESULTS_RANGE = (1, 100)
# A block address is under 100 characters; anything much longer is refused before it is
# parsed (amazon-ion's pure-Python reader takes tens of seconds over a megabyte).
ADDRESS_ION_TEXT_MAX_CHARS = 4096
ARN_CHARS_RANGE = (20, 1600)
NEXT_TOKEN_CHARS_RANGE = (4, 1024)
NEXT_TOKEN = re.compile(r"^[A-Za-z0-9+/=-]+$")
UNIQUE_ID = re.compile(r"^[A-Za-z0-9]{22}$")
LEDGER_ARN = re.compile(r"^arn:aws[a-z-]*:qldb:[a-z0-9-]*:[0-9]*:ledger/([^/]+)$")


@dataclass(frozen=True, slots=True)
class ControlResponse:
    """What the HTTP server sends back: status, JSON body (the server sets Content-Type:
    application/json), extra headers (`x-amzn-ErrorType` on errors)."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str]


class ApiError(Exception):
    """A failure with QLDB's error code, status and (modelled) extra fields."""

    def __init__(self, code: str, status: int, message: str, **fields: str) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.message = message
        self.fields = fields

    def response(self) -> ControlResponse:
        body: dict[str, Any] = {"Code": self.code, "Message": self.message, **self.fields}
        return ControlResponse(self.status, body, {"x-amzn-ErrorType": self.code})


def _invalid(message: str, parameter: str | None = None) -> ApiError:
    fields = {"ParameterName": parameter} if parameter else {}
    return ApiError("InvalidParameterException", 400, message, **fields)


def _for_ledger(code: str, status: int, message: str, name: str) -> ApiError:
    return ApiError(code, status, message, ResourceType="LEDGER", ResourceName=name)


def ledger_arn(name: str, region: str = DEFAULT_REGION) -> str:
    return f"arn:aws:qldb:{region}:{ACCOUNT_ID}:ledger/{name}"


# ------------------------------------------------------------------ entry point
def handle_control(
    ledgers: LedgerSet,
    method: str,
    path: str,
    query: Mapping[str, Any],
    body: bytes,
    *,
    region: str = DEFAULT_REGION,
) -> ControlResponse:
    """Answer one control-plane request (see the module docstring). Never raises.

    `query` maps each query-string key to its value; a key given more than once (UntagResource's
    `tagKeys`) may map to a list of values, or `query` may be a multidict with `getall`.
    `region` names the region in the ARNs we return (the request's signing region).
    """
    try:
        return _Request(ledgers, method.upper(), path, query, body, region).dispatch()
    except ApiError as exc:
        return exc.response()
    except Exception as exc:
        try:
            return _mapped(exc).response()
        except Exception:  # a bug in the mapping itself: still an answer
            log.exception("control plane error mapping failed")
            failure = {"Code": "InternalFailure", "Message": "internal error"}
            return ControlResponse(500, failure, {"x-amzn-ErrorType": "InternalFailure"})


def _mapped(exc: Exception) -> ApiError:
    """QLDB's error for an exception of the ledger set or a ledger handle."""
    message = str(exc) or type(exc).__name__
    from cluster.s3_exports import ExportNotFoundError, ExportPreconditionError

    resource_errors: list[tuple[Any, str, int, str]] = [  # (types, code, status, resource)
        (LedgerNotFoundError, "ResourceNotFoundException", 404, "LEDGER"),
        (ExportNotFoundError, "ResourceNotFoundException", 404, "JOURNAL_EXPORT"),
        (LedgerExistsError, "ResourceAlreadyExistsException", 409, "LEDGER"),
        (LedgerInUseError, "ResourceInUseException", 409, "LEDGER"),
        (
            ExportPreconditionError | DeletionProtectedError,
            "ResourcePreconditionNotMetException",
            412,
            "LEDGER",
        ),
        (LedgerLimitError | LimitExceededError, "LimitExceededException", 400, "LEDGER"),
    ]
    for types, code, status, resource in resource_errors:
        if isinstance(exc, types):
            return ApiError(code, status, message, ResourceType=resource)
    if isinstance(exc, LedgerClosedError):
        return ApiError("ResourceNotFoundException", 404, f"the ledger was deleted ({message})")
    if isinstance(
        exc,
        InvalidLedgerParameterError
        | InvalidArgumentError
        | BlockNotFoundError
        | RevisionNotFoundError
        | IonTextError,
    ):
        return _invalid(message)
    log.exception("control plane request failed")
    return ApiError("InternalFailure", 500, f"internal error: {type(exc).__name__}: {message}")


# ------------------------------------------------------------------ request parsing
class _Request:
    def __init__(
        self,
        ledgers: LedgerSet,
        method: str,
        path: str,
        query: Mapping[str, Any],
        body: bytes,
        region: str,
    ) -> None:
        self.ledgers = ledgers
        self.method = method
        self.path = path.split("?", 1)[0]
        self.query = query
        self.raw_body = body
        self.region = region
        self.name = ""  # the ledger a /ledgers/{name} route names, once checked

    # ---------------------------------------------------------------- helpers
    def body(self) -> dict[str, Any]:
        if not self.raw_body.strip():
            return {}
        try:
            parsed = json.loads(self.raw_body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError("SerializationException", 400, f"the body is not JSON: {exc}") from None
        if not isinstance(parsed, dict):
            raise ApiError("SerializationException", 400, "the body must be a JSON object")
        return parsed

    def query_values(self, key: str) -> list[str]:
        getall = getattr(self.query, "getall", None)
        if getall is not None:
            return [str(v) for v in getall(key, [])]
        value = self.query.get(key)
        if value is None:
            return []
        if isinstance(value, list | tuple):
            return [str(v) for v in value]
        return [str(value)]

    def query_value(self, key: str) -> str | None:
        values = self.query_values(key)
        if len(values) > 1:
            raise _invalid(f"{key} given {len(values)} times", key)
        return values[0] if values else None

    def arn(self) -> dict[str, str]:
        return {"Arn": ledger_arn(self.name, self.region)}

    # ---------------------------------------------------------------- routing
    def dispatch(self) -> ControlResponse:
        raw = self.path.strip("/")
        if raw.startswith("tags/"):
            return self.tags(urllib.parse.unquote(raw[len("tags/") :]))
        parts = [urllib.parse.unquote(part) for part in raw.split("/")] if raw else []
        method = self.method
        if parts == ["ledgers"]:
            if method == "POST":
                return self.create_ledger()
            if method == "GET":
                return self.list_ledgers()
        elif parts == ["journal-s3-exports"] and method == "GET":
            return self.exports(None, "ListJournalS3Exports", None)
        elif len(parts) >= 2 and parts[0] == "ledgers":
            name = parts[1]
            rest = parts[2:]
            route = {
                ("GET", ()): self.describe_ledger,
                ("PATCH", ()): self.update_ledger,
                ("DELETE", ()): self.delete_ledger,
                ("PATCH", ("permissions-mode",)): self.update_permissions_mode,
                ("POST", ("digest",)): self.get_digest,
                ("POST", ("block",)): self.get_block,
                ("POST", ("revision",)): self.get_revision,
            }.get((method, tuple(rest)))
            if route is not None:
                self.name = _checked_name(name)
                return route()
            operation = _export_operation(method, rest)
            if operation is not None and rest[0] == "journal-kinesis-streams":
                from cluster.streams import control_operation  # issue 14: journal streams

                self.name = _checked_name(name)
                self.describe_ledger()  # ResourceNotFound for a ledger that does not exist
                stream_id = rest[1] if len(rest) > 1 else None
                return _ok(control_operation(self.ledgers, self.name, operation, self.body(),
                                             stream_id))  # fmt: skip
            if operation is not None:
                self.name = _checked_name(name)
                self.describe_ledger()  # ResourceNotFound for a ledger that does not exist
                return self.exports(self.name, operation, rest[1] if len(rest) > 1 else None)
        raise ApiError(
            "UnknownOperationException",
            404,
            f"no QLDB control-plane operation for {self.method} {self.path}",
        )

    def exports(self, name: str | None, operation: str, export_id: str | None) -> ControlResponse:
        """Journal exports to S3 (cluster/s3_exports.py, issue 14)."""
        from cluster import s3_exports

        query = {key: self.query_value(key) for key in ("max_results", "next_token")}
        body = self.body() if operation == "ExportJournalToS3" else {}
        return _ok(s3_exports.control_operation(self.ledgers, name, operation, body, export_id,
                                                query))  # fmt: skip

    # ---------------------------------------------------------------- ledgers
    def create_ledger(self) -> ControlResponse:
        body = self.body()
        name = _checked_name(_required(body, "Name"))
        mode = _checked(
            check_permissions_mode, _required(body, "PermissionsMode"), "PermissionsMode"
        )
        protection = _optional_bool(body, "DeletionProtection", default=True)
        kms_key = body.get("KmsKey")
        _checked(check_kms_key, kms_key, "KmsKey")
        raw_tags = body.get("Tags")
        tags = {} if raw_tags is None else _checked(check_tags, raw_tags, "Tags")
        info = self.ledgers.create(
            name,
            permissions_mode=mode,
            deletion_protection=protection,
            kms_key=kms_key,
            tags=tags,
        )
        self.name = name
        answer: dict[str, Any] = {
            "Name": info.name,
            **self.arn(),
            "State": "CREATING" if info.state == "ACTIVE" else info.state,
            "CreationDateTime": _epoch_s(info.creation_time),
            "PermissionsMode": info.permissions_mode,
            "DeletionProtection": info.deletion_protection,
        }
        if info.kms_key is not None:
            answer["KmsKeyArn"] = info.kms_key
        return _ok(answer)

    def list_ledgers(self) -> ControlResponse:
        limit = DEFAULT_MAX_RESULTS
        raw_limit = self.query_value("max_results")
        if raw_limit is not None:
            try:
                limit = int(raw_limit)
            except ValueError:
                raise _invalid(
                    f"MaxResults is not an integer: {raw_limit!r}", "MaxResults"
                ) from None
            low, high = MAX_RESULTS_RANGE
            if not low <= limit <= high:
                raise _invalid(f"MaxResults must be {low} to {high}, got {limit}", "MaxResults")
        after = _decode_next_token(self.query_value("next_token"))
        names = [n for n in self.ledgers.names() if after is None or n > after]
        page: list[dict[str, Any]] = []
        for name in names:
            if len(page) == limit:
                break
            try:
                info = self.ledgers.describe(name)
            except LedgerNotFoundError:
                continue  # deleted since names() was read
            page.append(
                {
                    "Name": info.name,
                    "State": info.state,
                    "CreationDateTime": _epoch_s(info.creation_time),
                }
            )
        answer: dict[str, Any] = {"Ledgers": page}
        if page and names[-1] != page[-1]["Name"]:
            answer["NextToken"] = base64.b64encode(page[-1]["Name"].encode()).decode()
        return _ok(answer)

    def describe_ledger(self) -> ControlResponse:
        info = self.ledgers.describe(self.name)
        return _ok(
            {
                "Name": info.name,
                **self.arn(),
                "State": info.state,
                "CreationDateTime": _epoch_s(info.creation_time),
                "PermissionsMode": info.permissions_mode,
                "DeletionProtection": info.deletion_protection,
                "EncryptionDescription": _encryption(info),
            }
        )

    def update_ledger(self) -> ControlResponse:
        body = self.body()
        protection = _optional_bool(body, "DeletionProtection", default=None)
        kms_key = body.get("KmsKey")
        _checked(check_kms_key, kms_key, "KmsKey")
        if kms_key is None:
            info = self.ledgers.update(self.name, deletion_protection=protection)
        else:  # AWS_OWNED_KMS_KEY goes through: it means "back to the owned key"
            info = self.ledgers.update(
                self.name, deletion_protection=protection, kms_key=str(kms_key)
            )
        return _ok(
            {
                "Name": info.name,
                **self.arn(),
                "State": info.state,
                "CreationDateTime": _epoch_s(info.creation_time),
                "DeletionProtection": info.deletion_protection,
                "EncryptionDescription": _encryption(info),
            }
        )

    def update_permissions_mode(self) -> ControlResponse:
        body = self.body()
        mode = _checked(
            check_permissions_mode, _required(body, "PermissionsMode"), "PermissionsMode"
        )
        info = self.ledgers.update(self.name, permissions_mode=mode)
        return _ok({"Name": info.name, **self.arn(), "PermissionsMode": info.permissions_mode})

    def delete_ledger(self) -> ControlResponse:
        try:
            self.ledgers.delete(self.name)
        except DeletionProtectedError as exc:
            raise _for_ledger(
                "ResourcePreconditionNotMetException", 412, str(exc), self.name
            ) from None
        return _ok({})

    # ---------------------------------------------------------------- journal
    def get_digest(self) -> ControlResponse:
        self.body()  # must be a JSON object if present
        digest = self.ledgers.open(self.name).get_digest()
        return _ok(
            {
                "Digest": base64.b64encode(bytes(digest["digest"])).decode(),
                "DigestTipAddress": _ion_holder(digest["digestTipAddress"]),
            }
        )

    def get_block(self) -> ControlResponse:
        body = self.body()
        address = _address(body, "BlockAddress", required=True)
        tip = _address(body, "DigestTipAddress", required=False)
        got = self.ledgers.open(self.name).get_block(address, tip)
        answer: dict[str, Any] = {"Block": _ion_holder(got["block"])}
        if tip is not None:
            answer["Proof"] = _ion_holder([bytes(h) for h in got["proof"]])
        return _ok(answer)

    def get_revision(self) -> ControlResponse:
        body = self.body()
        address = _address(body, "BlockAddress", required=True)
        document_id = _required(body, "DocumentId")
        if not isinstance(document_id, str) or not UNIQUE_ID.match(document_id):
            raise _invalid(
                f"DocumentId must be 22 letters and digits, got {document_id!r}", "DocumentId"
            )
        tip = _address(body, "DigestTipAddress", required=False)
        got = self.ledgers.open(self.name).get_revision(address, document_id, tip)
        answer: dict[str, Any] = {"Revision": _ion_holder(got["revision"])}
        if tip is not None:
            answer["Proof"] = _ion_holder([bytes(h) for h in got["proof"]])
        return _ok(answer)

    # ---------------------------------------------------------------- tags
    def tags(self, arn: str) -> ControlResponse:
        if self.method not in ("GET", "POST", "DELETE"):
            raise ApiError(
                "UnknownOperationException",
                404,
                f"no QLDB control-plane operation for {self.method} /tags/...",
            )
        low, high = ARN_CHARS_RANGE
        if not low <= len(arn) <= high:
            raise _invalid(f"ResourceArn must be {low} to {high} characters", "ResourceArn")
        match = LEDGER_ARN.match(arn)
        if match is None:
            raise _invalid(
                f"ResourceArn {arn!r} is not a ledger's ARN "
                f"(arn:aws:qldb:<region>:<account>:ledger/<name>)",
                "ResourceArn",
            )
        name = _checked_name(match.group(1))
        if self.method == "GET":
            return _ok({"Tags": dict(self.ledgers.describe(name).tags)})
        if self.method == "POST":
            tags = _checked(check_tags, _required(self.body(), "Tags"), "Tags")
            self.ledgers.tag(name, tags)
            return _ok({})
        keys = self.query_values("tagKeys")
        if not keys:
            raise _invalid("TagKeys is required", "TagKeys")
        _checked(check_tag_keys, keys, "TagKeys")
        self.ledgers.untag(name, keys)
        return _ok({})


# ------------------------------------------------------------------ shapes
def _ok(body: dict[str, Any]) -> ControlResponse:
    return ControlResponse(200, body, {})


def _epoch_s(moment: datetime.datetime) -> float:
    return moment.timestamp()


def _encryption(info: LedgerInfo) -> dict[str, str]:
    return {"KmsKeyArn": info.kms_key or AWS_OWNED_KMS_KEY, "EncryptionStatus": "ENABLED"}


def _ion_text(value: Any) -> str:
    return str(simpleion.dumps(value, binary=False, omit_version_marker=True))


def _ion_holder(value: Any) -> dict[str, str]:
    return {"IonText": _ion_text(value)}


def _required(body: dict[str, Any], key: str) -> Any:
    if body.get(key) is None:
        raise _invalid(f"{key} is required", key)
    return body[key]


def _optional_bool(body: dict[str, Any], key: str, *, default: bool | None) -> Any:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise _invalid(f"{key} must be true or false, got {value!r}", key)
    return value


def _checked(check: Any, value: Any, parameter: str) -> Any:
    try:
        return check(value)
    except InvalidLedgerParameterError as exc:
        raise _invalid(str(exc), parameter) from None


def _permissions_mode(body: dict[str, Any]) -> str:
    mode: str = _checked(
        check_permissions_mode, _required(body, "PermissionsMode"), "PermissionsMode"
    )
    return mode


def _checked_name(name: Any) -> str:
    result: str = _checked(check_name, name, "Name")
    return result


def _decode_next_token(token: str | None) -> str | None:
    if token is None:
        return None
    low, high = NEXT_TOKEN_CHARS_RANGE
    if not low <= len(token) <= high or not NEXT_TOKEN.match(token):
        raise _invalid("NextToken is not a token ListLedgers returned", "NextToken")
    try:
        after = base64.b64decode(token, validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError):
        raise _invalid("NextToken is not a token ListLedgers returned", "NextToken") from None
    return after


def _address(body: dict[str, Any], key: str, *, required: bool) -> dict[str, Any] | None:
    """A block address from a `{"IonText": "{strandId:\"…\",sequenceNo:N}"}` holder."""
    holder = body.get(key)
    if holder is None:
        if required:
            raise _invalid(f"{key} is required", key)
        return None
    if not isinstance(holder, dict) or not isinstance(holder.get("IonText"), str):
        raise _invalid(f'{key} must be {{"IonText": "..."}}', key)
    text = holder["IonText"]
    if not 1 <= len(text) <= ADDRESS_ION_TEXT_MAX_CHARS:
        raise _invalid(
            f"{key}.IonText must be 1 to {ADDRESS_ION_TEXT_MAX_CHARS} characters (a block "
            f"address), got {len(text)}",
            key,
        )
    try:
        value = load_text(text)
    except IonTextError as exc:
        raise _invalid(f"{key} is not Ion text: {exc}", key) from None
    expected = f'{key} must be {{strandId:"<22 characters>",sequenceNo:<int >= 0>}}'
    if not isinstance(value, Mapping) or set(value) != {"strandId", "sequenceNo"}:
        raise _invalid(expected, key)
    strand_id, seq = value["strandId"], value["sequenceNo"]
    if not isinstance(strand_id, str) or not isinstance(seq, int) or isinstance(seq, bool):
        raise _invalid(expected, key)
    if seq < 0:
        raise _invalid(expected, key)
    return {"strandId": str(strand_id), "sequenceNo": int(seq)}


def _export_operation(method: str, rest: list[str]) -> str | None:
    """The export/stream operation a ledger sub-route names, if any."""
    if not rest:
        return None
    kind, extra = rest[0], rest[1:]
    if kind == "journal-s3-exports":
        if not extra:
            return {"POST": "ExportJournalToS3", "GET": "ListJournalS3ExportsForLedger"}.get(method)
        if len(extra) == 1 and method == "GET":
            return "DescribeJournalS3Export"
    if kind == "journal-kinesis-streams":
        if not extra:
            return {
                "POST": "StreamJournalToKinesis",
                "GET": "ListJournalKinesisStreamsForLedger",
            }.get(method)
        if len(extra) == 1:
            return {
                "GET": "DescribeJournalKinesisStream",
                "DELETE": "CancelJournalKinesisStream",
            }.get(method)
    return None
