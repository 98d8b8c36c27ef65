"""Quoted earlier text folded away: ``html.split_quotes`` and ``html.sanitise_folded``.

Bodies as Outlook (web and desktop), Gmail, Apple Mail and plain-text clients write replies.
"""

from __future__ import annotations

import re

import pytest
from bs4 import BeautifulSoup

from groupsync.html import (
    MAX_FOLD_CHARS,
    quote_marker,
    sanitise,
    sanitise_folded,
    split_quotes,
    to_text,
)

from . import hostile

pytestmark = pytest.mark.datasette1

OWA = (
    '<html><body><div><div>Thanks, approved.</div></div><div id="appendonsend"></div>'
    '<hr style="display:inline-block;width:98%" tabindex="-1">'
    '<div id="divRplyFwdMsg" dir="ltr"><font face="Calibri, sans-serif" style="font-size:11pt">'
    "<b>From:</b> Megan Bowen &lt;megan@contoso.com&gt;<br><b>Sent:</b> Tuesday, March 4, "
    "2025 10:02 AM<br><b>To:</b> Marketing<br><b>Subject:</b> Budget</font><div>&nbsp;</div>"
    "</div><div>Please approve the budget.</div></body></html>"
)
OUTLOOK_DESKTOP = (
    '<html><body lang="EN-US"><div class="WordSection1"><p class="MsoNormal">Looks good to me.'
    '</p><p class="MsoNormal">&nbsp;</p><div style="border:none;border-top:solid #E1E1E1 1.0pt;'
    'padding:3.0pt 0cm 0cm 0cm"><p class="MsoNormal"><b>From:</b> Alex Wilber '
    "&lt;alexw@contoso.com&gt; <br><b>Sent:</b> Monday, 3 March 2025 16:40<br><b>To:</b> "
    'Engineering<br><b>Subject:</b> RE: release plan</p></div><p class="MsoNormal">'
    "Here is the release plan.</p></div></body></html>"
)
OUTLOOK_GERMAN = (
    "<div><p>Passt.</p><div><p><b>Von:</b> Lena Koch &lt;lena@contoso.de&gt;<br>"
    "<b>Gesendet:</b> Montag, 3. März 2025 09:00<br><b>An:</b> Team</p></div>"
    "<p>Alte Nachricht.</p></div>"
)
ORIGINAL_MESSAGE = (
    "<div>See below.</div><div>-----Original Message-----<br>From: IT &lt;it@contoso.com&gt;"
    "<br>Sent: Friday</div><div>Old text.</div>"
)
GMAIL = (
    '<div dir="ltr">Sounds good!</div><br><div class="gmail_quote"><div dir="ltr" '
    'class="gmail_attr">On Tue, Mar 4, 2025 at 10:02 AM Alex &lt;a@x.com&gt; wrote:<br></div>'
    '<blockquote class="gmail_quote" style="margin:0px 0px 0px 0.8ex;border-left:1px solid '
    'rgb(204,204,204);padding-left:1ex"><div dir="ltr">Lunch on Friday?</div></blockquote></div>'
)
APPLE = (
    '<div>Yes, see you there.</div><div><br><blockquote type="cite"><div>On 4 Mar 2025, at '
    "10:02, Alex wrote:</div><div>Lunch on Friday?</div></blockquote></div>"
)
INTERLEAVED = (
    "<p>Answers inline.</p><blockquote>Can you ship Monday?</blockquote><p>Yes.</p>"
    "<blockquote>And the docs?<blockquote>(older)</blockquote></blockquote><p>Tuesday.</p>"
)
TEXT_REPLY = "Yes, Friday works.\n\nOn Tue, Mar 4, 2025, Alex wrote:\n> Lunch on Friday?\n>\n> A."
TEXT_INTERLEAVED = "> Ship Monday?\nYes.\n> Docs?\nTuesday."
TEXT_OUTLOOK = (
    "Approved.\n\nFrom: Megan Bowen <megan@contoso.com>\nSent: Tuesday, March 4, 2025\n"
    "To: Marketing\nSubject: Budget\n\nPlease approve."
)

# (body, content type, what the sender wrote, the quoted text, how many quotes)
CASES = [
    pytest.param(OWA, "html", "Thanks, approved.", "Please approve the budget.", 1, id="owa"),
    pytest.param(
        OUTLOOK_DESKTOP,
        "html",
        "Looks good to me.",
        "Here is the release plan.",
        1,
        id="outlook-desktop",
    ),  # fmt: skip
    pytest.param(OUTLOOK_GERMAN, "html", "Passt.", "Alte Nachricht.", 1, id="outlook-de"),
    pytest.param(ORIGINAL_MESSAGE, "html", "See below.", "Old text.", 1, id="original-message"),
    pytest.param(GMAIL, "html", "Sounds good!", "Lunch on Friday?", 1, id="gmail"),
    pytest.param(APPLE, "html", "Yes, see you there.", "Lunch on Friday?", 1, id="apple"),
    pytest.param(INTERLEAVED, "html", "Tuesday.", "(older)", 2, id="interleaved"),
    pytest.param(TEXT_REPLY, "text", "Yes, Friday works.", "> Lunch on Friday?", 1, id="text"),
    pytest.param(TEXT_INTERLEAVED, "text", "Tuesday.", "> Docs?", 2, id="text-interleaved"),
    pytest.param(TEXT_OUTLOOK, "text", "Approved.", "Please approve.", 1, id="text-outlook"),
]


@pytest.mark.parametrize(("body", "kind", "own_text", "quoted_text", "count"), CASES)
def test_split_quotes_separates_what_was_written_from_what_was_quoted(
    body, kind, own_text, quoted_text, count
):
    own, quotes = split_quotes(body, kind)
    assert len(quotes) == count
    assert own_text in own and quoted_text not in own.replace(quote_marker(0), "")
    assert any(quoted_text in to_text(q, kind) for q in quotes)
    for n in range(count):
        assert own.count(quote_marker(n)) == 1


@pytest.mark.parametrize(("body", "kind", "own_text", "quoted_text", "count"), CASES)
def test_folded_body_keeps_every_word_and_hides_the_quote_in_details(
    body, kind, own_text, quoted_text, count
):
    folded = sanitise_folded(body, content_type=kind)
    soup = BeautifulSoup(folded, "html.parser")
    folds = soup.select("details.groupsync-quote")
    assert len(folds) == count
    assert all(d.get("open") is None and d.summary is not None for d in folds)
    outside = BeautifulSoup(folded, "html.parser")
    for d in outside.select("details.groupsync-quote"):
        d.decompose()
    assert own_text in outside.get_text() and quoted_text not in outside.get_text()
    assert quoted_text in " ".join(d.get_text() for d in folds)
    # Nothing lost: the words of the unfolded body are all still there, in order.
    words = re.findall(r"\w+", to_text(sanitise(body, content_type=kind), "html"))
    without_summaries = re.sub(r"<summary>.*?</summary>", "", folded)
    folded_words = re.findall(r"\w+", to_text(without_summaries, "html"))
    assert folded_words == words


@pytest.mark.parametrize(
    "body",
    [
        "<p>Just a note, nothing quoted.</p>",
        "<blockquote>Only a forwarded quote, no comment.</blockquote>",
        '<div id="divRplyFwdMsg"><b>From:</b> A<br><b>Sent:</b> B</div><p>Forwarded as is.</p>',
        "<p>From: the shop floor, with love. We sent: nothing.</p>",  # all of it "header"
        "Plain text\nwith no quote",
        "",
    ],
)
def test_bodies_without_a_separate_quote_are_shown_whole(body):
    kind = "html" if body.startswith("<") or not body else "text"
    assert split_quotes(body, kind)[1] == []
    assert sanitise_folded(body, content_type=kind) == sanitise(body, content_type=kind)


def test_summary_names_who_is_quoted():
    soup = BeautifulSoup(sanitise_folded(OWA), "html.parser")
    assert soup.summary.get_text() == "Quoted text: From: Megan Bowen <megan@contoso.com>"


def test_a_quote_cannot_reach_outside_its_fold():
    """Each part is sanitised on its own: markup in a quote that would close the fold or
    the page around it stays inside the fold."""
    body = (
        "<p>Mine.</p><blockquote></details></div></article><script>alert(1)</script>"
        "<p>quoted</p></blockquote><p>After.</p>"
    )
    soup = BeautifulSoup(sanitise_folded(body), "html.parser")
    assert soup.find("script") is None
    fold = soup.select_one("details.groupsync-quote")
    assert fold is not None and fold.get_text().endswith("quoted")
    assert "After." not in fold.get_text() and "After." in soup.get_text()


def test_mail_cannot_forge_the_marker():
    """A body holding the marker's text cannot move a quote or hide text."""
    forged = quote_marker(0) + quote_marker(7)
    body = f"<p>{forged} mine</p><blockquote>quoted</blockquote>"
    folded = sanitise_folded(body)
    soup = BeautifulSoup(folded, "html.parser")
    assert len(soup.select("details.groupsync-quote")) == 1
    assert "mine" in soup.p.get_text() and soup.p.find("details") is None


@pytest.mark.parametrize("text", hostile.ALL)
@pytest.mark.parametrize(
    "template",
    [
        "<p>{x}</p><blockquote>{x}<script>alert(1)</script></blockquote>",
        '<p>{x}</p><hr><div id="divRplyFwdMsg"><b>From:</b> {x}<br><b>Sent:</b> {x}</div>{x}',
        "{x}\n> {x}\n> <img src=x onerror=alert(1)>",
    ],
)
def test_hostile_text_in_and_around_quotes_stays_inert(text, template):
    kind = "html" if template.startswith("<") else "text"
    body = template.replace("{x}", text)
    folded = sanitise_folded(body, content_type=kind)
    soup = BeautifulSoup(folded, "html.parser")
    assert soup.find(["script", "img", "svg", "iframe"]) is None
    assert not any(a.startswith("on") for tag in soup.find_all(True) for a in tag.attrs)
    assert "\ue000" not in folded


def test_a_body_past_the_folding_limit_is_shown_whole():
    """Folding is a convenience: a huge body is not searched for quotes (its cost grows
    with nesting), and is shown whole, sanitised."""
    padding = "<p>" + "word " * (MAX_FOLD_CHARS // 5) + "</p>"
    body = padding + "<blockquote>quoted</blockquote>"
    assert len(body) > MAX_FOLD_CHARS and split_quotes(body)[1] == []
    assert "groupsync-quote" not in sanitise_folded(body)
    assert "groupsync-quote" in sanitise_folded(body[len(padding) - 50 :])
