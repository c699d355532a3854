"""`service:` steps of the shipped chains (getting ready for a booked audit, "we have not
reached you yet"): about the lead's own request, not advertising. They reach a lead who
declined advertising, are outside `settings.ad_limit` and go out as notices (VK's intent)."""

from __future__ import annotations

from bot.clock import FakeClock
from bot.scenario.loader import load_scenario
from storage.database import Database
from tests.conftest import SHIPPED_SCENARIO
from tests.delivery.harness import START, Bench, utc
from tests.delivery.test_shipped_timing import arrivals, shown

# The last: no time picked from the calendar (the manager calls to agree on one).
AUDIT_ANSWERS = (
    "Мария",
    "+7 916 123-45-67",
    "До 10",
    "Принимаю решение",
    "Битрикс24",
    "Пропустить",
)


async def test_a_lead_without_advertising_consent_gets_the_service_steps_only(
    db: Database, clock: FakeClock
) -> None:
    bench = Bench(db, load_scenario(SHIPPED_SCENARIO), clock)
    await bench.take_offer("audit", answers=AUDIT_ANSWERS, marketing=False)
    await bench.run_until(utc(12, 31))

    steps, moments = await arrivals(bench, "1001")
    # The case and the promo are advertising: with no service step after them, the chain
    # ends there, as it did before service steps.
    assert steps == ["prepare", "not_reached"]
    assert shown(moments) == ["d0 12:15", "d1 11:00"]
    assert {s.message.purpose for s in bench.transport.sent} == {"notice"}
    assert await bench.runs() == {"audit_followup": "stopped"}


async def test_a_booking_is_followed_up_at_once_whatever_advertising_came_before(
    db: Database, clock: FakeClock
) -> None:
    """The guide's warm-up used up the week's two advertising messages; the audit booked
    then still gets its «prepare» 15 minutes later, not when the week frees."""
    bench = Bench(db, load_scenario(SHIPPED_SCENARIO), clock)
    await bench.take_offer("guide", answers=("anna@company.ru",))
    await bench.run_until(START + (utc(11, 27, 10) - START))  # check_in and role are out
    steps, _ = await arrivals(bench, "1001")
    assert steps == ["check_in", "role"]

    anna = bench.prospect()
    await anna.start("o_audit")
    for answer in AUDIT_ANSWERS:
        await (anna.press(answer) if answer in anna.labels() else anna.say(answer))
    assert "Вы записаны на «Час добра»" in anna.texts()
    booked = clock.now()
    await bench.run_until(utc(11, 28, 10))

    steps, moments = await arrivals(bench, "1001")
    assert steps[2] == "prepare"
    assert moments[2] - booked < (utc(11, 23, 9, 16) - START)  # its 15 minutes, no more
    [prepare] = [
        s for s in bench.transport.sent if "прошёл с максимальной пользой" in s.message.text
    ]
    assert prepare.message.purpose == "notice"
