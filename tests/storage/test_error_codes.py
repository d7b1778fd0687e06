"""Storage errors are recognised by their service code, including errors that carry none."""

from __future__ import annotations

from azure.core.exceptions import HttpResponseError

from storage.json_blobs import is_blob_not_found


def test_a_404_without_a_storage_error_code_is_not_taken_for_a_missing_blob() -> None:
    # azure-core raises HttpResponseError itself (e.g. a proxy's 404) without the storage
    # SDK's error_code attribute: reading it must not fail with AttributeError.
    error = HttpResponseError(message="404 from a proxy")
    error.status_code = 404
    assert is_blob_not_found(error) is False


def test_a_404_with_the_blob_not_found_code_is_a_missing_blob() -> None:
    error = HttpResponseError(message="The specified blob does not exist.")
    error.status_code = 404
    error.error_code = "BlobNotFound"  # what the storage SDK's error processing sets
    assert is_blob_not_found(error) is True
