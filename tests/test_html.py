from __future__ import annotations

import pytest

from groupsync.html import to_text


@pytest.mark.parametrize(
    "html,expected",
    [
        ("<p>Hello <b>world</b>!</p>", "Hello world!"),
        ("<div>a</div><div>b</div>", "a\nb"),
        ("<table><tr><td>cell 1</td><td>cell 2</td></tr></table>", "cell 1 cell 2"),
        ('<p>see <a href="https://x.test/">the link text</a></p>', "see the link text"),
        ("<script>alert('x')</script><p>safe</p>", "safe"),
        ("<style>p { color: red }</style>visible", "visible"),
        ("<head><title>hidden</title></head><body>shown</body>", "shown"),
        ("Caf&eacute; &amp; cr&egrave;me", "Café & crème"),
        ("line<br>break", "line\nbreak"),
        ('<img src="cid:logo" alt="Contoso logo">', "Contoso logo"),
        ("<p>unclosed <b>bold", "unclosed bold"),
        ("日本語のテキスト 🎉", "日本語のテキスト 🎉"),
        ("a<div>b</div>c", "a\nb\nc"),
        ("<DIV>upper</DIV><P>case</P>", "upper\ncase"),
        ('<div title="<p>">one</div><!-- <p> -->two', "one\ntwo"),
        ("x&nbsp;&nbsp;y\u200bz\t w", "x y z w"),
        ("<p>  </p><p>\n</p><p>kept</p>", "kept"),
        ("<pre>first\nsecond</pre>", "first\nsecond"),
        ("<divider>not a block</divider>", "not a block"),
        ("", ""),
        (None, ""),
    ],
)
def test_to_text(html, expected):
    assert to_text(html) == expected


def test_text_bodies_are_left_as_text():
    assert to_text("<not a tag>  x", "text") == "<not a tag> x"
