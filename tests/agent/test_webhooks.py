"""Standard Webhooks: our verifier against signatures made by the reference `standardwebhooks`."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook

from agent.errors import SettingsError, Unauthorized
from agent.webhooks import decode_secret, verify

SECRET = "whsec_" + base64.b64encode(b"the-current-secret-32-bytes-long").decode()
OLD_SECRET = "whsec_" + base64.b64encode(b"the-retired-secret-32-bytes-long").decode()
KEY, OLD_KEY = decode_secret(SECRET), decode_secret(OLD_SECRET)
NOW = 1_750_000_000
WEBHOOK_ID = "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"
BODY = json.dumps(
    {
        "type": "conversations.due",
        "items": [
            {
                "schedule_id": "sch_1",
                "conversation_id": "conv-1",
                "content": "Remind me about the report",
                "scheduled_time": "2025-06-15T09:00:00+00:00",
            }
        ],
    }
).encode()


def reference_signature(
    secret: str, body: bytes = BODY, timestamp: int = NOW, webhook_id: str = WEBHOOK_ID
) -> str:
    when = datetime.fromtimestamp(timestamp, tz=UTC)
    return Webhook(secret).sign(msg_id=webhook_id, timestamp=when, data=body.decode())


def headers(signature: str, timestamp: int = NOW, webhook_id: str = WEBHOOK_ID) -> dict[str, str]:
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
    }


def detail_of(error: pytest.ExceptionInfo[Unauthorized]) -> str:
    return error.value.detail


# --- verify -------------------------------------------------------------------------------


def test_a_delivery_signed_by_the_reference_library_is_accepted_and_its_id_returned():
    assert verify(KEY, headers(reference_signature(SECRET)), BODY, now=NOW) == WEBHOOK_ID


def test_header_names_are_matched_case_insensitively():
    sent = {name.title(): value for name, value in headers(reference_signature(SECRET)).items()}
    assert "Webhook-Signature" in sent
    assert verify(KEY, sent, BODY, now=NOW) == WEBHOOK_ID


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_a_missing_header_is_unauthorized_and_named(missing: str):
    sent = headers(reference_signature(SECRET))
    del sent[missing]
    with pytest.raises(Unauthorized) as error:
        verify(KEY, sent, BODY, now=NOW)
    assert detail_of(error) == f"missing {missing} header"


def test_an_empty_signature_header_counts_as_missing():
    with pytest.raises(Unauthorized, match="missing webhook-signature header"):
        verify(KEY, headers("  "), BODY, now=NOW)


def test_a_tampered_body_has_no_valid_signature():
    tampered = BODY.replace(b"report", b"r3port")
    with pytest.raises(Unauthorized) as error:
        verify(KEY, headers(reference_signature(SECRET)), tampered, now=NOW)
    assert detail_of(error) == "no valid signature in the webhook-signature header"


def test_a_tampered_signature_is_rejected():
    version, encoded = reference_signature(SECRET).split(",")
    digest = bytearray(base64.b64decode(encoded))
    digest[0] ^= 0x01
    tampered = f"{version},{base64.b64encode(bytes(digest)).decode()}"
    with pytest.raises(Unauthorized, match="no valid signature"):
        verify(KEY, headers(tampered), BODY, now=NOW)


def test_a_signature_for_another_webhook_id_is_rejected():
    signed_for_other = reference_signature(SECRET, webhook_id="msg_other")
    with pytest.raises(Unauthorized, match="no valid signature"):
        verify(KEY, headers(signed_for_other), BODY, now=NOW)


def test_a_signature_made_with_another_secret_is_rejected():
    with pytest.raises(Unauthorized, match="no valid signature"):
        verify(KEY, headers(reference_signature(OLD_SECRET)), BODY, now=NOW)


@pytest.mark.parametrize("offset", [-301, 301, -86_400, 86_400])
def test_a_timestamp_more_than_five_minutes_off_is_rejected_even_if_signed(offset: int):
    timestamp = NOW + offset
    signed = headers(reference_signature(SECRET, timestamp=timestamp), timestamp=timestamp)
    with pytest.raises(Unauthorized) as error:
        verify(KEY, signed, BODY, now=NOW)
    assert "timestamp too old or too new" in detail_of(error)


@pytest.mark.parametrize("offset", [-300, 300])
def test_a_timestamp_exactly_five_minutes_off_is_still_accepted(offset: int):
    timestamp = NOW + offset
    signed = headers(reference_signature(SECRET, timestamp=timestamp), timestamp=timestamp)
    assert verify(KEY, signed, BODY, now=NOW) == WEBHOOK_ID


def test_the_tolerance_can_be_narrowed():
    signed = headers(reference_signature(SECRET, timestamp=NOW - 10), timestamp=NOW - 10)
    with pytest.raises(Unauthorized, match="timestamp too old or too new"):
        verify(KEY, signed, BODY, now=NOW, tolerance_seconds=5)


@pytest.mark.parametrize("timestamp", ["soon", "1750000000.5", "-1750000000", ""])
def test_a_malformed_timestamp_is_rejected(timestamp: str):
    sent = {**headers(reference_signature(SECRET)), "webhook-timestamp": timestamp}
    with pytest.raises(Unauthorized, match="webhook-timestamp"):
        verify(KEY, sent, BODY, now=NOW)


@pytest.mark.parametrize("webhook_id", ["a/b", "id?x=1", "x" * 129, "with space"])
def test_a_webhook_id_that_cannot_be_an_instance_id_is_rejected(webhook_id: str):
    signed = headers(reference_signature(SECRET, webhook_id=webhook_id), webhook_id=webhook_id)
    with pytest.raises(Unauthorized, match="malformed webhook-id"):
        verify(KEY, signed, BODY, now=NOW)


def test_any_one_valid_signature_among_several_passes():
    invalid = reference_signature(OLD_SECRET)
    several = f"v1a,c29tZXRoaW5nIGVsc2U= v1,not-base64!! {invalid} {reference_signature(SECRET)}"
    assert verify(KEY, headers(several), BODY, now=NOW) == WEBHOOK_ID


def test_several_signatures_none_valid_are_rejected():
    several = f"{reference_signature(OLD_SECRET)} v1,{base64.b64encode(b'x' * 32).decode()}"
    with pytest.raises(Unauthorized, match="no valid signature"):
        verify(KEY, headers(several), BODY, now=NOW)


def test_secret_rotation_the_sender_signs_with_both_keys_and_either_receiver_accepts():
    # During a rotation the sender signs with the old and the new secret; receivers still on
    # the old secret and those already on the new one both accept, and after it the old fails.
    both = f"{reference_signature(OLD_SECRET)} {reference_signature(SECRET)}"
    assert verify(OLD_KEY, headers(both), BODY, now=NOW) == WEBHOOK_ID
    assert verify(KEY, headers(both), BODY, now=NOW) == WEBHOOK_ID
    with pytest.raises(Unauthorized, match="no valid signature"):
        verify(KEY, headers(reference_signature(OLD_SECRET)), BODY, now=NOW)


@pytest.mark.parametrize(
    "secret",
    [
        "c2VjcmV0",
        "whsec_",
        "whsec_!!!not-base64!!!",
        "whsec_" + base64.b64encode(b"short").decode(),
    ],
)
def test_a_malformed_secret_is_a_settings_error_naming_the_setting(secret: str):
    with pytest.raises(SettingsError, match="SCHEDULER_WEBHOOK_SECRET"):
        decode_secret(secret)


def test_an_unpadded_secret_works_like_the_reference_library():
    unpadded = "whsec_" + base64.b64encode(b"a-secret-of-31-bytes-is-unpadde").decode().rstrip("=")
    assert not unpadded.endswith("=")
    signed = headers(reference_signature(unpadded))
    assert verify(decode_secret(unpadded), signed, BODY, now=NOW) == WEBHOOK_ID


# --- what the mutation run (scripts/mutants.sh) found untested ---------------------------------


def test_a_signature_with_characters_outside_base64_is_not_accepted():
    # Strict decoding, as the reference library compares: junk is not silently dropped.
    version, encoded = reference_signature(SECRET).split(",")
    with pytest.raises(Unauthorized, match="no valid signature"):
        verify(KEY, headers(f"{version},{encoded[:8]}!{encoded[8:]}"), BODY, now=NOW)


def test_a_valid_digest_labelled_with_another_version_is_not_accepted():
    _, encoded = reference_signature(SECRET).split(",")
    with pytest.raises(Unauthorized, match="no valid signature"):
        verify(KEY, headers(f"v2,{encoded}"), BODY, now=NOW)


def test_a_secret_with_a_stray_character_is_a_settings_error_not_another_key():
    # Dropping the stray character would leave a valid 32-byte key the sender does not hold.
    with pytest.raises(SettingsError, match="not valid base64"):
        decode_secret(SECRET + "!")


@pytest.mark.parametrize(
    ("secret", "reason"),
    [
        ("c2VjcmV0", "must start with 'whsec_'"),
        ("whsec_!!!not-base64!!!", "is not valid base64 after 'whsec_'"),
        ("whsec_" + base64.b64encode(b"short").decode(), "key is shorter than 16 bytes"),
    ],
)
def test_a_malformed_secret_tells_the_operator_what_is_wrong(secret: str, reason: str):
    with pytest.raises(SettingsError) as error:
        decode_secret(secret)
    assert error.value.problem == reason


def test_a_secret_of_exactly_sixteen_bytes_is_long_enough():
    secret = "whsec_" + base64.b64encode(b"sixteen-byte-key").decode()
    signed = headers(reference_signature(secret))
    assert verify(decode_secret(secret), signed, BODY, now=NOW) == WEBHOOK_ID
