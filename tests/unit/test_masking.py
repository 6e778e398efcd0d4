"""Masking: no secret leaves the service in a snapshot, response or log line."""

from __future__ import annotations

import copy

import pytest

from domain.masking import MASK, is_secret_key, mask_secrets, mask_text, mask_url

# Secret names


@pytest.mark.parametrize(
    "name",
    [
        "auth",
        "Authorization",
        "proxy-authorization",
        "Cookie",
        "Set-Cookie",
        "token",
        "accessToken",
        "X-Auth-Token",
        "client_secret",
        "webhook-secret",
        "password",
        "DB_PASSWD",
        "apiKey",
        "X-Api-Key",
        "KEY",
    ],
)
def test_secret_names_are_recognised_in_any_case(name: str) -> None:
    assert is_secret_key(name) is True


@pytest.mark.parametrize(
    "name", ["Content-Type", "Accept", "authMethod", "author", "username", "date"]
)
def test_ordinary_names_are_not_secret(name: str) -> None:
    assert is_secret_key(name) is False


# auth objects


def test_a_bearer_auth_keeps_its_method_and_masks_the_token() -> None:
    config = {"auth": {"authMethod": "bearer", "token": "example-token"}}

    assert mask_secrets(config) == {"auth": {"authMethod": "bearer", "token": MASK}}


def test_a_basic_auth_keeps_its_method_and_masks_username_and_password() -> None:
    config = {"auth": {"authMethod": "basic", "username": "ana", "password": "pw"}}

    assert mask_secrets(config) == {
        "auth": {"authMethod": "basic", "username": MASK, "password": MASK}
    }


def test_an_auth_string_is_masked_whole() -> None:
    assert mask_secrets({"auth": "ana:pw"}) == {"auth": MASK}


def test_an_unset_secret_stays_unset() -> None:
    config = {"auth": None, "headers": {"Authorization": None}}

    assert mask_secrets(config) == config


def test_an_unset_field_of_an_auth_object_stays_unset() -> None:
    config = {"auth": {"authMethod": "basic", "username": "ana", "password": None}}

    assert mask_secrets(config)["auth"] == {  # type: ignore[index]
        "authMethod": "basic",
        "username": MASK,
        "password": None,
    }


# Headers and fields


def test_authorization_and_cookie_headers_are_masked() -> None:
    headers = {"Authorization": "Bearer abc", "Cookie": "sid=1", "Accept": "application/json"}

    assert mask_secrets({"headers": headers}) == {
        "headers": {"Authorization": MASK, "Cookie": MASK, "Accept": "application/json"}
    }


@pytest.mark.parametrize("name", ["X-Auth-Token", "webhook-secret", "db_password", "X-Api-Key"])
def test_a_header_whose_name_holds_a_secret_word_is_masked(name: str) -> None:
    assert mask_secrets({"headers": {name: "s3cr3t"}}) == {"headers": {name: MASK}}


def test_secret_fields_are_masked_at_any_depth() -> None:
    body = {"outer": {"inner": {"accessToken": "t", "apiKey": "k", "note": "hi"}}}

    assert mask_secrets({"body": body}) == {
        "body": {"outer": {"inner": {"accessToken": MASK, "apiKey": MASK, "note": "hi"}}}
    }


def test_a_secret_field_holding_an_object_is_masked_whole() -> None:
    assert mask_secrets({"secrets": {"a": 1, "b": [2]}}) == {"secrets": MASK}


def test_a_secret_field_holding_a_number_is_masked() -> None:
    assert mask_secrets({"pin_password": 1234}) == {"pin_password": MASK}


def test_dicts_inside_lists_are_masked() -> None:
    items = [{"client_secret": "s", "id": 1}, {"id": 2}, "text", 3]

    assert mask_secrets({"items": items}) == {
        "items": [{"client_secret": MASK, "id": 1}, {"id": 2}, "text", 3]
    }


def test_non_secret_fields_are_left_untouched() -> None:
    config = {
        "url": "https://example.com/a",
        "method": "POST",
        "headers": {"Content-Type": "application/json"},
        "body": {"type": "full", "count": 2, "flags": [True, None]},
        "timeout": 30000,
    }

    assert mask_secrets(config) == config


def test_scalars_pass_through() -> None:
    assert [mask_secrets(v) for v in ("token", 1, None)] == ["token", 1, None]


def test_masking_leaves_the_input_untouched() -> None:
    config = {
        "auth": {"authMethod": "bearer", "token": "t"},
        "headers": {"X-Api-Key": "k"},
        "body": [{"password": "p"}],
    }
    before = copy.deepcopy(config)

    masked = mask_secrets(config)

    assert config == before
    assert masked != config


# URLs


def test_a_userinfo_password_is_masked() -> None:
    assert mask_url("https://user:pw@host/") == "https://user:***@host/"


def test_a_userinfo_password_holding_an_at_sign_is_masked() -> None:
    assert mask_url("https://user:p@ss@host:8443/x") == "https://user:***@host:8443/x"


def test_a_secret_query_parameter_is_masked_and_the_rest_kept() -> None:
    assert mask_url("https://h/p?token=abc&x=1") == "https://h/p?token=***&x=1"


def test_query_parameter_names_are_matched_in_any_case_and_encoding() -> None:
    url = "https://h/?API%5FKEY=a&Client_Secret=b&page=2"

    assert mask_url(url) == "https://h/?API%5FKEY=***&Client_Secret=***&page=2"


def test_an_access_token_in_the_fragment_is_masked() -> None:
    assert (
        mask_url("https://h/cb#access_token=abc&state=1")
        == "https://h/cb#access_token=***&state=1"
    )


def test_a_url_without_secrets_is_unchanged() -> None:
    url = "https://user@example.com:8080/a/${T:YYYY}?q=a%20b&flag#top"

    assert mask_url(url) == url


def test_an_unparsable_url_is_masked_whole() -> None:
    assert mask_url("http://[::1/x?token=abc") == MASK


# Free text (log lines)


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (
            "calling https://u:pw@h.example/x?token=abc&a=1 failed",
            "calling https://u:***@h.example/x?token=***&a=1 failed",
        ),
        ("Authorization: Bearer eyJhbGc.x.y sent", "Authorization: Bearer *** sent"),
        ("auth=Basic dXNlcjpwdw==", "auth=Basic ***"),
        ("{'token': 'abc', 'name': 'n'}", "{'token': '***', 'name': 'n'}"),
        ('"password": "s3cret", "user": "u"', '"password": "***", "user": "u"'),
        ('"GET /hook?access_token=xyz&page=2 HTTP/1.1" 200', '"GET /hook?access_token=***&page=2 HTTP/1.1" 200'),
        ("apiKey=12345; other=2", "apiKey=***; other=2"),
    ],
)  # fmt: skip
def test_secrets_quoted_in_free_text_are_masked(text: str, masked: str) -> None:
    assert mask_text(text) == masked


def test_free_text_without_secrets_is_unchanged() -> None:
    text = "job nightly of application crm skipped: manually modified by ana; retry in 5 s"
    assert mask_text(text) == text
