"""Where a journal stream's records go: Kinesis (KPL-aggregated), JSON Lines, or a callback.

A sink takes a stream's records in order (`send`) and returns only once the destination has
acknowledged every one of them; anything else raises `SinkError` with a cause the stream
reports (IMPAIRED) and retries. A send that failed part-way may have delivered a prefix:
the runner sends it again from its checkpoint (duplicates, never gaps).

- `KinesisSink`: any Kinesis-compatible endpoint through boto3 (the standard credential
  chain; `AWS_ENDPOINT_URL_KINESIS` or the sink's `endpoint_url`). With aggregation (the
  default, as QLDB did) records are packed by `aws-kinesis-agg`'s aggregator into KPL
  aggregated records (magic F3 89 9A C2, protobuf AggregatedRecord, MD5), at most 1 MiB
  each; every Kinesis record is put with `PutRecord`, one partition key per stream and
  `SequenceNumberForOrdering` chained, so they land in order on one shard.
- `JsonLinesSink`: one JSON object per line (core.stream_records.json_line), flushed and
  fsynced before `send` returns; a torn last line (a writer killed mid-write) is cut off
  before the first append, so every line of the file is whole. `read_jsonl` reads it back.
- `CallbackSink`: calls a Python function with each decoded record (in-process consumers);
  an exception it raises is a sink failure.

`read_kinesis` is the consumer's side for tests and `strand stream read`: it reads a
Kinesis stream from the start and deaggregates with `aws-kinesis-agg`'s deaggregator.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from core import stream_records
from core.errors import InvalidArgumentError, StrandError
from core.stream_records import Record

KINESIS_RECORD_MAX_BYTES = 1024 * 1024
_PARTITION_KEY_ROOM_BYTES = 512  # the partition key and framing counted against the 1 MiB


class SinkError(StrandError):
    """The sink did not acknowledge a send; `str()` is the cause the stream reports."""


@dataclass(frozen=True, slots=True)
class OutRecord:
    """One stream record: the value and its binary Ion (what Kinesis carries)."""

    value: Record
    ion: bytes


class Sink(Protocol):
    def send(self, records: Sequence[OutRecord]) -> None: ...

    def close(self) -> None: ...


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:1000]


class KinesisSink:
    """Records to a Kinesis data stream (see the module docstring)."""

    def __init__(
        self,
        *,
        stream_name: str | None = None,
        stream_arn: str | None = None,
        endpoint_url: str | None = None,
        region: str | None = None,
        aggregation: bool = True,
        partition_key: str = "strand",
        client: Any = None,
    ) -> None:
        if (stream_name is None) == (stream_arn is None):
            raise InvalidArgumentError("a Kinesis sink names a stream or its ARN, not both")
        self._target = {"StreamName": stream_name} if stream_name else {"StreamARN": stream_arn}
        self.aggregation = aggregation
        self.partition_key = partition_key
        self._client = client or _kinesis_client(endpoint_url, region)
        self._last_sequence: str | None = None
        self.stats = {"kinesis_records": 0, "user_records": 0, "bytes": 0}

    def _put(self, data: bytes) -> None:
        args: dict[str, Any] = {**self._target, "Data": data, "PartitionKey": self.partition_key}
        if self._last_sequence is not None:
            args["SequenceNumberForOrdering"] = self._last_sequence
        try:
            answer = self._client.put_record(**args)
        except Exception as exc:  # botocore raises many unrelated types
            raise SinkError(f"Kinesis refused a record: {_describe(exc)}") from exc
        self._last_sequence = answer.get("SequenceNumber", self._last_sequence)
        self.stats["kinesis_records"] += 1
        self.stats["bytes"] += len(data)

    def send(self, records: Sequence[OutRecord]) -> None:
        if not self.aggregation:
            for record in records:
                if len(record.ion) > KINESIS_RECORD_MAX_BYTES - _PARTITION_KEY_ROOM_BYTES:
                    raise SinkError(f"a record of {len(record.ion)} bytes exceeds Kinesis's 1 MiB")
                self._put(record.ion)
            self.stats["user_records"] += len(records)
            return
        from aws_kinesis_agg.aggregator import RecordAggregator

        aggregator = RecordAggregator(KINESIS_RECORD_MAX_BYTES - _PARTITION_KEY_ROOM_BYTES)
        for record in records:
            try:
                full = aggregator.add_user_record(self.partition_key, record.ion)
            except ValueError as exc:  # one record larger than a Kinesis record
                raise SinkError(f"a record does not fit a Kinesis record: {exc}") from exc
            if full is not None:
                self._put(full.get_contents()[2])
        if aggregator.get_num_user_records():
            self._put(aggregator.clear_and_get().get_contents()[2])
        self.stats["user_records"] += len(records)

    def close(self) -> None:
        close = getattr(self._client, "close", None)
        if close is not None:
            close()


def _kinesis_client(endpoint_url: str | None, region: str | None) -> Any:
    import boto3

    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    return boto3.client(
        "kinesis", endpoint_url=endpoint_url or None, region_name=region or "us-east-1"
    )


class JsonLinesSink:
    """Records appended to a file, one JSON object per line, fsynced per send."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._repaired = False

    def _repair(self) -> None:
        """Drop a torn last line (a writer killed mid-line): every line is whole."""
        try:
            with open(self.path, "rb+") as f:
                size = f.seek(0, os.SEEK_END)
                if size == 0:
                    return
                f.seek(size - 1)
                if f.read(1) == b"\n":
                    return
                keep = size - 1
                while keep > 0:
                    f.seek(keep - 1)
                    if f.read(1) == b"\n":
                        break
                    keep -= 1
                f.truncate(keep)
        except FileNotFoundError:
            pass

    def send(self, records: Sequence[OutRecord]) -> None:
        text = "".join(stream_records.json_line(r.value) + "\n" for r in records)
        try:
            if not self._repaired:
                self._repair()
                self._repaired = True
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            raise SinkError(f"cannot append to {self.path}: {_describe(exc)}") from exc

    def close(self) -> None:
        pass


class CallbackSink:
    """Each record, decoded, to `callback(record)`, on the stream's thread."""

    def __init__(self, callback: Callable[[Record], None]) -> None:
        self.callback = callback

    def send(self, records: Sequence[OutRecord]) -> None:
        for record in records:
            try:
                self.callback(record.value)
            except Exception as exc:  # noqa: BLE001 - the consumer's failure: reported
                raise SinkError(f"the callback raised {_describe(exc)}") from exc

    def close(self) -> None:
        pass


_callbacks: dict[str, Callable[[Record], None]] = {}
_callbacks_lock = threading.Lock()


def register_callback(name: str, callback: Callable[[Record], None]) -> None:
    """Make `callback` the sink of streams whose sink is `{"kind": "callback", "name": name}`
    in this process (a callback cannot be stored: a process that resumes the stream
    registers it again)."""
    with _callbacks_lock:
        _callbacks[name] = callback


def sink_from_spec(spec: dict[str, Any]) -> Sink:
    """The sink a stream's definition names (core.streams.StreamDefinition.sink)."""
    kind = spec.get("kind")
    if kind == "kinesis":
        return KinesisSink(
            stream_name=spec.get("stream_name"),
            stream_arn=spec.get("stream_arn"),
            endpoint_url=spec.get("endpoint_url"),
            region=spec.get("region"),
            aggregation=bool(spec.get("aggregation", True)),
        )
    if kind == "jsonl":
        return JsonLinesSink(str(spec["path"]))
    if kind == "callback":
        with _callbacks_lock:
            callback = _callbacks.get(str(spec.get("name")))
        if callback is None:
            raise SinkError(f"no callback {spec.get('name')!r} is registered in this process")
        return CallbackSink(callback)
    raise InvalidArgumentError(f"unknown sink kind {kind!r}")


def check_spec(spec: dict[str, Any]) -> str:
    """The spec as the JSON text a definition stores (InvalidArgumentError if malformed)."""
    kind = spec.get("kind")
    if kind == "kinesis":
        if not (spec.get("stream_name") or spec.get("stream_arn")):
            raise InvalidArgumentError("a Kinesis sink needs stream_name or stream_arn")
    elif kind == "jsonl":
        if not spec.get("path"):
            raise InvalidArgumentError("a JSON Lines sink needs a path")
        spec = {**spec, "path": os.path.abspath(str(spec["path"]))}
    elif kind == "callback":
        if not spec.get("name"):
            raise InvalidArgumentError("a callback sink needs a name")
    else:
        raise InvalidArgumentError(f"unknown sink kind {kind!r}")
    return json.dumps(spec, sort_keys=True)


# ----------------------------------------------------------------- the consumer's side


def read_jsonl(path: str | os.PathLike[str]) -> list[Record]:
    """The records of a JSON Lines sink, hashes as bytes (core.stream_records.from_json)."""
    with open(path, encoding="utf-8") as f:
        return [stream_records.from_json(json.loads(line)) for line in f if line.strip()]


def read_kinesis(
    stream_name: str,
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    client: Any = None,
    max_empty_reads: int = 1,
) -> Iterator[Record]:
    """Every record of every shard of a Kinesis stream from its start, deaggregated and
    decoded (shards in order of their ids; Strand's streams use one partition key, so one
    shard holds them all, in order). Stops after `max_empty_reads` empty reads per shard."""
    from aws_kinesis_agg.deaggregator import iter_deaggregate_records

    kinesis = client or _kinesis_client(endpoint_url, region)
    shards = kinesis.list_shards(StreamName=stream_name)["Shards"]
    for shard in sorted(shards, key=lambda s: s["ShardId"]):
        iterator = kinesis.get_shard_iterator(
            StreamName=stream_name, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        empty = 0
        while iterator is not None and empty < max_empty_reads:
            got = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            iterator = got.get("NextShardIterator")
            if not got["Records"]:
                empty += 1
                continue
            for user in iter_deaggregate_records(got["Records"], data_format="Boto3"):
                data = user["kinesis"]["data"]  # base64 once deaggregated, else as it was
                if user["kinesis"].get("aggregated"):
                    data = base64.b64decode(data)
                yield stream_records.decode(data)
