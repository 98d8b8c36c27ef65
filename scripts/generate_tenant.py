"""Generate a seeded, deterministic benchmark tenant for the Graph simulator.

The output has the layout and the Graph shapes of ``sample_data/`` (see
``sample_data/README.md``): ``tenant.json``, ``groups.json``, one ``groups/<group-id>.json`` per
group and the attachment bytes under ``files/``.  The same arguments always give the same bytes,
so a benchmark can be rerun on an identical tenant::

    python scripts/generate_tenant.py --groups 20 --threads 5000 --posts 50000 --seed 1 \\
        --out bench/tenant

Posts are spread over threads the way real group mailboxes look: most threads are short, a few
are long (never more than ``MAX_POSTS_PER_THREAD``, the most Graph is reported to list).  Every
group file is written conversation by conversation, so memory stays flat for large tenants.
The text reads like mail to a search index (see ``Vocabulary``): tens of thousands of words
with Zipf-like frequencies, names, numbers, ticket codes, quoted replies and signatures.
Only the standard library is used.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import itertools
import json
import random
import shutil
import struct
import sys
import time
import unicodedata
import uuid
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

MAX_POSTS_PER_THREAD = 100
DOMAIN = "fabrikam-bench.onmicrosoft.com"
START = datetime(2024, 1, 1, 7, 0, tzinfo=UTC)
SPAN_SECONDS = 730 * 24 * 3600  # threads start anywhere in 2024-2025

Recipient = dict[str, dict[str, str]]

# --- Exchange-style identifiers -------------------------------------------------------------
#
# Graph returns Exchange store ids: URL-safe base64 of a binary entry id that embeds the
# mailbox GUID as ASCII.  The layouts below copy the documented samples (conversation ids start
# ``AAQkA``, post/message ids ``AAMkA``; attachment ids extend their post's id), with the
# variable parts taken from a hash so that ids are stable for a given label.


def key16(label: str) -> bytes:
    """Sixteen stable pseudo-random bytes for ``label``."""
    return hashlib.blake2b(label.encode(), digest_size=16).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii")


def conversation_id(mailbox: str, label: str) -> str:
    """An ``AAQkA...=`` conversation id in the mailbox whose GUID is ``mailbox``."""
    return _b64(b"\x00\x04\x24\x00" + mailbox.encode() + b"\x00\x10\x00" + key16(label))


def thread_id(mailbox: str, conversation_label: str, label: str) -> str:
    """An ``AAQkA...==`` thread id: its conversation's key followed by its own."""
    return _b64(
        b"\x00\x04\x24\x00"
        + mailbox.encode()
        + b"\x03\x24\x00\x10\x00"
        + key16(conversation_label)
        + b"\x10\x00"
        + key16(label)
    )


def _post_bytes(mailbox: str, label: str) -> bytes:
    store = key16(mailbox)
    return (
        b"\x00\x03\x24\x00"
        + mailbox.encode()
        + b"\x00\x46\x00\x00\x00\x00"
        + store
        + b"\x07\x00"
        + store
        + b"\x00\x00\x00\x00\x01\x0c\x00\x00"
        + key16(label)
        + b"\x00\x00"
    )


def post_id(mailbox: str, label: str) -> str:
    """An ``AAMkA...`` post (message) id."""
    return _b64(_post_bytes(mailbox, label))


def attachment_id(mailbox: str, post_label: str, label: str) -> str:
    """An attachment id: its post's entry id plus an attachment key, as Exchange builds them."""
    return _b64(_post_bytes(mailbox, post_label) + b"\x01\x12\x00\x10\x00" + key16(label))


def change_key(mailbox: str, counter: int) -> str:
    """A ``CwAAABYAAAD...`` change key: the store key followed by a change number."""
    raw = b"\x0b\x00\x00\x00\x16\x00\x00\x00" + key16(mailbox) + counter.to_bytes(6, "big")
    return base64.b64encode(raw).decode("ascii")


def iso(moment: datetime) -> str:
    """Graph's DateTimeOffset rendering: UTC, whole seconds, ``Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def stable_guid(rng: random.Random) -> str:
    """A version-4 GUID drawn from ``rng``, so that it is reproducible."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


# --- Real files built by hand -----------------------------------------------------------------


def _pdf_text(text: str) -> bytes:
    out = bytearray(b"(")
    for byte in text.encode("cp1252", errors="replace"):
        if byte in b"()\\":
            out += b"\\" + bytes([byte])
        elif 32 <= byte < 127:
            out.append(byte)
        else:
            out += b"\\%03o" % byte
    return bytes(out + b")")


def _pdf_info_text(text: str) -> bytes:
    """A document-information string: literal if ASCII, else UTF-16BE with a BOM, in hex."""
    if text.isascii():
        return _pdf_text(text)
    return b"<FEFF" + text.encode("utf-16-be").hex().upper().encode("ascii") + b">"


def make_pdf(title: str, lines: Sequence[str], *, created: str = "20250101000000Z") -> bytes:
    """A one-page PDF 1.4 whose text can be extracted (WinAnsi Helvetica, uncompressed stream).

    ``created`` is the ``/CreationDate`` after ``D:``; the xref table holds exact offsets.
    """
    content = bytearray(b"BT\n/F2 18 Tf\n72 770 Td\n" + _pdf_text(title) + b" Tj\nET\n")
    content += b"BT\n/F1 11 Tf\n15 TL\n72 740 Td\n"
    for line in lines:
        content += _pdf_text(line) + b" Tj T*\n"
    content += b"ET\n"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
        b"/Resources << /Font << /F1 4 0 R /F2 5 0 R >> >> /Contents 6 0 R >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>",
        b"<< /Length %d >>\nstream\n" % len(content) + bytes(content) + b"endstream",
        b"<< /Title " + _pdf_info_text(title) + b" /Producer (groupsync sample data) "
        b"/CreationDate (D:" + created.encode("ascii") + b") >>",
    ]
    pdf = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(pdf))
        pdf += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(pdf)
    pdf += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        pdf += b"%010d 00000 n \n" % offset
    pdf += b"trailer\n<< /Size %d /Root 1 0 R /Info 7 0 R >>\n" % (len(objects) + 1)
    pdf += b"startxref\n%d\n%%%%EOF\n" % xref
    return bytes(pdf)


def make_png(width: int, height: int, pixel: Callable[[int, int], tuple[int, int, int]]) -> bytes:
    """An 8-bit RGB PNG whose colour at column x, row y is ``pixel(x, y)``."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    raw = bytearray()
    for y in range(height):
        raw.append(0)  # filter type "None" for every scanline
        for x in range(width):
            raw += bytes(pixel(x, y))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(bytes(raw), 9))
        + chunk(b"IEND", b"")
    )


# --- Vocabulary -------------------------------------------------------------------------------

PEOPLE = [  # (first names, last names) per culture, so that generated names stay plausible
    (["Emma", "Liam", "Olivia", "Noah", "Grace", "Ethan"], ["Walker", "Hughes", "Bennett", "Reid"]),
    (["Léa", "Hugo", "Chloé", "Théo", "Zoé", "Étienne"], ["Lefèvre", "Moreau", "Girard", "Faure"]),
    (["Jonas", "Lena", "Jürgen", "Anja", "Lukas"], ["Müller", "Schäfer", "Köhler", "Groß"]),
    (["Sofía", "Mateo", "Lucía", "Andrés", "Inés"], ["García", "Muñoz", "Peña", "Ibáñez"]),
    (["Yuki", "Haruto", "Aoi", "Ren", "Sakura"], ["Tanaka", "Sato", "Kobayashi", "Inoue"]),
    (["Wei", "Fang", "Jun", "Mei", "Hao"], ["Chen", "Wang", "Liu", "Zhang"]),
    (["Priya", "Arjun", "Ananya", "Rohan", "Kavya"], ["Raghunathan", "Iyer", "Sharma", "Nair"]),
    (["Omar", "Layla", "Youssef", "Amira", "Karim"], ["Haddad", "Nasser", "Khalil", "Saleh"]),
    (["Noa", "Eitan", "Tamar", "Yael", "Ariel"], ["Ben-David", "Cohen", "Levi", "Mizrahi"]),
    (["Aisha", "Kwame", "Chiamaka", "Tunde", "Amara"], ["Bello", "Mensah", "Okafor", "Adeyemi"]),
    (["Sven", "Åsa", "Björn", "Linnea", "Ingrid"], ["Åkesson", "Lindqvist", "Sjöberg", "Berg"]),
]

GROUP_NAMES = [
    "Sales",
    "Customer Support",
    "Research & Development",
    "Finance",
    "Équipe Lyon",
    "Vertrieb DACH",
    "Marketing",
    "Operations",
    "Legal",
    "IT Helpdesk",
    "Product Design",
    "Logística España",
    "People & Culture",
    "Partner Programme",
    "Security",
    "Data Platform",
    "Procurement",
    "Field Service",
    "Quality Assurance",
    "Executive Office",
]

TOPICS = [
    "Quarterly review",
    "Budget planning",
    "Release checklist",
    "Customer feedback",
    "Offsite agenda",
    "Vendor contract renewal",
    "Onboarding plan",
    "Incident follow-up",
    "Roadmap draft",
    "Hiring update",
    "Weekly status",
    "Travel policy",
    "Training schedule",
    "Pricing proposal",
    "Office move",
    "Réunion d'équipe",
    "Jahresplanung",
    "Presupuesto anual",
    "Security review",
    "Launch retrospective",
    "Holiday rota",
    "Survey results",
]

# The text of the posts: a vocabulary shaped like mail's, not a handful of words.
#
# Real text follows Zipf's law: the word of rank r turns up about 1/r as often as the most
# common one, so a few hundred words make half of any text and tens of thousands more make
# the long tail a search index pays for (one dictionary entry, one posting list each). The
# vocabulary is a core of common English in frequency order, then mail's business words and
# a few accented ones spread among pseudo-words made from syllables (deterministic per seed),
# VOCABULARY_SIZE words in all. Sentences add what mail has besides words: names, numbers,
# amounts, dates, ticket keys (ABC-1234) and numbers (#1024670). Replies quote the post they
# answer under an Outlook "From: … Sent: …" header or as "> " lines; most posts are signed.

GENERATOR_VERSION = 2  # bump with any change to the text: benchmark tenants are stamped with it
VOCABULARY_SIZE = 50_000
ZIPF_EXPONENT = 1.0

_COMMON_TEXT = (
    "the of and to a in is it you that he was for on are with as I his they be at one have "
    "this from or had by not word but what some we can out other were all there when up use "
    "your how said an each she which do their time if will way about many then them write "
    "would like so these her long make thing see him two has look more day could go come did "
    "number no most people my over know water than call first who may down side been now find "
    "any new work part take get place made live where after back little only round man year "
    "came show every good me give our under name very through just form sentence great think "
    "say help low line differ turn cause much mean before move right boy old too same tell "
    "does set three want air well also play small end put home read hand port large spell add "
    "even land here must big high such follow act why ask men change went light kind off need "
    "house picture try us again animal point mother world near build self earth father head "
    "stand own page should country found answer school grow study still learn plant cover "
    "food sun four between state keep eye never last let thought city tree cross farm hard "
    "start might story saw far sea draw left late run don't while press close night real life "
    "few north open seem together next white children begin got walk example ease paper group "
    "always music those both mark often letter until mile river car feet care second book "
    "carry took science eat room friend began idea fish mountain stop once base hear horse cut "
    "sure watch color face wood main enough plain girl usual young ready above ever red list "
    "though feel talk bird soon body dog family direct pose leave song measure door product "
    "black short numeral class wind question happen complete ship area half rock order fire "
    "south problem piece told knew pass since top whole king space heard best hour better true "
    "during hundred five remember step early hold west ground interest reach fast verb sing "
    "listen six table travel less morning ten simple several vowel toward war lay against "
    "pattern slow center love person money serve appear road map rain rule govern pull cold "
    "notice voice unit power town fine certain fly fall lead cry dark machine note wait plan "
    "figure star box noun field rest correct able pound done beauty drive stood contain front "
    "teach week final gave green oh quick develop ocean warm free minute strong special mind "
    "behind clear tail produce fact street inch multiply nothing course stay wheel full force "
    "blue object decide surface deep moon island foot system busy test record boat common gold "
    "possible plane stead dry wonder laugh thousand ago ran check game shape equate hot miss "
    "brought heat snow tire bring yes distant fill east paint language among"
)
_MAIL_TEXT = (
    "please thanks regards team review draft update budget customer release schedule meeting "
    "agenda notes action items deadline Monday Tuesday Wednesday Thursday Friday quarter "
    "numbers forecast risk owner status approved pending blocked shipping warehouse supplier "
    "contract invoice report summary feedback launch design prototype testing results "
    "follow-up proposal decision timeline scope priority resources hiring training office "
    "remote workshop presentation slides data dashboard metrics growth retention support "
    "ticket escalation policy compliance attached attachment sync call calendar invite "
    "tomorrow today yesterday asap FYI EOD sprint backlog roadmap milestone deliverable "
    "stakeholder vendor procurement purchase order approval sign-off revenue margin cost "
    "estimate quote pricing discount renewal onboarding offboarding headcount payroll audit "
    "security incident outage deployment server database migration backup firewall laptop "
    "password account access permissions license SharePoint Teams Outlook Excel spreadsheet "
    "template checklist minutes recap takeaways next steps blocker dependency handover "
    "coverage rota holiday leave sick travel expenses receipt reimbursement hotel flight "
    "conference webinar newsletter campaign brand logo website analytics conversion leads "
    "pipeline opportunity account-manager partner reseller distributor logistics inventory "
    "stock delivery tracking carrier customs pallet container freight warranty return refund "
    "complaint satisfaction survey NPS churn upsell renewal SLA KPI OKR QBR RFP RFQ NDA MSA "
    "café résumé naïve façade déjà über Müller Straße Zürich São Paulo niño coöperation "
    "fiancée rôle élan jalapeño smörgåsbord Ångström Kraków Málaga Besançon"
)
_ONSETS_TEXT = (
    "b c d f g h j k l m n p r s t v w z bl br ch cl cr dr fl fr gl gr kr pl pr sc sh sk sl "
    "sp st str sw th tr wh"
)
_VOWELS_TEXT = "a e i o u a e i o ai ea ou io ee oo"
_CODAS = ("", "", "", "n", "r", "s", "t", "l", "m", "nd", "st", "rt", "ng", "x", "ck")
_TICKET_KEYS_TEXT = "OPS FIN HR IT SEC INC CHG PRJ MKT SUP DEV QA LEG PO INV CRM ERP NET DOC REQ"
_COMMON = _COMMON_TEXT.split()
_MAIL = _MAIL_TEXT.split()
_ONSETS = _ONSETS_TEXT.split()
_VOWELS = _VOWELS_TEXT.split()
_TICKET_KEYS = _TICKET_KEYS_TEXT.split()


class Vocabulary:
    """Words with Zipf-like frequencies, and sentences of them, deterministic per seed."""

    def __init__(self, seed: int, size: int = VOCABULARY_SIZE) -> None:
        rng = random.Random(f"vocabulary/{seed}")
        words: list[str] = list(dict.fromkeys(_COMMON))
        seen = {w.lower() for w in words}
        mail = [w for w in dict.fromkeys(_MAIL) if w.lower() not in seen]
        seen |= {w.lower() for w in mail}
        rng.shuffle(mail)
        while len(words) < size:
            if mail and len(words) % 3 == 0:  # business words among the first pseudo-words
                words.append(mail.pop())
                continue
            word = "".join(
                rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(rng.choice((1, 2, 2, 3)))
            ) + rng.choice(_CODAS)
            if word not in seen:
                seen.add(word)
                words.append(word)
        self.words = words
        self.cum = list(
            itertools.accumulate(1 / (rank**ZIPF_EXPONENT) for rank in range(1, len(words) + 1))
        )

    def words_of(self, rng: random.Random, count: int) -> list[str]:
        return rng.choices(self.words, cum_weights=self.cum, k=count)

    def sentence(self, rng: random.Random, length: int, people: Sequence[User] = ()) -> str:
        words = self.words_of(rng, length)
        roll = rng.random()
        at = rng.randrange(len(words)) if words else 0
        if roll < 0.08:
            words.insert(at, f"{rng.choice(_TICKET_KEYS)}-{rng.randint(100, 9999)}")
        elif roll < 0.12:
            words.insert(at, f"#{rng.randint(1_000_000, 1_099_999)}")
        elif roll < 0.22:
            words.insert(at, str(rng.choice((rng.randint(2, 60), rng.randint(100, 99_999)))))
        elif roll < 0.27:
            words.insert(at, f"€{rng.randint(1, 250) * 50:,}")
        elif roll < 0.31:
            words.insert(at, f"{rng.randint(1, 28)}/{rng.randint(1, 12)}")
        elif roll < 0.41 and people:
            words.insert(at, rng.choice(people).name.split()[0])
        text = " ".join(words)
        return text[:1].upper() + text[1:] + "."


DOMAINS_IN_LINKS = ["contoso.sharepoint.com", "learn.microsoft.com", "example.org"]


def ascii_slug(text: str) -> str:
    """Lower-case ASCII for mail addresses: accents dropped, other letters removed."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return "".join(c for c in folded.lower() if c.isalnum() or c in ".-")


def recipient(name: str, address: str) -> Recipient:
    """A Graph ``recipient``."""
    return {"emailAddress": {"name": name, "address": address}}


# --- Shape of the tenant ----------------------------------------------------------------------


def uneven_split(rng: random.Random, total: int, parts: int, lo: int, hi: int) -> list[int]:
    """Split ``total`` into ``parts`` counts in ``[lo, hi]``, heavy-tailed like real mailboxes.

    Most counts come out small and a few large (log-normal weights); the sum is exact.
    """
    if parts == 0:
        if total:
            raise ValueError("cannot split a non-zero total into no parts")
        return []
    if not parts * lo <= total <= parts * hi:
        raise ValueError(f"{total} does not fit in {parts} parts of {lo}..{hi}")
    counts = [lo] * parts
    weights = [rng.lognormvariate(0.0, 1.3) for _ in range(parts)]
    left = total - parts * lo
    while left:
        open_parts = [i for i in range(parts) if counts[i] < hi]
        weight = sum(weights[i] for i in open_parts)
        given = 0
        for i in open_parts:
            share = min(int(left * weights[i] / weight), hi - counts[i], left - given)
            counts[i] += share
            given += share
        if given == 0:  # rounding left a remainder smaller than every share: hand it out
            for i in rng.sample(open_parts, len(open_parts)):
                if given == left:
                    break
                counts[i] += 1
                given += 1
        left -= given
    return counts


@dataclass
class User:
    """A directory user of the generated tenant."""

    id: str
    name: str
    mail: str

    def as_graph(self) -> dict[str, str]:
        return {
            "id": self.id,
            "displayName": self.name,
            "mail": self.mail,
            "userPrincipalName": self.mail,
        }

    def as_recipient(self) -> Recipient:
        return recipient(self.name, self.mail)


def make_users(rng: random.Random, count: int) -> list[User]:
    """``count`` users with names from several cultures and unique ASCII addresses."""
    users: list[User] = []
    taken: set[str] = set()
    while len(users) < count:
        firsts, lasts = rng.choice(PEOPLE)
        first, last = rng.choice(firsts), rng.choice(lasts)
        local = f"{ascii_slug(first)}.{ascii_slug(last)}"
        n = 2
        while local in taken:
            local = f"{ascii_slug(first)}.{ascii_slug(last)}{n}"
            n += 1
        taken.add(local)
        users.append(User(stable_guid(rng), f"{first} {last}", f"{local}@{DOMAIN}"))
    return users


@dataclass
class Group:
    """A generated Microsoft 365 group and the counts it will receive."""

    id: str
    name: str
    nickname: str
    public: bool
    created: datetime
    members: list[User]
    threads: int = 0
    posts: list[int] = field(default_factory=list)

    @property
    def mail(self) -> str:
        return f"{self.nickname}@{DOMAIN}"

    def as_graph(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "displayName": self.name,
            "description": f"Benchmark group {self.name}",
            "mail": self.mail,
            "mailNickname": self.nickname,
            "groupTypes": ["Unified"],
            "visibility": "Public" if self.public else "Private",
            "mailEnabled": True,
            "securityEnabled": False,
            "createdDateTime": iso(self.created),
            "@sim.members": [user.id for user in self.members],
        }


# --- Attachment pool --------------------------------------------------------------------------


@dataclass
class StoredFile:
    """A file under ``files/`` that many attachments may point at."""

    path: str
    kind: str  # "txt", "pdf" or "png"
    size: int


CONTENT_TYPES = {"txt": "text/plain", "pdf": "application/pdf", "png": "image/png"}
ATTACHMENT_STEMS = {
    "txt": ["notes", "minutes", "checklist", "Protokoll", "compte-rendu", "readme"],
    "pdf": ["report", "invoice", "contract", "Angebot", "présentation", "summary"],
    "png": ["screenshot", "diagram", "logo", "chart", "photo", "Skizze"],
}


def write_file_pool(
    rng: random.Random, text: Vocabulary, out: Path, count: int
) -> list[StoredFile]:
    """Write ``count`` small real files (text, PDF, PNG) that attachments share."""
    files_dir = out / "files"
    files_dir.mkdir(parents=True, exist_ok=True)
    pool: list[StoredFile] = []
    for n in range(count):
        kind = ("txt", "pdf", "png")[n % 3]
        if kind == "txt":
            data = "\n".join(
                text.sentence(rng, rng.randint(6, 14)) for _ in range(rng.randint(3, 30))
            )
            content = (data + "\n").encode("utf-8")
        elif kind == "pdf":
            lines = [text.sentence(rng, rng.randint(5, 10)) for _ in range(rng.randint(4, 20))]
            content = make_pdf(f"Benchmark document {n + 1}", lines)
        else:
            a = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
            b = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
            stripe = rng.randint(2, 6)
            size = rng.choice((16, 24, 32))
            content = make_png(
                size, size, lambda x, y, a=a, b=b, s=stripe: a if (x + y) // s % 2 else b
            )
        name = f"bench-{n + 1:04d}.{kind}"
        (files_dir / name).write_bytes(content)
        pool.append(StoredFile(f"files/{name}", kind, len(content)))
    return pool


# --- Posts ------------------------------------------------------------------------------------


_TITLES = (
    "Account Manager",
    "Project Lead",
    "Finance Analyst",
    "Support Engineer",
    "Head of Operations",
    "Designer",
    "Legal Counsel",
    "Buyer",
    "Data Engineer",
)
_DISCLAIMER = (
    "This e-mail and any attachments are confidential and intended solely for the addressee. "
    "If you have received it in error, please notify the sender and delete it."
)


@dataclass
class Reply:
    """The post a reply answers, as its quote shows it."""

    sender: User
    sent: str
    topic: str
    group: str
    paragraphs: list[str]


def signature(sender: User, group: str) -> str:
    """A sender's signature: the same every time (seeded by the address), as in real mail."""
    own = random.Random(sender.mail)
    phone = f"+{own.choice((44, 33, 49, 34, 81))} {own.randint(20, 99)} {own.randint(1000, 9999)} "
    phone += f"{own.randint(1000, 9999)}"
    return (
        f"<div>{sender.name}<br>{own.choice(_TITLES)}, {group}<br>Tel. {phone}<br>"
        f"{sender.mail}</div>"
    )


def body_html(
    rng: random.Random,
    text: Vocabulary,
    words: int,
    sender: User,
    group: str,
    people: Sequence[User],
    reply: Reply | None,
) -> tuple[str, list[str]]:
    """An Outlook-like HTML body of about ``words`` words of its own, signed by ``sender``,
    quoting ``reply`` when it answers a post; and its own paragraphs, for the next quote."""
    parts = ['<html><body><div dir="ltr">']
    parts.append(f"<div>{rng.choice(('Hi all', 'Hello team', 'Bonjour', 'Hallo zusammen'))},</div>")
    paragraphs: list[str] = []
    left = max(words, 1)
    while left > 0:
        size = min(left, rng.randint(25, 70))
        left -= size
        sentences = []
        while size > 0:
            n = min(size, rng.randint(6, 16))
            size -= n
            sentences.append(text.sentence(rng, n, people))
        paragraphs.append(" ".join(sentences))
        roll = rng.random()
        if roll < 0.1:
            items = "".join(f"<li>{s}</li>" for s in sentences)
            parts.append(f"<ul>{items}</ul>")
        elif roll < 0.2:
            host = rng.choice(DOMAINS_IN_LINKS)
            link = f'<a href="https://{host}/doc/{rng.randrange(10**6)}">{host}</a>'
            parts.append(f"<div>{' '.join(sentences)} See {link}.</div>")
        else:
            parts.append(f"<div>{' '.join(sentences)}</div>")
    roll = rng.random()
    if roll < 0.6:
        parts.append(f"<div><br></div>{signature(sender, group)}")
    else:
        parts.append(f"<div><br></div><div>{sender.name.split()[0]}</div>")
    if rng.random() < 0.15:
        parts.append(f'<div style="font-size:8pt">{_DISCLAIMER}</div>')
    parts.append("</div>")
    if reply is not None:
        who = f"{reply.sender.name} &lt;{reply.sender.mail}&gt;"
        if rng.random() < 0.75:
            parts.append(
                '<hr style="display:inline-block;width:98%" tabindex="-1">'
                f'<div id="divRplyFwdMsg" dir="ltr"><b>From:</b> {who}<br><b>Sent:</b> '
                f"{reply.sent}<br><b>To:</b> {reply.group}<br><b>Subject:</b> "
                f"{reply.topic}</div><div>"
                + "".join(f"<div>{p}</div>" for p in reply.paragraphs)
                + "</div>"
            )
        else:
            lines = [f"<div>On {reply.sent}, {who} wrote:</div>"]
            lines += [f"<div>&gt; {p}</div>" for p in reply.paragraphs]
            parts.append("<div>" + "".join(lines) + "</div>")
    parts.append("</body></html>")
    return "".join(parts), paragraphs


@dataclass
class Counters:
    """Running totals shared by every group while writing."""

    conversations: int = 0
    threads: int = 0
    posts: int = 0
    attachments: int = 0
    change: int = 0


def make_attachment(
    rng: random.Random,
    mailbox: str,
    post_label: str,
    n: int,
    pool: list[StoredFile],
    when: str,
    sender: User,
    text: Vocabulary,
) -> dict[str, Any]:
    """One attachment: mostly files from the pool, a few item and reference attachments."""
    att_id = attachment_id(mailbox, post_label, f"{post_label}/a{n}")
    roll = rng.random()
    if roll < 0.05:
        return {
            "@odata.type": "#microsoft.graph.referenceAttachment",
            "id": att_id,
            "lastModifiedDateTime": when,
            "name": f"{rng.choice(TOPICS)}.docx",
            "contentType": None,
            "size": rng.randint(400, 900),
            "isInline": False,
        }
    if roll < 0.1:
        subject = rng.choice(TOPICS)
        return {
            "@odata.type": "#microsoft.graph.itemAttachment",
            "id": att_id,
            "lastModifiedDateTime": when,
            "name": subject,
            "contentType": None,
            "size": rng.randint(9_000, 40_000),
            "isInline": False,
            "item": {
                "@odata.type": "#microsoft.graph.message",
                "subject": subject,
                "body": {
                    "contentType": "html",
                    "content": f"<html><body><div>{text.sentence(rng, 12)}</div></body></html>",
                },
                "from": sender.as_recipient(),
            },
        }
    stored = rng.choice(pool)
    stem = rng.choice(ATTACHMENT_STEMS[stored.kind])
    return {
        "@odata.type": "#microsoft.graph.fileAttachment",
        "id": att_id,
        "lastModifiedDateTime": when,
        "name": f"{stem}-{rng.randrange(1, 1000):03d}.{stored.kind}",
        "contentType": CONTENT_TYPES[stored.kind],
        "size": stored.size,
        "isInline": False,
        "contentId": None,
        "contentLocation": None,
        "@sim.contentFile": stored.path,
    }


def pasted_inline(att: dict[str, Any]) -> bool:
    """Half the PNG files (chosen by id, so the rest of the tenant stays as it was) are pasted
    into the body instead: inline, shown by a cid: reference, not counted by hasAttachments."""
    return (
        att.get("contentType") == "image/png"
        and hashlib.sha256(att["id"].encode()).digest()[0] % 2 == 0
    )


def paste_inline(body: str, attachments: list[dict[str, Any]]) -> str:
    """Mark the attachments inline and show each in the body, as Outlook pastes images."""
    images = []
    for n, att in enumerate(attachments, 1):
        content_id = f"image{n:03d}.png@{hashlib.sha256(att['id'].encode()).hexdigest()[:16]}"
        att.update(isInline=True, contentId=content_id, name=f"image{n:03d}.png")
        images.append(f'<div><img src="cid:{content_id}" alt="image{n:03d}.png"></div>')
    return body.replace("</body></html>", "".join(images) + "</body></html>", 1)


def iter_conversations(
    rng: random.Random,
    group: Group,
    words: int,
    attachments_per_post: Iterator[int],
    pool: list[StoredFile],
    counters: Counters,
    text: Vocabulary,
) -> Iterator[dict[str, Any]]:
    """Yield the group's conversations one at a time (most have one thread, some two)."""
    mailbox = str(uuid.UUID(bytes=key16(f"mailbox/{group.id}"), version=4))
    group_rcpt = recipient(group.name, group.mail)
    conversation: dict[str, Any] | None = None
    conv_label = ""
    for t, post_count in enumerate(group.posts):
        joins = conversation is not None and len(conversation["threads"]) == 1
        if conversation is None or not (joins and rng.random() < 0.1):
            if conversation is not None:
                yield conversation
            conv_label = f"{group.id}/c{counters.conversations}"
            counters.conversations += 1
            conversation = {
                "id": conversation_id(mailbox, conv_label),
                "topic": f"{rng.choice(TOPICS)} #{counters.conversations}",
                "threads": [],
            }
        topic = conversation["topic"]
        thread_label = f"{conv_label}/t{t}"
        counters.threads += 1
        when = START + timedelta(seconds=rng.randrange(SPAN_SECONDS))
        posts: list[dict[str, Any]] = []
        previous: Reply | None = None
        for p in range(post_count):
            sender = rng.choice(group.members)
            post_label = f"{thread_label}/p{p}"
            when += timedelta(seconds=rng.randint(60, 3600) * rng.choice((1, 1, 2, 8, 24)))
            received = iso(when)
            reply = previous if previous is not None and rng.random() < 0.4 else None
            counters.change += 1
            key = change_key(mailbox, counters.change)
            atts = [
                make_attachment(rng, mailbox, post_label, n, pool, received, sender, text)
                for n in range(next(attachments_per_post))
            ]
            counters.attachments += len(atts)
            body, paragraphs = body_html(rng, text, words, sender, group.name, group.members, reply)
            inline = [a for a in atts if pasted_inline(a)]
            if inline:
                body = paste_inline(body, inline)
            post: dict[str, Any] = {
                "@odata.etag": f'W/"{key}"',
                "id": post_id(mailbox, post_label),
                "changeKey": key,
                "createdDateTime": iso(when - timedelta(seconds=1)),
                "lastModifiedDateTime": received,
                "receivedDateTime": received,
                "categories": ["Blue category"] if rng.random() < 0.03 else [],
                "hasAttachments": any(not a["isInline"] for a in atts),
                "body": {"contentType": "html", "content": body},
                "from": group_rcpt,
                "sender": sender.as_recipient(),
                "newParticipants": [],
                "extensions": [],
                "attachments": atts,
            }
            if posts and rng.random() < 0.3:
                post["@sim.inReplyTo"] = rng.choice(posts)["id"]
            posts.append(post)
            previous = Reply(sender, received, topic, group.name, paragraphs)
            counters.posts += 1
        conversation["threads"].append(
            {
                "id": thread_id(mailbox, conv_label, thread_label),
                "topic": topic,
                "isLocked": False,
                "toRecipients": [group_rcpt],
                "ccRecipients": [],
                "posts": posts,
            }
        )
    if conversation is not None:
        yield conversation


def write_group_file(out: TextIO, conversations: Iterator[dict[str, Any]]) -> None:
    """Stream ``{"conversations": [...]}`` one conversation at a time."""
    out.write('{"conversations": [')
    for n, conversation in enumerate(conversations):
        out.write(",\n" if n else "\n")
        out.write(json.dumps(conversation, ensure_ascii=False, separators=(",", ":")))
    out.write("\n]}\n")


# --- Driver -----------------------------------------------------------------------------------


def write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def prepare_out(out: Path) -> None:
    """Create ``out``; replace a previous generated tenant there, refuse anything else."""
    if out.exists() and any(out.iterdir()):
        if not (out / "tenant.json").is_file():
            raise SystemExit(f"{out} is not empty and holds no tenant.json: refusing to write")
        for sub in ("groups", "files"):
            shutil.rmtree(out / sub, ignore_errors=True)
    (out / "groups").mkdir(parents=True, exist_ok=True)


def generate(
    out: Path, groups: int, threads: int, posts: int, seed: int, attachments: int, words: int
) -> Counters:
    """Write the tenant to ``out`` and return what was written."""
    rng = random.Random(seed)
    prepare_out(out)
    users = make_users(rng, max(12, min(400, groups * 6)))
    me = users[0]
    tenant_id = stable_guid(rng)
    roles = [
        {
            "@odata.type": "#microsoft.graph.directoryRole",
            "id": stable_guid(rng),
            "displayName": "Global Reader",
            "roleTemplateId": "f2ef992c-3afb-46b9-b7cf-a126ee74c451",
        }
    ]
    write_json(
        out / "tenant.json",
        {
            "tenantId": tenant_id,
            "me": me.id,
            "users": [user.as_graph() for user in users],
            "directoryRoles": roles,
        },
    )

    group_list: list[Group] = []
    seen_names: dict[str, int] = {}
    for g in range(groups):
        base = GROUP_NAMES[g % len(GROUP_NAMES)]
        seen_names[base] = seen_names.get(base, 0) + 1
        name = base if seen_names[base] == 1 else f"{base} {seen_names[base]}"
        others = rng.sample(users[1:], rng.randint(min(3, len(users) - 1), min(12, len(users) - 1)))
        group_list.append(
            Group(
                id=stable_guid(rng),
                name=name,
                nickname=ascii_slug(name.replace(" ", "-").replace("&", "and")).replace("--", "-"),
                public=g % 5 == 4,
                created=START - timedelta(days=rng.randint(30, 900)),
                members=[me, *others],
            )
        )
    write_json(out / "groups.json", {"value": [group.as_graph() for group in group_list]})

    for group, count in zip(
        group_list, uneven_split(rng, threads, groups, int(threads >= groups), threads), strict=True
    ):
        group.threads = count
    post_counts = uneven_split(rng, posts, threads, 1, MAX_POSTS_PER_THREAD)
    start = 0
    for group in group_list:
        group.posts = post_counts[start : start + group.threads]
        start += group.threads

    per_post = [0] * posts
    for _ in range(attachments):
        per_post[rng.randrange(posts)] += 1
    text = Vocabulary(seed)
    pool = write_file_pool(rng, text, out, min(attachments, 60)) if attachments else []

    counters = Counters()
    attachments_per_post = iter(per_post)
    for group in group_list:
        path = out / "groups" / f"{group.id}.json"
        with path.open("w", encoding="utf-8") as fh:
            write_group_file(
                fh,
                iter_conversations(rng, group, words, attachments_per_post, pool, counters, text),
            )
    return counters


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--groups", type=int, required=True, help="number of groups")
    parser.add_argument("--threads", type=int, required=True, help="threads in total")
    parser.add_argument("--posts", type=int, required=True, help="posts in total")
    parser.add_argument("--seed", type=int, required=True, help="random seed")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--attachments", type=int, default=None, help="attachments in total (default posts/10)"
    )
    parser.add_argument("--words", type=int, default=150, help="words per post body")
    args = parser.parse_args(argv)
    attachments = args.posts // 10 if args.attachments is None else args.attachments
    if args.groups < 1:
        parser.error("--groups must be at least 1")
    if args.threads < 0 or args.words < 0 or attachments < 0:
        parser.error("--threads, --words and --attachments must not be negative")
    if not args.threads <= args.posts <= MAX_POSTS_PER_THREAD * args.threads:
        parser.error(f"--posts must be between --threads and {MAX_POSTS_PER_THREAD} x --threads")
    if attachments and not args.posts:
        parser.error("--attachments needs at least one post")

    began = time.perf_counter()
    counters = generate(
        args.out, args.groups, args.threads, args.posts, args.seed, attachments, args.words
    )
    seconds = time.perf_counter() - began
    print(
        f"{args.groups} groups, {counters.conversations} conversations, {counters.threads} threads,"
        f" {counters.posts} posts, {counters.attachments} attachments -> {args.out}"
        f" ({folder_size(args.out) / 1e6:.1f} MB) in {seconds:.1f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
