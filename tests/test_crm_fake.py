"""The fake Bitrix24 portal answers as the REST documentation shows (apidocs.bitrix24.com,
crm-lead-list): the tests that trust it are only as strict as it is."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.crm_fake import PAGE, FakeBitrix24, running


@pytest.fixture
async def portal() -> AsyncIterator[FakeBitrix24]:
    async with running() as fake:
        yield fake


async def call(portal: FakeBitrix24, method: str, params: dict[str, Any]) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{portal.webhook_url}{method}.json", json=params) as response,
    ):
        return response.status, await response.json()


async def add(portal: FakeBitrix24, origin: str, **fields: Any) -> str:
    fields = {"TITLE": f"Лид {origin}", "ORIGINATOR_ID": "leadbot", "ORIGIN_ID": origin, **fields}
    status, answer = await call(portal, "crm.lead.add", {"fields": fields})
    assert status == 200
    assert isinstance(answer["result"], int)
    return str(answer["result"])


async def test_list_filters_by_origin_and_answers_only_what_is_selected(
    portal: FakeBitrix24,
) -> None:
    await add(portal, "41")
    wanted = await add(portal, "42", PHONE=[{"VALUE": "+79991234567", "VALUE_TYPE": "WORK"}])
    await add(portal, "42", ORIGINATOR_ID="another-app")

    status, answer = await call(
        portal,
        "crm.lead.list",
        {"filter": {"ORIGINATOR_ID": "leadbot", "=ORIGIN_ID": 42}, "select": ["ID", "ORIGIN_ID"]},
    )

    assert status == 200
    assert answer["result"] == [{"ID": wanted, "ORIGIN_ID": "42"}]
    assert answer["total"] == 1
    assert "next" not in answer


async def test_list_without_select_leaves_out_multiple_fields(portal: FakeBitrix24) -> None:
    await add(portal, "42", PHONE=[{"VALUE": "+79991234567", "VALUE_TYPE": "WORK"}])

    _, answer = await call(portal, "crm.lead.list", {})

    [lead] = answer["result"]
    assert "PHONE" not in lead
    assert lead["ORIGIN_ID"] == "42"


async def test_list_pages_by_fifty(portal: FakeBitrix24) -> None:
    for number in range(PAGE + 3):
        await add(portal, str(number))

    _, first = await call(portal, "crm.lead.list", {"select": ["ID"]})
    _, second = await call(portal, "crm.lead.list", {"select": ["ID"], "start": first["next"]})

    assert (len(first["result"]), first["total"], first["next"]) == (PAGE, PAGE + 3, PAGE)
    assert (len(second["result"]), second["total"]) == (3, PAGE + 3)
    assert "next" not in second


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/rest/1/{token}/crm.lead.remove.json", 404, "ERROR_METHOD_NOT_FOUND"),
        ("/rest/1/wrong/crm.lead.add.json", 401, "INVALID_CREDENTIALS"),
        ("/rest/2/{token}/crm.lead.add.json", 401, "INVALID_CREDENTIALS"),
    ],
)
async def test_wrong_calls_get_bitrix24_system_errors(
    portal: FakeBitrix24, path: str, status: int, code: str
) -> None:
    url = portal.base_url + path.format(token=portal.token)
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, json={"fields": {"TITLE": "Лид"}}) as response,
    ):
        assert response.status == status
        assert (await response.json())["error"] == code
    assert portal.leads == {}


async def test_an_unmodelled_filter_is_refused_rather_than_ignored(portal: FakeBitrix24) -> None:
    status, answer = await call(portal, "crm.lead.list", {"filter": {">ID": 1}})

    assert status == 400
    assert "unsupported filter" in answer["error_description"]
