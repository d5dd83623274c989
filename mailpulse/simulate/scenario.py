"""What happens to the mail: simulated events for one source, deterministic from a seed.

Each recipient gets one message per campaign, the campaigns a day apart, so histories build
up as they do in a real account: most mailboxes are fine; some are full (a soft bounce every
time, so the suppression rules end up listing them), some fill up after the first campaign,
and some addresses do not exist (a hard bounce, after which the ESP drops them). Apple Mail
Privacy Protection opens every message sent to iCloud within a minute of delivery, Gmail's
image proxy fetches on first view, corporate security gateways follow every link within
seconds of delivery, and real people open hours later, click some, and rarely complain or
unsubscribe.

Only the event types the ESP reports (``Esp.emits``, which is the receiver's ``Provider.emits``)
are produced, and two events of one type for one message never share a second: several ESPs
identify an event only by message, type and a timestamp in whole seconds, so a real ESP could
not tell them apart either.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime

from mailpulse.simulate.esp.base import Esp, SimulatedEvent

CAMPAIGNS = ("black-friday-2026", "weekly-digest-48", "onboarding-day-1", "winback-q4")
#: Mailbox providers by share of a typical consumer list, plus two corporate domains.
DOMAINS = (
    ("gmail.com", 30),
    ("outlook.com", 12),
    ("hotmail.com", 5),
    ("yahoo.com", 12),
    ("icloud.com", 14),
    ("me.com", 3),
    ("acme-corp.com", 10),
    ("example-bank.de", 6),
    ("fastmail.com", 8),
)
APPLE_DOMAINS = frozenset({"icloud.com", "me.com"})
CORPORATE_DOMAINS = frozenset({"acme-corp.com", "example-bank.de"})
FIRST_NAMES = ("ann", "bob", "chen", "dana", "emil", "fatima", "gus", "hana", "ivan", "jo")
HUMAN_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Mobile/15E148",
    "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17928; Pro)",
)
APPLE_PROXY_AGENT = "Mozilla/5.0"
GMAIL_PROXY_AGENT = (
    "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
)
SCANNER_AGENT = "Mozilla/5.0 (compatible; SafeLinks/1.0; +https://aka.ms/safelinks)"
#: How a recipient's mailbox behaves over the campaigns.
PROFILES = (("ok", 88), ("full", 5), ("filling", 4), ("unknown", 3))
DAY = 86_400.0
#: Room for sequence numbers of one source in one run (events and messages alike).
SEQUENCE_SPACE = 10**9


@dataclass(frozen=True, slots=True)
class Scenario:
    """Settings of one source's traffic: everything that makes it differ from another's."""

    messages: int
    seed: int = 7
    slot: int = 0  # the source's position among the configured sources: keeps ids apart
    end: date | None = None  # the timeline ends at 00:00 UTC of this day (default: today)

    def base_sequence(self) -> int:
        """The first sequence number of this source in this run.

        ESP-side ids derive from the sequence, and the lake dedups by id across every source,
        so runs with other seeds and other sources must never reuse one.
        """
        return (self.seed * 1000 + self.slot) * SEQUENCE_SPACE


def end_of_timeline(end: date | None) -> float:
    """Unix seconds of 00:00 UTC on ``end`` (today by default): the same all day long."""
    day = end or datetime.now(tz=UTC).date()
    return datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()


def generate(provider: Esp, scenario: Scenario) -> list[SimulatedEvent]:
    """The events ``scenario`` makes happen at ``provider``, in the order they happen."""
    rng = random.Random(f"{scenario.seed}:{scenario.slot}")
    recipients = _recipients(rng, max(1, -(-scenario.messages // len(CAMPAIGNS))))
    first_send = end_of_timeline(scenario.end) - (len(CAMPAIGNS) + 1) * DAY
    base = scenario.base_sequence()
    events: list[SimulatedEvent] = []
    for number in range(scenario.messages):
        wave, person = number % len(CAMPAIGNS), number // len(CAMPAIGNS)
        address, profile = recipients[person]
        message = SimulatedEvent(
            sequence=0,
            event_type="sent",
            recipient=address,
            occurred_at=round(first_send + wave * DAY + rng.uniform(0, 3 * 3600), 3),
            message_id=provider.message_id(base + number, scenario.seed),
            campaign=CAMPAIGNS[wave],
            tags=(CAMPAIGNS[wave].split("-")[0],),
            metadata={"customer_id": f"cus_{person:06d}", "wave": str(wave)},
        )
        happened = _outcome(rng, message, profile, wave)
        events.extend(_distinct_seconds(e for e in happened if e.event_type in provider.emits))
    events.sort(key=lambda event: event.occurred_at)
    return [replace(event, sequence=base + index) for index, event in enumerate(events)]


def _recipients(rng: random.Random, count: int) -> list[tuple[str, str]]:
    domains = [name for name, _ in DOMAINS]
    domain_weights = [weight for _, weight in DOMAINS]
    profiles = [name for name, _ in PROFILES]
    profile_weights = [weight for _, weight in PROFILES]
    people = []
    for person in range(count):
        domain = rng.choices(domains, domain_weights)[0]
        name = f"{FIRST_NAMES[person % len(FIRST_NAMES)]}.{person:05d}"
        people.append((f"{name}@{domain}", rng.choices(profiles, profile_weights)[0]))
    return people


def _outcome(
    rng: random.Random, message: SimulatedEvent, profile: str, wave: int
) -> list[SimulatedEvent]:
    """Everything that happens to one message after it is handed to the ESP."""
    sent = message.occurred_at
    domain = message.recipient.rpartition("@")[2]

    def then(kind: str, at: float, **fields: object) -> SimulatedEvent:
        return replace(message, event_type=kind, occurred_at=round(at, 3), **fields)  # type: ignore[arg-type]

    if profile == "unknown" and wave > 0:  # the ESP remembers the hard bounce
        return [
            then("dropped", sent, bounce_class="bounced", reason="Bounced Address"),
        ]
    happened = [message]
    if profile == "unknown":
        return [
            *happened,
            then(
                "bounced",
                sent + rng.uniform(1, 5),
                bounce_class="hard",
                smtp_status="5.1.1",
                reason="550 5.1.1 The email account that you tried to reach does not exist",
            ),
        ]
    if profile == "full" or (profile == "filling" and wave > 0):
        retry = sent + rng.uniform(1, 30)
        return [
            *happened,
            then("deferred", retry, smtp_status="4.2.2", reason="452 4.2.2 Mailbox full"),
            then(
                "bounced",
                retry + 4 * 3600,  # the ESP gives up after hours of deferrals
                bounce_class="soft",
                smtp_status="4.2.2",
                reason="452 4.2.2 Mailbox full",
            ),
        ]
    delivered_at = sent + rng.uniform(1, 30)
    if rng.random() < 0.05:  # greylisting: a deferral, then delivery minutes later
        happened.append(
            then("deferred", sent + 1, smtp_status="4.7.1", reason="451 4.7.1 Try again later")
        )
        delivered_at += rng.uniform(300, 900)
    happened.append(then("delivered", delivered_at, smtp_status="2.0.0"))
    happened += _engagement(rng, then, message, domain, delivered_at)
    return happened


def _engagement(
    rng: random.Random,
    then: Callable[..., SimulatedEvent],
    message: SimulatedEvent,
    domain: str,
    delivered_at: float,
) -> list[SimulatedEvent]:
    """Opens, clicks, complaints and unsubscribes by machines and people."""
    campaign = message.campaign or "campaign"
    happened = []
    if domain in CORPORATE_DOMAINS and rng.random() < 0.5:  # the gateway follows every link
        happened += [
            then(
                "clicked",
                delivered_at + 1 + link,
                user_agent=SCANNER_AGENT,
                ip="40.94.0.10",
                url=f"https://shop.example.com/{campaign}/link-{link}",
            )
            for link in range(3)
        ]
    if domain in APPLE_DOMAINS and rng.random() < 0.85:  # Mail Privacy Protection prefetch
        happened.append(
            then(
                "opened",
                delivered_at + rng.uniform(5, 60),
                user_agent=APPLE_PROXY_AGENT,
                ip="17.58.0.1",
                agent="apple_mpp",
            )
        )
    if domain == "gmail.com" and rng.random() < 0.3:  # the image proxy on first view
        happened.append(
            then("opened", delivered_at + rng.uniform(60, 600), user_agent=GMAIL_PROXY_AGENT)
        )
    if rng.random() < 0.3:
        opened_at = delivered_at + rng.uniform(600, 36_000)
        agent = rng.choice(HUMAN_AGENTS)
        happened.append(then("opened", opened_at, user_agent=agent, ip="203.0.113.7"))
        if rng.random() < 0.3:
            happened.append(
                then(
                    "clicked",
                    opened_at + rng.uniform(2, 120),
                    user_agent=agent,
                    ip="203.0.113.7",
                    url=f"https://shop.example.com/{campaign}?utm_source=email",
                )
            )
    if rng.random() < 0.006:
        happened.append(then("complained", delivered_at + rng.uniform(600, DAY)))
    elif rng.random() < 0.02:
        happened.append(then("unsubscribed", delivered_at + rng.uniform(600, DAY)))
    return happened


def _distinct_seconds(events: Iterable[SimulatedEvent]) -> list[SimulatedEvent]:
    """Move an event on by whole seconds until no other of its type shares its second."""
    taken: set[tuple[str, int]] = set()
    kept = []
    for event in sorted(events, key=lambda e: e.occurred_at):
        at = event.occurred_at
        while (event.event_type, int(at)) in taken:
            at += 1.0
        taken.add((event.event_type, int(at)))
        kept.append(event if at == event.occurred_at else replace(event, occurred_at=at))
    return kept


def counts(events: Sequence[SimulatedEvent]) -> dict[str, int]:
    """Events per type, for the summary."""
    tally: dict[str, int] = {}
    for event in events:
        tally[event.event_type] = tally.get(event.event_type, 0) + 1
    return tally
