"""Small JSON documents in Blob: create-only, overwrite, or ETag-conditional writes."""

from __future__ import annotations

import json
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError
from azure.storage.blob import ContentSettings, StorageErrorCode
from azure.storage.blob.aio import ContainerClient

JSON = "application/json"


class JsonBlobs:
    def __init__(self, container: ContainerClient) -> None:
        self._container = container

    async def upload(
        self,
        name: str,
        data: dict[str, Any],
        *,
        overwrite: bool = False,
        etag: str | None = None,
        match_condition: MatchConditions | None = None,
    ) -> dict[str, Any]:
        """Upload JSON; create-only (ResourceExistsError) unless `overwrite` or an ETag condition."""
        conditions: dict[str, Any] = {}
        if match_condition is not None:
            conditions = {"etag": etag, "match_condition": match_condition}
        blob = self._container.get_blob_client(name)
        return await blob.upload_blob(
            json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8"),
            overwrite=overwrite or match_condition is not None,
            content_settings=ContentSettings(content_type=JSON),
            **conditions,
        )

    async def download(self, name: str) -> tuple[dict[str, Any] | None, str | None]:
        """(parsed JSON, ETag), or (None, None) when the blob does not exist."""
        try:
            download = await self._container.download_blob(name)
        except HttpResponseError as exc:
            if is_blob_not_found(exc):
                return None, None
            raise
        return json.loads(await download.readall()), download.properties.etag


def is_blob_not_found(exc: HttpResponseError) -> bool:
    # getattr: only errors the storage SDK processed carry error_code (not azure-core's own)
    code = getattr(exc, "error_code", None)
    return exc.status_code == 404 and code == StorageErrorCode.BLOB_NOT_FOUND
