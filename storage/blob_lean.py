"""The SDK's shapes over the lean request path: what `storage.blob`'s clients hand the stores.

`LeanBlobClient` is the SDK's async `BlobClient` with the hot operations sent through
`storage.blob_rest.BlobRest`: download (whole or a range), upload of a block blob, create and
append of an append blob, delete and get properties. Each answers as the SDK does (a
`StorageStreamDownloader` with `readall()` and `.properties`, the normalised header dicts,
`BlobProperties`, the same exceptions). Any argument shape it does not handle goes to the SDK
(`super()`), so a caller can never tell which path served it, only that it cost less CPU.

What the lean path does not do, by design:
- follow redirects: Blob does not send them, and a redirect must not carry our key or token
  to wherever it points (the SDK's redirect policy would follow one);
- decompress: a download answered with `Content-Encoding: gzip` or `deflate` is handed to the
  SDK, which decompresses it (one more request, for blobs the stores never write);
- fill every `BlobProperties` field: from a HEAD or a download it fills what the stores read
  (`PROPERTY_HEADERS`: size, etag, dates, type, content settings, lease,
  tier, version, encryption scope, metadata) and leaves None the copy state (`x-ms-copy-*`),
  access tier change time, archive status, rehydrate priority, smart tier, object
  replication (None, not []), last access time, immutability policy and legal hold, the
  customer key's SHA-256 and encrypted metadata; a caller that needs them asks the SDK
  (`BLOB_REQUESTS=sdk`, or a keyword the lean path does not take).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceModifiedError
from azure.storage.blob import BlobProperties, BlobType, ContentSettings, StorageErrorCode
from azure.storage.blob.aio import BlobClient, StorageStreamDownloader

from storage.blob_rest import BlobRest

OCTETS = "application/octet-stream"


_MONTHS = {
    m: i
    for i, m in enumerate(
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"], 1
    )
}


def _date(value: str) -> datetime:
    """An RFC 1123 date (`Wed, 02 Dec 2026 05:58:01 GMT`) as the SDK reads it (UTC-aware);
    split by hand, a tenth of email.utils' cost, which still reads any other form."""
    try:
        _, day, month, year, clock, zone = value.split(" ")
        hour, minute, second = clock.split(":")
        if zone == "GMT":
            return datetime(
                int(year), _MONTHS[month], int(day), int(hour), int(minute), int(second), tzinfo=UTC
            )
    except (ValueError, KeyError):
        pass
    return parsedate_to_datetime(value)


def _md5(value: str) -> bytearray:
    return bytearray(base64.b64decode(value))


def _flag(value: str) -> bool:
    return value.lower() == "true"


Converter = Callable[[str], Any]
# Each operation's response headers as the generated layer reads them, and their types.
_COMMON: dict[str, Converter] = {
    "ETag": str,
    "Last-Modified": _date,
    "Content-MD5": _md5,
    "x-ms-client-request-id": str,
    "x-ms-request-id": str,
    "x-ms-version": str,
    "Date": _date,
}
_ENCRYPTION: dict[str, Converter] = {
    "x-ms-request-server-encrypted": _flag,
    "x-ms-encryption-key-sha256": str,
    "x-ms-encryption-scope": str,
}
UPLOAD_HEADERS: dict[str, Converter] = {
    **_COMMON,
    "x-ms-content-crc64": _md5,
    "x-ms-version-id": str,
    **_ENCRYPTION,
    "x-ms-structured-body": str,
}
CREATE_HEADERS: dict[str, Converter] = {**_COMMON, "x-ms-version-id": str, **_ENCRYPTION}
APPEND_HEADERS: dict[str, Converter] = {
    **_COMMON,
    "x-ms-content-crc64": _md5,
    "x-ms-blob-append-offset": str,
    "x-ms-blob-committed-block-count": int,
    **_ENCRYPTION,
    "x-ms-structured-body": str,
}
# BlobProperties' keyword names (the generated layer's header spelling) and their types.
PROPERTY_HEADERS: dict[str, Converter] = {
    "ETag": str,
    "Last-Modified": _date,
    "Content-Length": int,
    "Content-Range": str,
    "Content-Type": str,
    "Content-Encoding": str,
    "Content-Language": str,
    "Content-Disposition": str,
    "Cache-Control": str,
    "Content-MD5": _md5,
    "x-ms-blob-content-md5": _md5,
    "x-ms-blob-type": str,
    "x-ms-blob-committed-block-count": int,
    "x-ms-blob-sealed": _flag,
    "x-ms-blob-sequence-number": int,
    "x-ms-creation-time": _date,
    "x-ms-server-encrypted": _flag,
    "x-ms-lease-state": str,
    "x-ms-lease-status": str,
    "x-ms-lease-duration": str,
    "x-ms-version-id": str,
    "x-ms-is-current-version": _flag,
    "x-ms-access-tier": str,
    "x-ms-access-tier-inferred": _flag,
    "x-ms-tag-count": int,
    "x-ms-encryption-scope": str,
}


def normalized(headers: Mapping[str, str], wanted: Mapping[str, Converter]) -> dict[str, Any]:
    """As the SDK's `return_response_headers`: each header of the operation, `x-ms-` dropped,
    snake_case, typed, None when absent."""
    result: dict[str, Any] = {}
    for name, convert in wanted.items():
        value = headers.get(name)
        key = (name[5:] if name.startswith("x-ms-") else name).lower().replace("-", "_")
        result[key] = None if value is None else convert(value)
    return result


def blob_properties(headers: Mapping[str, str]) -> BlobProperties:
    found = {
        name: convert(headers[name])
        for name, convert in PROPERTY_HEADERS.items()
        if name in headers
    }
    metadata = {k[10:]: v for k, v in headers.items() if k.lower().startswith("x-ms-meta-")}
    properties = BlobProperties(metadata=metadata, **found)
    if "Content-Range" in found:  # a download: the blob's MD5, not the range's
        properties.content_settings.content_md5 = found.get("x-ms-blob-content-md5")
    return properties


def _conditions(kwargs: dict[str, Any]) -> dict[str, str] | None:
    """If-Match / If-None-Match from the SDK's keywords, consumed from `kwargs`; None when a
    keyword is left that the lean path does not send (the caller takes the SDK path)."""
    match = kwargs.pop("match_condition", None)
    etag = kwargs.pop("etag", None)
    headers = {}
    if match == MatchConditions.IfNotModified and etag:
        headers["If-Match"] = etag
    elif match == MatchConditions.IfPresent:
        headers["If-Match"] = "*"
    elif match == MatchConditions.IfModified and etag:
        headers["If-None-Match"] = etag
    elif match == MatchConditions.IfMissing:
        headers["If-None-Match"] = "*"
    elif match is not None or etag is not None:
        return None  # the SDK's ValueError/TypeError for these
    for keyword, header in (("if_match", "If-Match"), ("if_none_match", "If-None-Match")):
        value = kwargs.pop(keyword, None)
        if value is not None:
            headers.setdefault(header, value)
    if "timeout" in kwargs and kwargs["timeout"] is None:
        del kwargs["timeout"]  # the container's calls pass it through unset
    kwargs.pop("merge_span", None)
    return None if kwargs else headers


def _content_type(settings: object) -> str | bool | None:
    """The blob's content type from `content_settings`; False when it sets more than that."""
    if settings is None:
        return None
    if not isinstance(settings, ContentSettings):
        return False
    others = (
        settings.content_encoding,
        settings.content_language,
        settings.content_disposition,
        settings.cache_control,
        settings.content_md5,
    )
    return False if any(others) else settings.content_type


class LeanBlobClient(BlobClient):
    """A BlobClient whose hot operations take the lean path.

    Built by `deferred` with only what the lean operations read: the SDK's own state (its
    pipeline and generated client, about a millisecond of CPU per blob name) is built the
    first time anything else of it is asked for, by a fallback to the SDK or any other method.
    """

    _rest: BlobRest
    _lean_config: Any  # the container's StorageConfiguration (its size limits)

    @classmethod
    def deferred(
        cls,
        blob_name: str,
        container_name: str,
        rest: BlobRest,
        config: Any,
        build: Callable[[], BlobClient],
    ) -> LeanBlobClient:
        client = cls.__new__(cls)
        client.__dict__.update(
            blob_name=blob_name,
            container_name=container_name,
            snapshot=None,
            version_id=None,
            _rest=rest,
            _lean_config=config,
            _build_sdk_state=build,
        )
        return client

    def __getattr__(self, name: str) -> Any:
        """Reached only for attributes not set yet: the SDK client's state, built now."""
        build = self.__dict__.pop("_build_sdk_state", None)
        if build is None:
            raise AttributeError(name)
        self.__dict__.update(build().__dict__)
        return getattr(self, name)

    async def upload_blob(  # type: ignore[override]  # the SDK's keywords, as **kwargs
        self,
        data: Any,
        blob_type: str | BlobType = BlobType.BLOCKBLOB,
        length: int | None = None,
        metadata: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        body = _bytes(data, kwargs.get("encoding"))
        options = dict(kwargs)
        overwrite = bool(options.pop("overwrite", False))
        content_type = _content_type(options.pop("content_settings", None))
        options.pop("encoding", None)
        headers = _conditions(options)
        lean = (
            headers is not None
            and body is not None
            and blob_type in (BlobType.BLOCKBLOB, "BlockBlob")
            and length in (None, len(body))
            and not metadata
            and content_type is not False
            and len(body) <= self._lean_config.max_single_put_size
        )
        if not lean:
            return await super().upload_blob(data, blob_type, length, metadata, **kwargs)
        assert headers is not None and body is not None
        if not overwrite and not headers:
            headers["If-None-Match"] = "*"
        headers.update({"x-ms-blob-type": "BlockBlob", "Content-Length": str(len(body))})
        headers["Content-Type"] = OCTETS
        if content_type:
            headers["x-ms-blob-content-type"] = str(content_type)
        try:
            answer = await self._rest.send("PUT", self.blob_name, headers, body)
        except ResourceModifiedError as exc:
            if not overwrite:
                raise _already_exists(exc) from None
            raise
        return normalized(answer.headers, UPLOAD_HEADERS)

    async def download_blob(
        self, offset: int | None = None, length: int | None = None, **kwargs: Any
    ) -> StorageStreamDownloader[Any]:
        conditions = _conditions(dict(kwargs))
        if conditions is None or (length is not None and offset is None):
            sdk: StorageStreamDownloader[Any] = await super().download_blob(
                offset, length, **kwargs
            )
            return sdk
        start = offset or 0
        end = start + length - 1 if length is not None else None
        first = self._lean_config.max_single_get_size
        last = end if end is not None and end - start < first else start + first - 1
        try:
            answer = await self._rest.send(
                "GET",
                self.blob_name,
                {"x-ms-range": f"bytes={start}-{last}", **conditions},
                streamed=True,
            )
        except HttpResponseError as exc:
            if offset is not None or exc.status_code != 416:
                raise
            # As the SDK: a range of an empty blob is refused; read it whole for its properties.
            answer = await self._rest.send("GET", self.blob_name, conditions, streamed=True)
            return self._downloader(b"", blob_properties(answer.headers), offset, end, 0, 0)
        total = _total_size(answer.headers.get("Content-Range"))
        size = _download_size(total, offset, end)
        # Beyond one request (32 MiB): the SDK's chunked reads. Stored compressed: the SDK's
        # download decompresses by default (the stores never write such blobs).
        if len(answer.body) < size or _compressed(answer.headers):
            chunked: StorageStreamDownloader[Any] = await super().download_blob(
                offset, length, **kwargs
            )
            return chunked
        return self._downloader(
            answer.body, blob_properties(answer.headers), offset, end, total, size
        )

    def _downloader(
        self,
        body: bytes,
        properties: BlobProperties,
        offset: int | None,
        end: int | None,
        total: int,
        size: int,
    ) -> StorageStreamDownloader[Any]:
        """The SDK's downloader, holding the whole answer already: every reading method of
        it (readall, chunks, readinto, content_as_*) serves from memory, as after `_setup`."""
        downloader: StorageStreamDownloader[Any] = StorageStreamDownloader(
            config=self._lean_config,
            start_range=offset,
            end_range=end,
            name=self.blob_name,
            container=self.container_name,
            max_concurrency=1,
        )
        properties.name = self.blob_name
        properties.container = self.container_name
        properties.size = size
        properties.content_range = (
            f"bytes {offset or 0}-{end if end is not None else total - 1}/{total}"
        )
        properties.content_md5 = None  # type: ignore[attr-defined]
        downloader.properties = properties
        downloader.size = size
        downloader._file_size = total
        downloader._current_content = body
        downloader._download_offset = downloader._raw_download_offset = len(body)
        return downloader

    async def append_block(
        self, data: Any, length: int | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        position = kwargs.get("appendpos_condition")
        if (
            not isinstance(data, bytes | bytearray)
            or length not in (None, len(data))
            or set(kwargs) - {"appendpos_condition"}
            or not isinstance(position, int | None)
        ):
            return await super().append_block(data, length, **kwargs)
        headers = {"Content-Length": str(len(data)), "Content-Type": OCTETS}
        if position is not None:
            headers["x-ms-blob-condition-appendpos"] = str(position)
        answer = await self._rest.send(
            "PUT", self.blob_name, headers, bytes(data), (("comp", "appendblock"),)
        )
        return normalized(answer.headers, APPEND_HEADERS)

    async def create_append_blob(
        self,
        content_settings: ContentSettings | None = None,
        metadata: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        content_type = _content_type(content_settings)
        headers = _conditions(dict(kwargs))
        if headers is None or metadata or content_type is False:
            return await super().create_append_blob(content_settings, metadata, **kwargs)
        headers.update({"x-ms-blob-type": "AppendBlob", "Content-Length": "0"})
        if content_type:
            headers["x-ms-blob-content-type"] = str(content_type)
        answer = await self._rest.send("PUT", self.blob_name, headers)
        return normalized(answer.headers, CREATE_HEADERS)

    async def delete_blob(self, delete_snapshots: str | None = None, **kwargs: Any) -> None:
        headers = _conditions(dict(kwargs))
        if headers is None or delete_snapshots is not None:
            return await super().delete_blob(delete_snapshots, **kwargs)
        await self._rest.send("DELETE", self.blob_name, headers)

    async def get_blob_properties(self, **kwargs: Any) -> BlobProperties:
        if kwargs:
            return await super().get_blob_properties(**kwargs)
        answer = await self._rest.send("HEAD", self.blob_name, {})
        properties = blob_properties(answer.headers)
        properties.name = self.blob_name
        properties.container = self.container_name
        properties.snapshot = self.snapshot
        return properties


def _bytes(data: object, encoding: object) -> bytes | None:
    if isinstance(data, bytes | bytearray):
        return bytes(data)
    if isinstance(data, str):
        return data.encode(encoding if isinstance(encoding, str) else "UTF-8")
    return None  # streams and iterables: the SDK reads them


def _already_exists(error: ResourceModifiedError) -> ResourceExistsError:
    """The SDK's `_convert_mod_error`: a create-only upload that met an existing blob with a
    412 (some services answer so) reads as the 409 it means."""
    message = error.message.replace(
        "The condition specified using HTTP conditional header(s) is not met.",
        "The specified blob already exists.",
    ).replace("ConditionNotMet", "BlobAlreadyExists")
    converted = ResourceExistsError(message=message, response=error.response, error=error)
    converted.error_code = StorageErrorCode.BLOB_ALREADY_EXISTS  # type: ignore[attr-defined]
    return converted


def _compressed(headers: Mapping[str, str]) -> bool:
    """Whether azure-core's download would decompress this answer (gzip or deflate)."""
    return headers.get("Content-Encoding", "").lower() in ("gzip", "deflate")


def _total_size(content_range: str | None) -> int:
    """The blob's size from `bytes 0-9/1234`."""
    if content_range is None:
        raise ValueError("Required Content-Range response header is missing or malformed.")
    return int(content_range.split(" ", 1)[1].split("/", 1)[1])


def _download_size(total: int, offset: int | None, end: int | None) -> int:
    if offset is not None and end is not None:
        return min(total - offset, end - offset + 1)
    if offset is not None:
        return total - offset
    return total
