"""Standard Webhooks: our verifier against signatures made by the reference `standardwebhooks`."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook

from agent.errors import BadRequest, SettingsError, Unauthorized
from agent.webhooks import (
    CallbackBatch,
    CallbackItem,
    decode_secret,
    parse_callback,
    parse_seed_callback,
    verify,
)

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


def detail_of(error: pytest.ExceptionInfo[Unauthorized] | pytest.ExceptionInfo[BadRequest]) -> str:
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


# --- parse_callback -----------------------------------------------------------------------


def test_a_batch_callback_parses_into_items():
    body = json.dumps(
        {
            "type": "conversations.due",
            "items": [
                {
                    "schedule_id": "s1",
                    "conversation_id": "c-1",
                    "content": "one",
                    "scheduled_time": "2025-01-01T00:00:00Z",
                },
                {"conversation_id": "c_2", "content": "two"},
            ],
            "extra": "ignored",
        }
    ).encode()
    assert parse_callback(body) == CallbackBatch(
        (
            CallbackItem("s1", "c-1", "one", "2025-01-01T00:00:00Z"),
            CallbackItem(None, "c_2", "two", None),
        )
    )


def test_the_seeds_single_form_becomes_one_item():
    body = json.dumps({"conversationId": "abc123", "status": "due", "content": "hello"}).encode()
    assert parse_callback(body) == CallbackBatch((CallbackItem(None, "abc123", "hello", None),))


def test_the_largest_allowed_batch_and_content_are_accepted():
    item = {"conversation_id": "c" * 64, "content": "x" * 32_000}
    body = json.dumps({"type": "conversations.due", "items": [item] * 1000}).encode()
    assert len(parse_callback(body).items) == 1000


def batch(*items: object) -> dict[str, object]:
    return {"type": "conversations.due", "items": list(items)}


GOOD_ITEM = {"conversation_id": "c1", "content": "hi"}


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        (b"{not json", "body is not valid JSON"),
        (b"\xff\xfe\xfa", "body is not UTF-8"),
        ([GOOD_ITEM], "body must be a JSON object"),
        ({"hello": "world"}, "body must be {"),
        (
            {"type": "conversations.cancelled", "items": [GOOD_ITEM]},
            "type must be 'conversations.due'",
        ),
        ({"type": "conversations.due"}, "items must be a non-empty list"),
        (batch(), "items must be a non-empty list"),
        (
            {"type": "conversations.due", "items": {"0": GOOD_ITEM}},
            "items must be a non-empty list",
        ),
        (batch(*[GOOD_ITEM] * 1001), "at most 1000"),
        (batch(GOOD_ITEM, "text"), "items[1] must be an object"),
        (batch({"conversation_id": "c1"}), "items[0].content must be a non-empty string"),
        (
            batch({"conversation_id": "c1", "content": "   "}),
            "items[0].content must be a non-empty string",
        ),
        (batch({"conversation_id": "c1", "content": 7}), "items[0].content"),
        (batch({"conversation_id": "c1", "content": "x" * 32_001}), "at most 32000 characters"),
        (batch({"content": "hi"}), "items[0].conversation_id must match"),
        (
            batch({"conversation_id": "../etc", "content": "hi"}),
            "items[0].conversation_id must match",
        ),
        (
            batch({"conversation_id": "c" * 65, "content": "hi"}),
            "items[0].conversation_id must match",
        ),
        (batch({**GOOD_ITEM, "schedule_id": 5}), "items[0].schedule_id must be a string"),
        (batch({**GOOD_ITEM, "scheduled_time": ""}), "items[0].scheduled_time must be a string"),
        ({"conversationId": "a b", "content": "hi"}, "conversationId must match"),
        ({"conversationId": "ab", "content": ""}, "content must be a non-empty string"),
        ({"conversationId": "ab", "content": "hi", "status": 3}, "status must be a string"),
    ],
)
def test_a_malformed_callback_is_a_bad_request_naming_the_problem(document: object, problem: str):
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    with pytest.raises(BadRequest) as error:
        parse_callback(body)
    assert problem in detail_of(error)


# --- parse_seed_callback (the unsigned route) ------------------------------------------------


def test_the_seeds_body_from_an_unsigned_sender_becomes_one_item():
    document = {"conversationId": "abc123", "status": "due", "content": "hello"}
    assert parse_seed_callback(document) == CallbackItem(None, "abc123", "hello", None)
    assert parse_seed_callback({"conversationId": "abc123", "content": "hi"}).content == "hi"


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ({}, "'conversationId' is required"),
        ({"content": "hi", "status": "due"}, "'conversationId' is required"),
        ({"conversationId": "", "content": "hi"}, "conversationId must match"),
        ({"conversationId": "../x", "content": "hi"}, "conversationId must match"),
        ({"conversationId": "ab"}, "content must be a non-empty string"),
        ({"conversationId": "ab", "content": " \n"}, "content must be a non-empty string"),
        ({"conversationId": "ab", "content": ["hi"]}, "content must be a non-empty string"),
        ({"conversationId": "ab", "content": "hi", "status": {}}, "status must be a string"),
    ],
)
def test_a_bad_seed_body_is_a_bad_request_naming_the_field(document: dict, problem: str):
    with pytest.raises(BadRequest) as error:
        parse_seed_callback(document)
    assert problem in detail_of(error)


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


@pytest.mark.parametrize("length", [1, 128])
def test_a_schedule_id_of_one_to_128_characters_is_accepted(length: int):
    body = json.dumps(batch({**GOOD_ITEM, "schedule_id": "s" * length})).encode()
    assert parse_callback(body).items[0].schedule_id == "s" * length


def test_a_body_that_is_not_json_is_named_the_callback_body():
    with pytest.raises(BadRequest) as error:
        parse_callback(b"{not json")
    assert detail_of(error).startswith("the callback body is not valid JSON")


def test_a_body_of_neither_form_shows_both_forms_with_their_field_names():
    with pytest.raises(BadRequest) as error:
        parse_callback(json.dumps({"hello": "world"}).encode())
    assert '{"type": "conversations.due", "items": [...]}' in detail_of(error)
    assert '{"conversationId": ..., "status": ..., "content": ...}' in detail_of(error)


def test_a_seed_body_without_conversation_id_shows_the_form_to_send():
    with pytest.raises(BadRequest) as error:
        parse_seed_callback({"content": "hi"})
    assert '{"conversationId": ..., "status": ..., "content": ...}' in detail_of(error)
