"""X-Twilio-Signature checks against the sample payloads and twilio's own test vector."""

from __future__ import annotations

import pytest
from starlette.datastructures import FormData

from bots.whatsapp.inbound import signature_valid
from tests.bots.whatsapp.conftest import SAMPLES, load_form

SAMPLE_FILES = sorted(p.name for p in SAMPLES.glob("*.txt"))


def test_every_sample_has_a_signature(signatures):
    assert SAMPLE_FILES and set(SAMPLE_FILES) == set(signatures["requests"])


@pytest.mark.parametrize("name", SAMPLE_FILES)
def test_sample_validates(name, signatures):
    signed = signatures["requests"][name]
    form = load_form(name)
    assert signature_valid(signatures["auth_token"], signed["url"], form, signed["X-Twilio-Signature"])
    # What FastAPI's `await request.form()` hands the gateway.
    assert signature_valid(
        signatures["auth_token"], signed["url"], FormData(list(form.items())), signed["X-Twilio-Signature"]
    )


@pytest.mark.parametrize("name", SAMPLE_FILES)
def test_any_changed_value_is_rejected(name, signatures):
    signed = signatures["requests"][name]
    token, signature = signatures["auth_token"], signed["X-Twilio-Signature"]
    form = load_form(name)
    for key in form:
        tampered = {**form, key: form[key] + "x"}
        assert not signature_valid(token, signed["url"], tampered, signature), key
    removed = dict(list(form.items())[1:])
    added = {**form, "Extra": "1"}
    for changed in (removed, added):
        assert not signature_valid(token, signed["url"], changed, signature)


@pytest.mark.parametrize("name", SAMPLE_FILES)
def test_other_url_token_or_missing_header_is_rejected(name, signatures):
    signed = signatures["requests"][name]
    url, token, signature = signed["url"], signatures["auth_token"], signed["X-Twilio-Signature"]
    form = load_form(name)
    for other_url in (
        url.replace("https://", "http://"),
        url.replace("bot.example.com", "10.0.0.5:8000"),  # what the app sees behind a proxy
        url + "/",
        url + "?x=1",
        url.replace("/webhooks/", "/hooks/"),
    ):
        assert not signature_valid(token, other_url, form, signature), other_url
    assert not signature_valid(token + "0", url, form, signature)
    assert not signature_valid("", url, form, signature)
    assert not signature_valid(token, url, form, None)
    assert not signature_valid(token, url, form, "")
    assert not signature_valid(token, url, form, signature[:-2] + "A=")


def test_explicit_default_port_is_the_same_url(signatures):
    # Twilio signs with or without the port inconsistently; the validator accepts both.
    signed = signatures["requests"]["whatsapp_text.txt"]
    url = signed["url"].replace("bot.example.com", "bot.example.com:443")
    form = load_form("whatsapp_text.txt")
    assert signature_valid(signatures["auth_token"], url, form, signed["X-Twilio-Signature"])


def test_twilio_documented_vector():
    # From twilio-python's tests/unit/test_request_validator.py (and Twilio's security docs).
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Digits": "1234",
        "From": "+14158675309",
        "To": "+18005551212",
        "Caller": "+14158675309",
    }
    assert signature_valid("12345", url, params, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    assert signature_valid("12345", url.replace(".com", ".com:1234"), params, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")
    assert not signature_valid("12345", url, {**params, "Digits": "1235"}, "RSOYDt4T1cUTdK1PDd93/VVr8B8=")


def test_odd_values_do_not_raise(signatures):
    signed = signatures["requests"]["whatsapp_text.txt"]
    odd: dict = {"Body": None, "From": 7}  # not strings: the validator's concatenation raises
    assert not signature_valid(signatures["auth_token"], signed["url"], odd, signed["X-Twilio-Signature"])
