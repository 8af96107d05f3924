"""Build real PDF, DOCX and HTML test files at test time (no binaries in the repository)."""

from __future__ import annotations

import io
from pathlib import Path

#: Three pages; the answers ("Ilse Varga", "2019") are only on page 2.
SHIP_PAGES = [
    [
        "Harbour report of the Northern Fleet.",
        "The harbour of Tallinn received four ships in spring.",
        "Repairs on the old pier finished in April.",
    ],
    [
        "The research vessel Aurora was launched in 2019.",
        "The ship's captain, Ilse Varga, joined the fleet in 2015.",
        "The Aurora carries twelve scientists on every voyage.",
    ],
    [
        "Fuel costs rose sharply during the winter months.",
        "The fleet plans two new ships for next year.",
    ],
]


def make_pdf(pages: list[list[str]]) -> bytes:
    """A PDF with one line of text per item of each page (reportlab)."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=A4)
    for lines in pages:
        y = 780
        for line in lines:
            pdf.drawString(72, y, line)
            y -= 18
        pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def make_blank_pdf(pages: int = 2) -> bytes:
    """Pages without a text layer (as a scanned document has)."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=A4)
    for _ in range(pages):
        pdf.rect(100, 100, 200, 200, fill=1)  # a "picture", no text
        pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def encrypt_pdf(data: bytes, password: str = "s3cret") -> bytes:
    """``data`` encrypted with a user password (RC4, needs no crypto library)."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for page in PdfReader(io.BytesIO(data)).pages:
        writer.add_page(page)
    writer.encrypt(user_password=password, owner_password=password + "-owner", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def make_docx(paragraphs: list[str], *, heading: str | None = None, table: list[list[str]] | None = None) -> bytes:
    """A DOCX with an optional heading, paragraphs and an optional table (python-docx)."""
    import docx

    document = docx.Document()
    if heading:
        document.add_heading(heading, level=1)
    for text in paragraphs:
        document.add_paragraph(text)
    if table:
        t = document.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, value in enumerate(row):
                t.cell(r, c).text = value
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


ARTICLE_HTML = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Lighthouse news</title>
<style>body { font-family: serif; } .x::after { content: "STYLE-LEAK"; }</style>
<script>var tracker = "SCRIPT-LEAK"; document.write("SCRIPT-LEAK");</script>
</head>
<body>
<header><div class="logo">Coastal Times</div><nav><a href="/">Home</a> | <a href="/news">NAV-LEAK News</a></nav></header>
<main>
<article>
<h1>The lighthouse keeper</h1>
<p>The keeper of the Skerry lighthouse is Maren Holt.</p><p>She has lived on the island since 1998</p>
<p>The lamp was <em>electrified</em> in 1931 &amp; automated in 2004.</p>
<ul><li>Height: 42 metres</li><li>Range: 20 nautical miles</li></ul>
</article>
</main>
<aside>ASIDE-LEAK Subscribe to our newsletter!</aside>
<footer>FOOTER-LEAK Copyright 2024</footer>
<noscript>NOSCRIPT-LEAK Please enable JavaScript.</noscript>
</body></html>
"""


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path
