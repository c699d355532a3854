"""Tables of the funnel. Generic SQLAlchemy types only, so SQLite and PostgreSQL share them."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# SQLite has no 64-bit autoincrement BIGINT; an INTEGER primary key is its 64-bit rowid.
BigId = BigInteger().with_variant(Integer(), "sqlite")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, whatever the dialect stores."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        if value.tzinfo is not UTC:  # the usual case is UTC already: no conversion to pay
            value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Lead(Base):
    """One person, whatever messengers they use (identities point here)."""

    __tablename__ = "leads"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)  # reports by arrival
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # `stage` is where the lead is now (may be a side stage: lost, unsubscribed, blocked);
    # `funnel_stage` is the furthest hourglass stage reached, so a side trip loses nothing.
    stage: Mapped[str] = mapped_column(String(32), default="new")
    funnel_stage: Mapped[str] = mapped_column(String(32), default="new")
    score: Mapped[int] = mapped_column(Integer, default=0)
    first_name: Mapped[str | None] = mapped_column(String(128))
    source: Mapped[str | None] = mapped_column(String(64))
    offer: Mapped[str | None] = mapped_column(String(64))
    timezone: Mapped[str | None] = mapped_column(String(64))
    # What the bot waits for from this lead (a question, a consent answer); None when idle.
    awaiting: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    unsubscribed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    unreachable_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set by /delete: the person is forgotten; the row stays, anonymous, for the counts.
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The code in the lead's referral links (`ref_<code>`); made when first needed.
    referral_code: Mapped[str | None] = mapped_column(String(16), unique=True)
    # What rules read, kept up to date as it happens (storage/kept_facts.py); None: not known.
    facts: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))


class Identity(Base):
    """A messenger account (channel + its id) that belongs to a lead."""

    __tablename__ = "identities"
    __table_args__ = (UniqueConstraint("channel", "external_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(16))
    external_id: Mapped[str] = mapped_column(String(64))
    username: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)  # inactivity


class Contact(Base):
    """A normalised phone (E.164) or e-mail; `verified` when the messenger vouched for it."""

    __tablename__ = "contacts"
    __table_args__ = (
        UniqueConstraint("lead_id", "kind", "value"),
        Index("ix_contacts_kind_value", "kind", "value"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    value: Mapped[str] = mapped_column(String(320))
    verified: Mapped[bool] = mapped_column(Boolean, default=False)
    channel: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Consent(Base):
    """Consent to personal data processing or to advertising, with the text version shown."""

    __tablename__ = "consents"
    __table_args__ = (Index("ix_consents_lead_kind", "lead_id", "kind"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    text_version: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(16))
    given_at: Mapped[datetime] = mapped_column(UTCDateTime)
    withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Event(Base):
    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_lead_name", "lead_id", "name"),
        Index("ix_events_name_created", "name", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    channel: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class StageChange(Base):
    __tablename__ = "stage_changes"
    __table_args__ = (Index("ix_stage_changes_to_created", "to_stage", "created_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), index=True)
    from_stage: Mapped[str | None] = mapped_column(String(32))
    to_stage: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Tag(Base):
    __tablename__ = "tags"

    lead_id: Mapped[int] = mapped_column(
        ForeignKey("leads.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Answer(Base):
    """The latest answer of a lead to a question; every answer is also an `answered` event."""

    __tablename__ = "answers"

    lead_id: Mapped[int] = mapped_column(
        ForeignKey("leads.id", ondelete="CASCADE"), primary_key=True
    )
    question: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    score: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class LeadDate(Base):
    """A date of the lead's (a birthday, a contract's renewal) that a chain counts from:
    an answer to a `type: date` question (`name` is the question) or a date in an event's
    details (`name` is "<event>.<detail>"). Month and day apart, for the yearly scan."""

    __tablename__ = "lead_dates"
    __table_args__ = (Index("ix_lead_dates_name_month_day", "name", "month", "day"),)

    lead_id: Mapped[int] = mapped_column(
        ForeignKey("leads.id", ondelete="CASCADE"), primary_key=True
    )
    name: Mapped[str] = mapped_column(String(97), primary_key=True)
    month: Mapped[int] = mapped_column(Integer)
    day: Mapped[int] = mapped_column(Integer)
    year: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Booking(Base):
    """A lead's place in a slot of a `slots:` calendar. `place` (1..capacity) is held while
    the booking stands and is NULL once it is cancelled or moved: the unique key over
    (calendar, resource, starts_at, place) is what makes taking the last place atomic on
    SQLite and PostgreSQL alike (NULLs never collide)."""

    __tablename__ = "bookings"
    __table_args__ = (
        UniqueConstraint("calendar", "resource", "starts_at", "place"),
        Index("ix_bookings_starts_at", "starts_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), index=True)
    calendar: Mapped[str] = mapped_column(String(32))
    resource: Mapped[str] = mapped_column(String(32))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime)
    place: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="booked")  # cancelled, moved
    question: Mapped[str] = mapped_column(String(64))  # the question that booked it
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class SequenceRun(Base):
    """A lead's place in a warm-up chain; one row per lead and chain. A chain that repeats
    (`repeat: true`) starts its next run in the same row: `run_no` counts the runs and scopes
    the steps' keys, `occasion` names what the current run is for (the year's date, the
    booking, the spell of silence), so a time trigger starts one run per occasion."""

    __tablename__ = "sequence_runs"
    __table_args__ = (UniqueConstraint("lead_id", "sequence"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"))
    sequence: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="active")
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    stopped_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    stop_reason: Mapped[str | None] = mapped_column(String(128))
    run_no: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    occasion: Mapped[str | None] = mapped_column(String(64))


class OutboxRow(Base):
    """A future message or export: the database, not the scheduler, remembers what is due."""

    __tablename__ = "outbox"
    __table_args__ = (Index("ix_outbox_status_due_id", "status", "due_at", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    lead_id: Mapped[int | None] = mapped_column(
        ForeignKey("leads.id", ondelete="CASCADE"), index=True
    )
    channel: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    idempotency_key: Mapped[str] = mapped_column(String(191), unique=True)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Messages of the row already out (a step's text, then its question): a takeover after a
    # crash sends only the rest.
    parts_sent: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    leased_by: Mapped[str | None] = mapped_column(String(64))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class InboundEvent(Base):
    """Keys of messenger updates already handled (Telegram update_id, VK event_id): a retried
    delivery of the same update is recognised and not handled twice."""

    __tablename__ = "inbound_events"

    key: Mapped[str] = mapped_column(String(96), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class PromoCode(Base):
    """A promo code: a personal code of a lead's own (`lead_id` set), or a shared campaign
    code (no lead; its row appears at the first redemption and counts the uses). `promo` is
    the scenario's promo id; `uses_left` None means no limit, `expires_at` None never."""

    __tablename__ = "promo_codes"
    __table_args__ = (
        Index("ix_promo_codes_lead_promo", "lead_id", "promo"),
        Index("ix_promo_codes_expires_at", "expires_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    promo: Mapped[str] = mapped_column(String(64))
    code: Mapped[str] = mapped_column(String(64), unique=True)
    # The code as it is looked up: upper case, without dashes, underscores or spaces, so
    # "start-7kq4m 9xrtb" typed by a manager finds START-7KQ4M-9XRTB.
    lookup: Mapped[str] = mapped_column(String(64), unique=True)
    lead_id: Mapped[int | None] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"))
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    uses_left: Mapped[int | None] = mapped_column(Integer)
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # "expires soon" sent


class PromoRedemption(Base):
    """One use of a code: at the till, by a manager (`/redeem`) or through the API."""

    __tablename__ = "promo_redemptions"
    __table_args__ = (Index("ix_promo_redemptions_promo_lead", "promo", "lead_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    code_id: Mapped[int] = mapped_column(ForeignKey("promo_codes.id", ondelete="CASCADE"))
    promo: Mapped[str] = mapped_column(String(64))
    lead_id: Mapped[int | None] = mapped_column(
        ForeignKey("leads.id", ondelete="SET NULL"), index=True
    )
    redeemed_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    amount: Mapped[str | None] = mapped_column(String(32))  # a decimal string
    by: Mapped[str] = mapped_column(String(128))  # "telegram:123 Anna", "api"
    # The caller's id of the request: a retried API call is answered, not counted twice.
    request_key: Mapped[str | None] = mapped_column(String(96), unique=True)


class RedeemFailure(Base):
    """A failed redemption attempt (unknown, expired or used-up code) from one source: too
    many in a window lock the source out, so codes cannot be guessed by trying."""

    __tablename__ = "redeem_failures"
    __table_args__ = (Index("ix_redeem_failures_source_failed_at", "source", "failed_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(128))
    failed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Referral(Base):
    """A friend who came by a lead's referral link. `void_at` is set when the friend turned
    out to be somebody already known (the referrer's own second account, say); a void
    referral is never rewarded. `qualified_at` marks the friend reaching `reward_when`, once."""

    __tablename__ = "referrals"

    friend_id: Mapped[int] = mapped_column(
        ForeignKey("leads.id", ondelete="CASCADE"), primary_key=True
    )
    referrer_id: Mapped[int] = mapped_column(
        ForeignKey("leads.id", ondelete="CASCADE"), index=True
    )
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime)
    void_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    void_reason: Mapped[str | None] = mapped_column(String(128))
    qualified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reward_code: Mapped[str | None] = mapped_column(String(64))  # None: over max_rewards


class Handoff(Base):
    """A qualified lead in the managers' hands: open (nobody claimed it yet), claimed, then
    won, lost or not_fit. One per lead: qualification happens once."""

    __tablename__ = "handoffs"
    __table_args__ = (Index("ix_handoffs_status_qualified", "status", "qualified_at"),)

    lead_id: Mapped[int] = mapped_column(
        ForeignKey("leads.id", ondelete="CASCADE"), primary_key=True
    )
    status: Mapped[str] = mapped_column(String(16), default="open")
    rule: Mapped[str] = mapped_column(String(256))  # why the lead qualified, for managers
    qualified_at: Mapped[datetime] = mapped_column(UTCDateTime)
    manager_id: Mapped[str | None] = mapped_column(String(64))  # "telegram:123"
    manager_name: Mapped[str | None] = mapped_column(String(128))
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    amount: Mapped[str | None] = mapped_column(String(32))  # a won deal, as a decimal string
    reason: Mapped[str | None] = mapped_column(Text)  # why it was lost
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    escalated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ManagerMessage(Base):
    """A message the bot posted in a managers' chat about a lead (its card, a question the
    lead asked, a prompt for a deal's amount): a manager's reply to it is routed by this row."""

    __tablename__ = "manager_messages"
    __table_args__ = (UniqueConstraint("channel", "message_ref"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(16))
    message_ref: Mapped[str] = mapped_column(String(64))
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class TrackedLink(Base):
    """A button's URL for one lead, served as `/r/<token>`: a click records the event and
    redirects. The token also names the lead to the events API (the website gets it as `lb`)."""

    __tablename__ = "tracked_links"
    __table_args__ = (UniqueConstraint("lead_id", "url", "event"),)

    token: Mapped[str] = mapped_column(String(32), primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id", ondelete="CASCADE"))
    url: Mapped[str] = mapped_column(String(2048))
    event: Mapped[str] = mapped_column(String(64), default="")  # "" when the button names none
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    clicked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)  # the first


class ChatMigration(Base):
    """A managers' chat the messenger gave a new id (a Telegram group upgraded to a
    supergroup): posts go to `to_chat` while the settings still name `from_chat`."""

    __tablename__ = "chat_migrations"

    channel: Mapped[str] = mapped_column(String(16), primary_key=True)
    from_chat: Mapped[str] = mapped_column(String(64), primary_key=True)
    to_chat: Mapped[str] = mapped_column(String(64))
    migrated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class BroadcastRun(Base):
    """One `leadbot broadcast` that queued messages. Its outbox rows carry its id (payload
    `broadcast_run`) and lie between `first_row` and `last_row`, so its progress is counted
    and it is cancelled by a range of the primary key, not a read of the whole outbox."""

    __tablename__ = "broadcast_runs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # "webinar_dec-2"
    # The broadcast it sends (the outbox payload's `broadcast`): a scenario id or `adhoc_...`.
    broadcast: Mapped[str] = mapped_column(String(64))
    text: Mapped[str | None] = mapped_column(Text)  # an ad-hoc text (--text)
    segment: Mapped[str | None] = mapped_column(Text)  # --segment as typed; None: the scenario's
    at: Mapped[str | None] = mapped_column(String(16))  # local wall time, "YYYY-MM-DD HH:MM"
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    queued: Mapped[int] = mapped_column(Integer, default=0)
    first_row: Mapped[int | None] = mapped_column(BigInteger)
    last_row: Mapped[int | None] = mapped_column(BigInteger)
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AdSpend(Base):
    """Money spent on advertising one source over a span of days (a day, a month), entered by
    `leadbot spend add` or `POST /api/spend`. A report over part of the span counts the
    share of its days."""

    __tablename__ = "ad_spend"
    __table_args__ = (Index("ix_ad_spend_first_day", "first_day", "last_day"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(64))
    first_day: Mapped[date] = mapped_column(Date)
    last_day: Mapped[date] = mapped_column(Date)  # included
    amount: Mapped[str] = mapped_column(String(32))  # a decimal string, like Handoff.amount
    note: Mapped[str | None] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # A retried `POST /api/spend` with the same id is stored once.
    request_key: Mapped[str | None] = mapped_column(String(96), unique=True)


class ExperimentDecision(Base):
    """An A/B test of a step that finished itself (`auto: true`): from `decided_at` new leads
    get `winner`; `why` keeps the figures the decision rested on, for the report."""

    __tablename__ = "experiment_decisions"

    sequence: Mapped[str] = mapped_column(String(64), primary_key=True)
    step: Mapped[str] = mapped_column(String(64), primary_key=True)
    winner: Mapped[str] = mapped_column(String(32))
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime)
    why: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
