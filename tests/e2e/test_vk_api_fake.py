"""The VK API fake speaks what vkbottle speaks: its own `API`, uploader and `BotPolling`
against the fake over real HTTP, answers parsed by vkbottle's own models."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pydantic
import pytest
from vkbottle import API, AiohttpClient, Callback, DocMessagesUploader, Keyboard, OpenLink, Text
from vkbottle.exception_factory import VKAPIError
from vkbottle.polling import BotPolling
from vkbottle.tools.mini_types.bot import message_min
from vkbottle_types import API_VERSION, GroupTypes

from tests.e2e.vk_api import CONVERSATIONS, VkApiFake


@pytest.fixture
async def api(vk_api: VkApiFake) -> AsyncIterator[API]:
    """vkbottle's API with the community token, pointed at the fake as the bot points it."""
    client = AiohttpClient()  # not the process-wide singleton: closed with the test
    vk = API(token=vk_api.token, http_client=client)
    vk.API_URL = vk_api.api_url
    try:
        yield vk
    finally:
        await client.close()


def card_keyboard() -> str:
    keyboard = Keyboard(inline=True)
    keyboard.add(Callback("Взять", payload={"a": "claim:7"}))
    keyboard.add(Text("Ещё", payload={"a": "more"}))
    keyboard.row()
    keyboard.add(OpenLink("https://example.com/guide", "Сайт"))
    return keyboard.get_json()


async def test_fake_speaks_vkbottles_version(vk_api: VkApiFake) -> None:
    assert vk_api.callback_event("message_new", {}, secret="s")["v"] == API_VERSION == "5.199"


# ------------------------------------------------------------------------------ messages.send


async def test_send_delivers_with_keyboard_intent_and_flags(vk_api: VkApiFake, api: API) -> None:
    user = vk_api.new_user_id()  # never wrote: the intent lets the community write
    message_id = await api.messages.send(
        peer_id=user,
        random_id=41,
        message="Привет!",
        keyboard=card_keyboard(),
        intent="customer_support",
        dont_parse_links=True,
    )
    assert isinstance(message_id, int)
    assert message_id > 0
    [sent] = vk_api.sent(user)
    assert (sent.message_id, sent.conversation_message_id) == (message_id, 1)
    assert (sent.text, sent.intent, sent.random_id) == ("Привет!", "customer_support", 41)
    assert sent.dont_parse_links
    assert sent.inline
    assert sent.labels() == ["Взять", "Ещё", "Сайт"]
    assert sent.payload("Взять") == {"a": "claim:7"}
    assert sent.button("Сайт") == {
        "type": "open_link",
        "link": "https://example.com/guide",
        "label": "Сайт",
    }
    [call] = vk_api.calls("messages.send")
    assert call.ok
    assert call.params["v"] == API_VERSION
    assert "access_token" not in call.params


async def test_a_repeated_random_id_returns_the_first_message_and_delivers_nothing(
    vk_api: VkApiFake, api: API
) -> None:
    user, other = vk_api.new_writer(), vk_api.new_writer()
    first = await api.messages.send(peer_id=user, random_id=1234, message="один раз")
    again = await api.messages.send(peer_id=user, random_id=1234, message="один раз")
    elsewhere = await api.messages.send(peer_id=other, random_id=1234, message="другому")
    assert again == first
    assert elsewhere != first
    assert [m.text for m in vk_api.sent(user)] == ["один раз"]
    # random_id 0 means "no check": both go out.
    await api.messages.send(user_id=user, random_id=0, message="a")
    await api.messages.send(user_id=user, random_id=0, message="a")
    assert [m.text for m in vk_api.sent(user)] == ["один раз", "a", "a"]


async def test_peer_ids_answers_a_list_and_conversations_get_no_message_id(
    vk_api: VkApiFake, api: API
) -> None:
    user, chat = vk_api.new_writer(), vk_api.new_chat_peer_id()
    items = await api.messages.send(peer_ids=[user, chat], random_id=0, message="всем")
    assert isinstance(items, list)
    by_peer = {item.peer_id: item for item in items}
    assert by_peer[user].message_id > 0
    assert (by_peer[chat].message_id, by_peer[chat].conversation_message_id) == (0, 1)
    # With peer_id, a conversation's message id is 0 as well: bots edit by cmid there.
    assert await api.messages.send(peer_id=chat, random_id=0, message="ещё") == 0
    assert [m.conversation_message_id for m in vk_api.sent(chat)] == [1, 2]


async def test_a_failed_peer_in_a_batch_fails_its_item_only(vk_api: VkApiFake, api: API) -> None:
    ok, closed = vk_api.new_writer(), vk_api.new_writer()
    vk_api.fail("messages.send", 901, peer_id=closed)
    answer = await api.request(
        "messages.send", {"peer_ids": f"{ok},{closed}", "random_id": 0, "message": "x"}
    )
    good, bad = answer["response"]
    assert good["peer_id"] == ok
    assert good["message_id"] > 0
    assert bad == {
        "peer_id": closed,
        "error": {"code": 901, "description": "Can't send messages for users without permission"},
    }
    assert vk_api.sent(closed) == []


async def test_vkbottles_typed_peer_ids_answer_cannot_read_a_failed_item(
    vk_api: VkApiFake, api: API
) -> None:
    """VK leaves message_id out of a failed item; vkbottle_types requires it. A bot that
    needs per-peer errors reads the raw answer (`api.request`), as the test above does."""
    closed = vk_api.new_writer()
    vk_api.fail("messages.send", 902, peer_id=closed)
    with pytest.raises(pydantic.ValidationError, match="message_id"):
        await api.messages.send(peer_ids=[closed], random_id=0, message="x")


async def test_send_is_checked_as_vk_checks_it(vk_api: VkApiFake, api: API) -> None:
    user = vk_api.new_writer()
    seven_rows = json.dumps(
        {"inline": True, "buttons": [[{"action": {"type": "text", "label": "x"}}]] * 7}
    )
    long_label = Keyboard(inline=True).add(Text("x" * 41)).get_json()
    cases = [
        ({"keyboard": seven_rows}, 911),
        ({"keyboard": long_label}, 911),
        ({"keyboard": "{not json"}, 911),
        ({"message": "x" * 4097}, 914),
        ({"intent": "spam"}, 100),
        ({"attachment": "doc-1_2"}, 100),  # no such document was saved
        ({"message": ""}, 100),
        ({"random_id": None}, 100),
    ]
    for extra, code in cases:
        params = {"peer_id": user, "random_id": 0, "message": "x", **extra}
        with pytest.raises(VKAPIError[code]):
            await api.request("messages.send", params)
    assert vk_api.sent(user) == []
    assert [c.error_code for c in vk_api.calls("messages.send")] == [c for _, c in cases]


# ------------------------------------------------------------------------------ errors


async def test_error_901_surfaces_as_vkbottles_error_with_vks_text(
    vk_api: VkApiFake, api: API
) -> None:
    user = vk_api.new_writer()
    vk_api.fail("messages.send", 901, peer_id=user)
    with pytest.raises(VKAPIError[901]) as caught:
        await api.messages.send(peer_id=user, random_id=5, message="hi")
    assert caught.value.code == 901
    assert str(caught.value) == "Can't send messages for users without permission"
    assert caught.value.request_params["method"] == "messages.send"
    assert caught.value.request_params["peer_id"] == str(user)
    # Once: the next call goes through.
    assert await api.messages.send(peer_id=user, random_id=5, message="hi") > 0


async def test_a_person_who_denies_messages_gets_901_until_they_allow(
    vk_api: VkApiFake, api: API
) -> None:
    user = vk_api.new_writer()
    vk_api.deny_messages(user)
    for _ in range(2):
        with pytest.raises(VKAPIError[901]):
            await api.messages.send(peer_id=user, random_id=0, message="hi")
    vk_api.allow_messages(user)
    await api.messages.send(peer_id=user, random_id=0, message="hi")
    assert [u["type"] for u in vk_api.updates()] == ["message_deny", "message_allow"]


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (6, "Too many requests per second"),
        (9, "Flood control"),
        (10, "Internal server error"),
        (902, "Can't send messages to this user due to their privacy settings"),
    ],
)
async def test_injected_errors_carry_vks_texts(
    vk_api: VkApiFake, api: API, code: int, text: str
) -> None:
    user = vk_api.new_writer()
    vk_api.fail("messages.send", code, times=2)
    for _ in range(2):
        with pytest.raises(VKAPIError[code], match=text):
            await api.messages.send(peer_id=user, random_id=0, message="hi")
    await api.messages.send(peer_id=user, random_id=0, message="hi")


async def test_a_wrong_token_is_error_5(vk_api: VkApiFake) -> None:
    async with aiohttp.ClientSession() as session:
        wrong = API(token="vk1.a.wrong", http_client=AiohttpClient(session=session))
        wrong.API_URL = vk_api.api_url
        with pytest.raises(VKAPIError[5], match="invalid access_token"):
            await wrong.request("users.get", {"user_ids": 1})


async def test_the_rate_limit_answers_error_6_past_the_limit(vk_api: VkApiFake, api: API) -> None:
    vk_api.requests_per_second = 3
    for _ in range(3):
        await api.request("groups.getById", {})
    with pytest.raises(VKAPIError[6]):
        await api.request("groups.getById", {})


# ------------------------------------------------------------------------------ other methods


async def test_edit_by_conversation_message_id_in_a_conversation(
    vk_api: VkApiFake, api: API
) -> None:
    chat = vk_api.new_chat_peer_id()
    [item] = await api.messages.send(
        peer_ids=[chat], random_id=0, message="Новый лид", keyboard=card_keyboard()
    )
    done = json.dumps({"inline": True, "buttons": []})
    assert await api.messages.edit(
        peer_id=chat, cmid=item.conversation_message_id, message="Взят", keyboard=done
    )
    await api.request(
        "messages.edit",
        {"peer_id": chat, "conversation_message_id": item.conversation_message_id, "message": "!"},
    )
    [card] = vk_api.sent(chat)
    assert (card.text, card.labels()) == ("!", [])
    assert [e.text for e in vk_api.edits(chat)] == ["Взят", "!"]
    with pytest.raises(VKAPIError[100]):  # message id 0 names nothing in a conversation
        await api.messages.edit(peer_id=chat, message_id=0, message="?")


async def test_event_answer_is_checked_and_recorded(vk_api: VkApiFake, api: API) -> None:
    user = vk_api.new_writer()
    await api.messages.send(peer_id=user, random_id=0, message="?", keyboard=card_keyboard())
    pressed = vk_api.press(user, "Взять")
    assert pressed.kind == "callback"
    assert pressed.event_id is not None
    snackbar = json.dumps({"type": "show_snackbar", "text": "Готово"}, ensure_ascii=False)
    answer = await api.messages.send_message_event_answer(
        event_id=pressed.event_id, user_id=user, peer_id=user, event_data=snackbar
    )
    assert answer == 1
    [seen] = vk_api.event_answers()
    assert (seen.event_id, seen.snackbar) == (pressed.event_id, "Готово")
    with pytest.raises(VKAPIError[100]):  # somebody else's event
        await api.messages.send_message_event_answer(
            event_id=pressed.event_id, user_id=user + 1, peer_id=user + 1
        )
    too_long = json.dumps({"type": "show_snackbar", "text": "x" * 91})
    with pytest.raises(VKAPIError[100]):
        await api.messages.send_message_event_answer(
            event_id=pressed.event_id, user_id=user, peer_id=user, event_data=too_long
        )


async def test_users_get(vk_api: VkApiFake, api: API) -> None:
    known, unknown = vk_api.new_writer(), vk_api.new_writer()
    vk_api.add_user(known, "Анна", "Смирнова", screen_name="anna_s")
    users = await api.users.get(user_ids=[known, unknown], fields=["screen_name"])
    assert [(u.id, u.first_name, u.last_name, u.screen_name) for u in users] == [
        (known, "Анна", "Смирнова", "anna_s"),
        (unknown, "Test", f"User{unknown}", f"id{unknown}"),
    ]
    [bare] = (await api.request("users.get", {"user_ids": "anna_s"}))["response"]
    assert "screen_name" not in bare  # fields come only when asked for


async def test_doc_upload_with_vkbottles_uploader_then_send(vk_api: VkApiFake, api: API) -> None:
    user = vk_api.new_writer()
    attachment = await DocMessagesUploader(api).upload(
        b"%PDF-1.4 guide", peer_id=user, title="guide.pdf"
    )
    assert attachment.startswith(f"doc-{vk_api.group_id}_")
    await api.messages.send(peer_id=user, random_id=0, message="Ваш гайд", attachment=attachment)
    [sent] = vk_api.sent(user)
    assert sent.attachments == [attachment]
    doc = vk_api.doc(attachment)
    assert (doc.title, doc.ext, doc.content, doc.peer_id) == (
        "guide.pdf",
        "pdf",
        b"%PDF-1.4 guide",
        user,
    )
    [upload_server] = vk_api.recorded("docs.getMessagesUploadServer")
    assert upload_server["peer_id"] == str(user)
    async with aiohttp.ClientSession() as session, session.get(doc.url) as response:
        assert await response.read() == b"%PDF-1.4 guide"


async def test_groups_get_by_id_has_the_5_199_shape(vk_api: VkApiFake, api: API) -> None:
    answer = await api.groups.get_by_id()
    [group] = answer.groups or []
    assert (group.id, group.screen_name) == (vk_api.group_id, "leadbot_test")
    assert answer.profiles == []


# ------------------------------------------------------------------------------ long polling


async def test_bot_polling_receives_a_pushed_message_and_event(
    vk_api: VkApiFake, api: API
) -> None:
    polling = BotPolling(api=api, wait=5)
    server = await polling.get_server()
    assert polling.group_id == vk_api.group_id  # learnt through groups.getById
    assert [c.method for c in vk_api.calls()] == ["groups.getById", "groups.getLongPollServer"]

    user = vk_api.new_user_id()
    waiting = asyncio.create_task(polling.get_event(server))
    await asyncio.sleep(0.05)
    assert not waiting.done()  # the long poll holds the request until something happens
    pushed = vk_api.push_message(
        user, "Начать", payload={"command": "start"}, ref="ads", ref_source="vk_ads"
    )
    event = await asyncio.wait_for(waiting, 2)
    [update] = event["updates"]
    assert update["type"] == "message_new"
    assert update["group_id"] == vk_api.group_id
    message_new = GroupTypes.MessageNew(**update)
    assert message_new.object.message is not None
    assert message_new.object.message.text == "Начать"
    assert message_new.object.message.payload == '{"command":"start"}'
    assert message_new.object.message.id == pushed["id"]
    assert message_new.object.client_info is not None
    assert message_new.object.client_info.inline_keyboard
    mini = message_min(update, api)
    assert (mini.from_id, mini.peer_id, mini.ref, mini.ref_source) == (user, user, "ads", "vk_ads")
    assert mini.get_payload_json() == {"command": "start"}

    await api.messages.send(peer_id=user, random_id=0, message="?", keyboard=card_keyboard())
    server["ts"] = event["ts"]
    event_id = vk_api.push_event(user, {"a": "claim:7"})
    event = await polling.get_event(server)
    [update] = event["updates"]
    message_event = GroupTypes.MessageEvent(**update)
    assert (message_event.object.event_id, message_event.object.payload) == (
        event_id,
        {"a": "claim:7"},
    )
    # The user's message is 1 in the conversation, the bot's answer 2: the press is on it.
    assert message_event.object.conversation_message_id == 2
    server["ts"] = event["ts"]
    polling.wait = 0  # BotPolling(wait=0) would mean its default, 25 s
    assert await polling.get_event(server) == {"ts": event["ts"], "updates": []}


async def test_long_poll_failures_and_vkbottles_recovery(
    vk_api: VkApiFake, api: API, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # vkbottle keeps the ts in ./.vkbottle
    polling = BotPolling(api=api, group_id=vk_api.group_id, wait=5)
    server = await polling.get_server()
    user = vk_api.new_writer()

    vk_api.expire_key()
    assert await polling.get_event(server) == {"failed": 2}
    server = await polling.get_server()
    vk_api.push_message(user, "до потери")
    vk_api.drop_history()
    assert await polling.get_event(server) == {"failed": 1, "ts": str(int(server["ts"]) + 1)}
    vk_api.lose_information()
    assert await polling.get_event(server) == {"failed": 3}

    # vkbottle's own loop: a fresh key after `failed: 2`, nothing lost or repeated.
    listening = polling.listen()
    try:
        started = asyncio.create_task(anext(listening))
        await vk_api.wait_for_calls("groups.getLongPollServer", 3)  # listening from now on
        vk_api.push_message(user, "раз")
        first = await asyncio.wait_for(started, 2)
        vk_api.expire_key()
        vk_api.push_message(user, "два")
        second = await asyncio.wait_for(anext(listening), 2)
    finally:
        await listening.aclose()
    texts = [u["object"]["message"]["text"] for e in (first, second) for u in e["updates"]]
    assert texts == ["раз", "два"]
    assert len(vk_api.calls("groups.getLongPollServer")) == 4


async def test_press_a_text_button_and_reply_in_a_conversation(
    vk_api: VkApiFake, api: API
) -> None:
    user = vk_api.new_writer()
    await api.messages.send(peer_id=user, random_id=0, message="?", keyboard=card_keyboard())
    pressed = vk_api.press(user, "Ещё")
    assert pressed.kind == "text"
    assert pressed.message is not None
    assert (pressed.message["text"], pressed.message["payload"]) == ("Ещё", '{"a":"more"}')
    with pytest.raises(AssertionError, match="open_link"):
        vk_api.press(user, "Сайт")

    chat, manager = vk_api.new_chat_peer_id(), vk_api.new_writer()
    [card] = await api.messages.send(peer_ids=[chat], random_id=0, message="Лид #7")
    reply = vk_api.push_message(
        manager, "созвонился", peer_id=chat, reply_to=card.conversation_message_id
    )
    assert reply["id"] == 0  # bots get no message ids in conversations
    assert reply["peer_id"] == chat > CONVERSATIONS
    assert reply["reply_message"]["from_id"] == -vk_api.group_id
    assert reply["reply_message"]["conversation_message_id"] == card.conversation_message_id
    assert GroupTypes.MessageNew(**vk_api.updates()[-1]).object.message is not None


async def test_a_person_sends_a_document(vk_api: VkApiFake) -> None:
    user = vk_api.new_writer()
    doc = vk_api.user_doc(user, "resume.docx", b"PK...")
    vk_api.push_message(user, "", attachments=[doc])
    update = GroupTypes.MessageNew(**vk_api.updates()[-1])
    assert update.object.message is not None
    [attachment] = update.object.message.attachments or []
    assert attachment.doc is not None
    assert (attachment.doc.title, attachment.doc.owner_id) == ("resume.docx", user)
    async with aiohttp.ClientSession() as session, session.get(doc["doc"]["url"]) as response:
        assert await response.read() == b"PK..."


# ------------------------------------------------------------------------------ test helpers


async def test_wait_for_wakes_on_delivery_and_reports_on_timeout(
    vk_api: VkApiFake, api: API
) -> None:
    user = vk_api.new_writer()
    waiting = asyncio.create_task(vk_api.wait_for(user, "гайд", timeout=2))
    await asyncio.sleep(0.01)
    await api.messages.send(peer_id=user, random_id=0, message="Ваш гайд")
    assert [m.text for m in await waiting] == ["Ваш гайд"]
    vk_api.fail("messages.send", 10)
    with pytest.raises(VKAPIError[10]):
        await api.messages.send(peer_id=user, random_id=0, message="второй")
    with pytest.raises(AssertionError, match=r"timed out .*Ваш гайд.*10 Internal server error"):
        await vk_api.wait_for(user, 2, timeout=0.05)


async def test_callback_event_body(vk_api: VkApiFake) -> None:
    user = vk_api.new_writer()
    body = vk_api.callback_event(
        "message_new", vk_api.message_new_object(user, "hi"), secret="s3cret", event_id="e1"
    )
    assert {k: body[k] for k in ("type", "group_id", "event_id", "v", "secret")} == {
        "type": "message_new",
        "group_id": vk_api.group_id,
        "event_id": "e1",
        "v": API_VERSION,
        "secret": "s3cret",
    }
    assert GroupTypes.MessageNew(**body).object.message is not None
    assert vk_api.updates() == []  # built, not queued
    assert "object" not in vk_api.callback_event("confirmation", secret=None)


async def test_closing_answers_a_waiting_long_poll(vk_api: VkApiFake, api: API) -> None:
    polling = BotPolling(api=api, group_id=vk_api.group_id, wait=25)
    server = await polling.get_server()
    waiting = asyncio.create_task(polling.get_event(server))
    await asyncio.sleep(0.05)
    await vk_api.close()
    assert (await asyncio.wait_for(waiting, 2))["updates"] == []


async def test_the_rate_limit_is_vks_by_default(vk_api: VkApiFake) -> None:
    assert vk_api.requests_per_second == 20
    assert VkApiFake().requests_per_second == 20


async def test_past_24_hours_a_message_needs_an_intent(vk_api: VkApiFake, api: API) -> None:
    stranger, writer = vk_api.new_user_id(), vk_api.new_user_id()
    vk_api.push_message(writer, "Здравствуйте")

    with pytest.raises(VKAPIError[943]):  # never wrote to the community
        await api.request("messages.send", {"peer_id": stranger, "random_id": 0, "message": "a"})
    await api.request("messages.send", {"peer_id": writer, "random_id": 0, "message": "b"})
    vk_api.age_messages(writer, hours=25)
    with pytest.raises(VKAPIError[943]):
        await api.request("messages.send", {"peer_id": writer, "random_id": 0, "message": "c"})
    notice = {"peer_id": writer, "random_id": 0, "message": "d", "intent": "account_update"}
    await api.request("messages.send", notice)

    assert [m.text for m in vk_api.sent(writer)] == ["b", "d"]
    assert vk_api.sent(stranger) == []
